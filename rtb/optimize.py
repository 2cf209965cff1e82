"""Budget optimisation by simulation: the best split of a total budget, and the budget for a goal.

Both questions are answered with the simulator itself, on common random numbers: every
split is run on the same seeds, so two splits' per-seed difference is the split's effect
with little luck in it (rtb.plan). A run costs about a second, so the search is built to
need few of them:

(a) Response curves: the current split runs with all budgets scaled together over a
    grid, one point of every campaign's curve per run (rtb.response_curves).
(b) Allocation: the total handed out by equal marginal return on the curves' concave
    envelopes, within the bounds (rtb.response_curves).
(c) Refinement: a paired local search by simulation on the search seeds, for how
    campaigns interact away from joint scaling (rtb.split_search).
(d) Confirmation: the proposal against the current split on fresh seeds the search
    never used; a proposal that does not beat it there is not recommended
    (rtb.split_search).

The budget for a goal (rtb.goal_search) predicts the smallest total that reaches a
number of conversions from the curves, checks it by simulation and confirms it on
fresh seeds, or says how many can be reached and why, from the runs' bid outcomes.

This module holds the public functions, their input checks and the result's file.
Budgets are integer micros throughout, so a split sums exactly to the total. Every
evaluated split is a sweep folder out_dir/evals/<sha8 of its scenario>/
(rtb.evaluations): an interrupted optimisation resumes without redoing a run, and
the same inputs give the same result, byte for byte.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterable

import orjson

from rtb.atomic import write_atomic
from rtb.changes import campaign_index
from rtb.errors import InputError
from rtb.evaluations import Evaluations, Goal, Split, micros_to_units
from rtb.goal_search import GOAL_RETRIES, GoalSearch
from rtb.response_curves import allocate, proportional_split, response_curves
from rtb.scenario import Scenario
from rtb.spec_base import MAX_MONEY, MAX_TOTAL_BUDGET
from rtb.split_search import confirm_split, optimize_result, search_split
from rtb.sweep import Runner
from rtb.types import units_to_micros

OPTIMIZE_FILE = "optimize.json"
EVALS_FOLDER = "evals"  # out_dir's folder of evaluated splits
OBJECTIVES = ("profit", "conversions", "revenue")
SEARCH_SEEDS = (1, 2, 3)
CONFIRM_SEEDS = (101, 102, 103, 104, 105)
SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)  # the response curves' joint budget scales
GOAL_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0, 10.0)
MAX_ITERATIONS = 3  # local search rounds: each runs 2 x campaigns + 2 splits per seed
FIRST_STEP = 0.1  # the local search's first step, a share of the total
MIN_STEP = 0.02  # it stops below this share of the total
GOAL_ROUNDS = 4  # bisection batches for the budget for a goal, two totals each
GOAL_TOLERANCE = 0.03  # the smallest total is found to within 3 %
WHERE = "command line"


# ---- the public functions -------------------------------------------------------------

def optimize_split(scenario: Scenario, total_budget: float, *, objective: str = "profit",
                   incremental: bool = False,
                   bounds: dict[str, tuple[float, float]] | None = None,
                   search_seeds: Iterable[int] = SEARCH_SEEDS,
                   confirm_seeds: Iterable[int] = CONFIRM_SEEDS,
                   out_dir: str | Path, runner: Runner,
                   progress: Callable[[float], None] | None = None,
                   scales: Iterable[float] = SCALES, max_iterations: int = MAX_ITERATIONS,
                   first_step: float = FIRST_STEP, min_step: float = MIN_STEP) -> dict:
    """The split of total_budget across the scenario's campaigns with the most
    `objective` ("profit": revenue x margin - spend, each advertiser's margin;
    "conversions"; "revenue"; ad-caused ones only with incremental=True), each campaign
    within bounds (id -> (min, max) budget; default (0+, total)). Returns the result
    (rtb.split_search.optimize_result) and writes it to out_dir/optimize.json.

    scales (the curves' joint budget scales), max_iterations, first_step and min_step
    (shares of the total) tune the search; the defaults suit a market like the
    quickstart (about 90 runs).

    Raises InputError for bad input, SweepInterrupted on Ctrl-C (the runs done are kept
    and a second call resumes), rtb.sweep.FolderOfAnotherSweep never in practice."""
    objective = _check_objective(objective)
    total = _check_total(total_budget)
    search, confirm = _check_seeds(search_seeds, confirm_seeds)
    scales = _check_scales(scales)
    low, high = _check_bounds(scenario, bounds or {}, cap=total)
    if sum(low) > total:
        raise InputError.single(WHERE, "--bounds", f"the minimum budgets add up to"
                                f" {micros_to_units(sum(low)):,.2f}, more than the total budget of"
                                f" {micros_to_units(total):,.2f}")
    if sum(high) < total:
        raise InputError.single(WHERE, "--bounds", f"the maximum budgets add up to"
                                f" {micros_to_units(sum(high)):,.2f}, less than the total budget of"
                                f" {micros_to_units(total):,.2f}")
    goal = Goal(scenario, objective, incremental, low, high, search, confirm)
    n = len(scenario.campaigns)
    planned = len(scales) * len(search) + max_iterations * (2 * n + 3) * len(search) \
        + 2 * len(confirm)
    ev = Evaluations(scenario, Path(out_dir) / EVALS_FOLDER, runner, progress, planned)

    current = proportional_split(goal.base, low, high, total)
    ev.run([((current, s), goal.search) for s in scales])
    curves = response_curves(ev, goal, current, scales)
    start = allocate(curves, goal, total, current)
    proposal = search_split(ev, goal, current, start, total, max_iterations,
                            max(1, round(total * first_step)), max(1, round(total * min_step)))
    chosen, gain, best_found = confirm_split(ev, goal, proposal, current)
    result = optimize_result(ev, goal, total, chosen, current, gain, best_found, curves, None)
    ev.finish()
    return _write(out_dir, result)


def budget_for_goal(scenario: Scenario, target_conversions: float, *,
                    min_romi: float | None = None, incremental: bool = False,
                    max_total_budget: float | None = None,
                    bounds: dict[str, tuple[float, float]] | None = None,
                    search_seeds: Iterable[int] = SEARCH_SEEDS,
                    confirm_seeds: Iterable[int] = CONFIRM_SEEDS,
                    out_dir: str | Path, runner: Runner,
                    progress: Callable[[float], None] | None = None,
                    scales: Iterable[float] = GOAL_SCALES, rounds: int = GOAL_ROUNDS,
                    tolerance: float = GOAL_TOLERANCE) -> dict:
    """The smallest total budget, with its split, whose expected conversions (the mean
    over the confirmation seeds; ad-caused ones with incremental=True) reach
    target_conversions at a total ROMI (incremental ROMI with incremental=True) of at
    least min_romi; or, when no budget does, the most that can be reached and why.
    The total is at most max_total_budget (default: the scenario's limit); each
    campaign stays within bounds (id -> (min, max) budget; default (0+, any)).
    Returns the result (the goal under "goal", and "reachable" and "reason" at the
    top) and writes it to out_dir/optimize.json. Raises as optimize_split does."""
    target = _check_number(target_conversions, "--target-conversions", "target conversions",
                           positive=True)
    if min_romi is not None:
        min_romi = _check_number(min_romi, "--min-romi", "minimum ROMI", positive=False)
        if min_romi < -1:
            raise InputError.single(WHERE, "--min-romi", f"{min_romi:g} is below -1 (-100 %),"
                                    " the lowest a ROMI can be")
    search, confirm = _check_seeds(search_seeds, confirm_seeds)
    scales = _check_scales(scales)
    limit = units_to_micros(MAX_TOTAL_BUDGET) if max_total_budget is None \
        else _check_total(max_total_budget)
    low, high = _check_bounds(scenario, bounds or {}, cap=limit)
    if sum(low) > limit:
        raise InputError.single(WHERE, "--bounds", f"the minimum budgets add up to"
                                f" {micros_to_units(sum(low)):,.2f}, more than the total budget"
                                f" allows, {micros_to_units(limit):,.2f}")
    goal = Goal(scenario, "conversions", incremental, low, high, search, confirm)
    goal.target, goal.min_romi, goal.limit = target, min_romi, limit
    planned = (len(scales) + 2 * rounds + 2 + 2 * GOAL_RETRIES) * len(search) \
        + (4 + GOAL_RETRIES * 2) * len(confirm)
    ev = Evaluations(scenario, Path(out_dir) / EVALS_FOLDER, runner, progress, planned)
    result = GoalSearch(ev, goal, scales, rounds, tolerance).run()
    ev.finish()
    return _write(out_dir, result)


def parse_bounds(texts: Iterable[str], option: str = "--bounds") -> dict[str, tuple[float, float]]:
    """`ID=MIN:MAX` options (either side may be left empty: `ID=:500`, `ID=100:`) as
    the bounds the functions above take: {id: (min, max)}, an empty side 0 or
    infinity. Campaign names are checked by the functions (unknown or ambiguous)."""
    bounds: dict[str, tuple[float, float]] = {}
    for text in texts:
        name, sep, value = text.rpartition("=")
        low, colon, high = value.partition(":")
        if not sep or not name.strip() or not colon or ":" in high:
            raise InputError.single(WHERE, option, f"expected CAMPAIGN=MIN:MAX, got {text!r}")
        pair = []
        for side, empty in ((low, 0.0), (high, math.inf)):
            try:
                pair.append(float(side) if side.strip() else empty)
            except ValueError:
                raise InputError.single(WHERE, option, f"{text!r}: {side!r} is not an amount") from None
        if name.strip() in bounds:
            raise InputError.single(WHERE, option, f"campaign {name.strip()!r} is bounded twice")
        bounds[name.strip()] = (pair[0], pair[1])
    return bounds


def to_json(result: dict) -> bytes:
    """The result as optimize.json holds it (for `--out FILE`: the same bytes)."""
    return orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n"


# ---- input ----------------------------------------------------------------------------

def _check_objective(objective: str) -> str:
    if objective not in OBJECTIVES:
        raise InputError.single(WHERE, "--objective", f"{objective!r} is not an objective:"
                                f" one of {', '.join(OBJECTIVES)}")
    return objective


def _check_number(value, option: str, what: str, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError.single(WHERE, option, f"the {what} must be a finite number, not {value!r}")
    if positive and value <= 0:
        raise InputError.single(WHERE, option, f"the {what} must be more than 0, not {value:g}")
    return float(value)


def _check_total(total_budget) -> int:
    total = _check_number(total_budget, "--total-budget", "total budget", positive=True)
    if total > MAX_TOTAL_BUDGET:
        raise InputError.single(WHERE, "--total-budget", f"{total:,.2f} is more than the most a"
                                f" scenario's budgets may total, {MAX_TOTAL_BUDGET:,.0f}")
    micros = units_to_micros(total)
    if micros < 1:
        raise InputError.single(WHERE, "--total-budget", f"{total:g} is less than a millionth"
                                " of the currency unit")
    return micros


def _check_seeds(search_seeds: Iterable[int], confirm_seeds: Iterable[int]
                 ) -> tuple[list[int], list[int]]:
    out = []
    for seeds, what in ((search_seeds, "search"), (confirm_seeds, "confirmation")):
        seeds = list(seeds)
        if not seeds:
            raise InputError.single(WHERE, "--seeds", f"no {what} seeds")
        for seed in seeds:
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 63:
                raise InputError.single(WHERE, "--seeds", f"{what} seed {seed!r} is not a whole"
                                        " number from 0 to 2**63-1")
        out.append(list(dict.fromkeys(seeds)))
    common = sorted(set(out[0]) & set(out[1]))
    if common:
        raise InputError.single(WHERE, "--seeds", "the confirmation seeds must be fresh ones the"
                                f" search never used; both have {', '.join(map(str, common))}")
    return out[0], out[1]


def _check_scales(scales: Iterable[float]) -> tuple[float, ...]:
    scales = tuple(sorted(dict.fromkeys(float(s) for s in scales)))
    if not scales or not all(math.isfinite(s) and 0 < s <= 100 for s in scales):
        raise ValueError(f"curve scales must be in (0, 100], got {scales}")
    if 1.0 not in scales:  # the current split itself is a point of every curve
        scales = tuple(sorted(scales + (1.0,)))
    return scales


def _check_bounds(scenario: Scenario, bounds: dict[str, tuple[float, float]], cap: int
                  ) -> tuple[Split, Split]:
    """Per campaign the lowest and highest budget in micros: at least one micro (a
    budget must be more than 0) and at most `cap` and a campaign's most (MAX_MONEY)."""
    n = len(scenario.campaigns)
    ceiling = min(cap, units_to_micros(MAX_MONEY))
    low, high = [1] * n, [ceiling] * n
    named: dict[int, str] = {}
    for name, pair in bounds.items():
        try:
            k = campaign_index(scenario, str(name), WHERE)
        except InputError as exc:
            raise InputError.single(WHERE, "--bounds", exc.problems[0][1]) from None
        cid = scenario.campaigns[k].id
        if k in named:
            raise InputError.single(WHERE, "--bounds", f"{named[k]!r} and {name!r} both name"
                                    f" campaign {cid!r}")
        named[k] = str(name)
        try:
            lo, hi = pair
        except (TypeError, ValueError):
            raise InputError.single(WHERE, "--bounds", f"{cid}: expected (min, max), got"
                                    f" {pair!r}") from None
        for value, infinite in ((lo, False), (hi, True)):  # no maximum: infinity
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) \
                    or value < 0 or (value == math.inf and not infinite):
                raise InputError.single(WHERE, "--bounds", f"{cid}: {value!r} is not a budget"
                                        " (a finite number, 0 or more)")
        if lo > hi:
            raise InputError.single(WHERE, "--bounds", f"{cid}: the minimum {lo:,.2f} is more"
                                    f" than the maximum {hi:,.2f}")
        if hi <= 0:
            raise InputError.single(WHERE, "--bounds", f"{cid}: the maximum must be more than 0")
        if lo > MAX_MONEY:
            raise InputError.single(WHERE, "--bounds", f"{cid}: the minimum {lo:,.2f} is more"
                                    f" than a campaign's budget can be, {MAX_MONEY:,.0f}")
        low[k] = max(1, units_to_micros(lo))
        high[k] = max(low[k], ceiling if hi == math.inf else min(ceiling, units_to_micros(hi)))
    return tuple(low), tuple(high)


def _write(out_dir: str | Path, result: dict) -> dict:
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_atomic(Path(out_dir) / OPTIMIZE_FILE, to_json(result))
    return result
