"""Budget optimisation by simulation: the best split of a total budget, and the budget for a goal.

Both questions are answered with the simulator itself, on common random numbers: every
split is run on the same seeds, so two splits' per-seed difference is the split's effect
with little luck in it (rtb.plan). A run costs about a second, so the search is built to
need few of them:

(a) Response curves. The current split, scaled to the total, runs with all budgets
    scaled together over a grid (0.25x to 4x by default) on the search seeds: one run
    gives a point of every campaign's curve (budget -> objective, spend, conversions,
    ROMI). Joint scaling keeps the campaigns' competition for the same users realistic
    along the curve, which one-campaign-at-a-time curves would not.
(b) Allocation. Each curve is replaced by its concave envelope (with the origin: no
    budget, no return) and the total is handed out in small increments, each to the
    campaign whose envelope gains most from it: equal marginal return, the optimum of
    a separable concave problem, within the bounds. Beyond a curve's last point a
    campaign is assumed to gain nothing more (or to keep losing): untested money is not
    trusted. Where several campaigns gain equally (typically nothing: their budgets no
    longer bind) the increment goes to the one furthest below the current split's
    share, so indifferent money stays where the marketer had it.
(c) Refinement. The curves ignore how campaigns interact away from joint scaling (the
    same advertiser's campaigns take each other's last-touch credit), so the allocation
    is refined by simulation: per iteration every campaign is run at +step and -step
    (paired on the search seeds, as marginal gain and loss per unit); the step moves
    from the campaign that loses least to the one that gains most (the move and its
    half, in one batch), and is kept only if the paired mean improves; otherwise the
    step halves. It stops at an iteration cap or a minimum step. A budget that never
    binds (no bid paced or out of budget on any seed) is taken to gain nothing from
    more, and to lose nothing from less while well above its spend: those runs are
    skipped (a third of them on the quickstart); the move itself is always simulated.
    The best split seen (the current one included) is the proposal.

    With the profit objective, money no campaign can use well is best not spent: the
    split then gives it to campaigns whose budgets do not bind (in proportion to their
    current budgets), and the expected spend (in "expected") shows what is left over.
(d) Confirmation. Choosing the best of many splits on the same seeds flatters the
    winner, so the proposal and the current split are run on fresh seeds the search
    never used, and the paired gain there, with its interval, is the answer. A proposal
    that does not beat the current split there (gain <= 0) is not recommended: the
    result keeps the current split and says so (found_better false).

The budget for a goal first runs budgets so large they do not bind: if even that does
not reach the target, the answer is how many conversions can be reached and why, from
that run's own bid outcomes. Otherwise the curves' allocation predicts the smallest
total that reaches the target, and simulation checks it: the bracket [too little,
enough] narrows by two points per batch (the prediction first, then thirds in log
space), the smallest total found enough is confirmed on fresh seeds (and raised if
they fall short), with the ROMI floor checked the same way.

Budgets are integer micros throughout, so a split sums exactly to the total. Every
evaluated split is a sweep folder out_dir/evals/<sha8 of its scenario>/ (rtb.sweep):
reports are written as they finish and found again, so an interrupted optimisation
resumes without redoing a run, and since every decision is made from the reports on
disk, the same inputs give the same result, byte for byte.
"""

from __future__ import annotations

import math
from itertools import pairwise
from pathlib import Path
from typing import Callable, Iterable

import orjson

from rtb.atomic import write_atomic
from rtb.changes import Change, apply_changes, campaign_index
from rtb.errors import InputError
from rtb.plan import gross_profit, variant_figures
from rtb.scenario import Scenario
from rtb.spec_base import MAX_MONEY, MAX_TOTAL_BUDGET
from rtb.stats import interval, paired
from rtb.sweep import Runner, SweepRun, scenario_digest, sweep_many
from rtb.types import MICROS_PER_UNIT, OUTCOME_NAMES

OPTIMIZE_FILE = "optimize.json"
OPTIMIZE_VERSION = 1
EVALS_FOLDER = "evals"
OBJECTIVES = ("profit", "conversions", "revenue")
SEARCH_SEEDS = (1, 2, 3)
CONFIRM_SEEDS = (101, 102, 103, 104, 105)
SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)  # the response curves' joint budget scales
GOAL_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0, 10.0)
UNBOUND_SCALE = 100.0  # budgets this many times the current ones do not bind (checked)
MAX_ITERATIONS = 3  # local search rounds: each runs 2 x campaigns + 2 splits per seed
FIRST_STEP = 0.1  # the local search's first step, a share of the total
MIN_STEP = 0.02  # it stops below this share of the total
GOAL_ROUNDS = 4  # bisection batches for the budget for a goal, two totals each
GOAL_TOLERANCE = 0.03  # the smallest total is found to within 3 %
GOAL_RETRIES = 2  # raises of the total when the fresh seeds fall short of the target
INCREMENTS = 1000  # the allocation hands the total out in this many increments
TIE = 0.01  # marginal returns closer than this share of the steepest count as equal
IDLE = 0.8  # a campaign spending under this share of its budget, never paced, has money to spare
WHERE = "command line"
MICROS = MICROS_PER_UNIT

Split = tuple[int, ...]  # budget micros per campaign, in the scenario's order


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
    (see the module's docstring) and writes it to out_dir/optimize.json.

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
                                f" {_units(sum(low)):,.2f}, more than the total budget of"
                                f" {_units(total):,.2f}")
    if sum(high) < total:
        raise InputError.single(WHERE, "--bounds", f"the maximum budgets add up to"
                                f" {_units(sum(high)):,.2f}, less than the total budget of"
                                f" {_units(total):,.2f}")
    goal = _Goal(scenario, objective, incremental, low, high, search, confirm)
    n = len(scenario.campaigns)
    planned = len(scales) * len(search) + max_iterations * (2 * n + 3) * len(search) \
        + 2 * len(confirm)
    ev = _Evaluations(scenario, Path(out_dir), runner, progress, planned)

    current = _fit(goal.base, low, high, total)
    ev.run([((current, s), goal.search) for s in scales])
    curves = _curves(ev, goal, current, scales)
    start = _allocate(curves, goal, total, current)
    proposal = _search(ev, goal, current, start, total, max_iterations,
                       max(1, round(total * first_step)), max(1, round(total * min_step)))
    chosen, gain, best_found = _confirm(ev, goal, proposal, current)
    result = _result(ev, goal, total, chosen, current, gain, best_found, curves, None)
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
    limit = _micros(MAX_TOTAL_BUDGET) if max_total_budget is None else _check_total(max_total_budget)
    low, high = _check_bounds(scenario, bounds or {}, cap=limit)
    if sum(low) > limit:
        raise InputError.single(WHERE, "--bounds", f"the minimum budgets add up to"
                                f" {_units(sum(low)):,.2f}, more than the total budget allows,"
                                f" {_units(limit):,.2f}")
    goal = _Goal(scenario, "conversions", incremental, low, high, search, confirm)
    goal.target, goal.min_romi, goal.limit = target, min_romi, limit
    planned = (len(scales) + 2 * rounds + 2 + 2 * GOAL_RETRIES) * len(search) \
        + (4 + GOAL_RETRIES * 2) * len(confirm)
    ev = _Evaluations(scenario, Path(out_dir), runner, progress, planned)
    result = _GoalSearch(ev, goal, scales, rounds, tolerance).run()
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

def _micros(units: float) -> int:
    return round(units * MICROS)


def _units(micros: int) -> float:
    return round(micros / MICROS, 6)


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
    micros = _micros(total)
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
    ceiling = min(cap, _micros(MAX_MONEY))
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
        low[k] = max(1, _micros(lo))
        high[k] = max(low[k], ceiling if hi == math.inf else min(ceiling, _micros(hi)))
    return tuple(low), tuple(high)


# ---- what is optimised ----------------------------------------------------------------

class _Goal:
    """What a search aims at: the scenario, what counts, the bounds and the seeds."""

    def __init__(self, scenario: Scenario, objective: str, incremental: bool, low: Split,
                 high: Split, search: list[int], confirm: list[int]):
        self.scenario, self.objective, self.incremental = scenario, objective, incremental
        self.ids = tuple(c.id for c in scenario.campaigns)
        self.base = tuple(_micros(c.budget) for c in scenario.campaigns)
        self.low, self.high = low, high
        self.margins = {a.id: a.margin for a in scenario.advertisers}
        self.search = [SweepRun(1.0, s) for s in search]
        self.confirm = [SweepRun(1.0, s) for s in confirm]
        self.search_seeds, self.confirm_seeds = search, confirm
        self.conversions = "incremental_conversions" if incremental else "conversions"
        self.romi = "incremental_romi" if incremental else "romi"
        # budget_for_goal's: the conversions aimed at, the ROMI floor, the total allowed
        self.target: float | None = None
        self.min_romi: float | None = None
        self.limit: int | None = None

    def value(self, report: dict) -> float:
        """The objective of one run: the whole report's."""
        if self.objective == "profit":
            return gross_profit(report, self.margins, self.incremental)
        key = ("incremental_" if self.incremental else "") + self.objective
        return float(report["totals"][key])

    def contribution(self, row: dict) -> float:
        """One campaign's part of the objective in one run."""
        prefix = "incremental_" if self.incremental else ""
        if self.objective == "profit":
            return row[prefix + "revenue"] * self.margins[row["advertiser"]] - row["spend"]
        return float(row[prefix + self.objective])


class _Evaluations:
    """Splits run on seeds: each split a sweep folder under out_dir/evals, named by a
    short hash of its scenario, so a second call finds every run already done."""

    def __init__(self, scenario: Scenario, out_dir: Path, runner: Runner,
                 progress: Callable[[float], None] | None, planned: int):
        self.scenario, self.out_dir, self.runner = scenario, out_dir, runner
        self.ids = [c.id for c in scenario.campaigns]
        self.base = tuple(_micros(c.budget) for c in scenario.campaigns)
        self._progress, self.planned, self.done, self._shown = progress, max(planned, 1), 0, 0.0
        self._scenarios: dict[Split, tuple[Scenario, Path]] = {}
        self._reports: dict[tuple[Split, SweepRun], dict] = {}
        self.used: set[tuple[Split, SweepRun]] = set()

    def scenario_of(self, split: Split) -> tuple[Scenario, Path]:
        if split not in self._scenarios:
            # Cuts first, then raises: no step passes the scenario's budget total limit.
            changes = [Change("budget", f"{cid}={m // MICROS}.{m % MICROS:06d}")
                       for cid, m, old in sorted(zip(self.ids, split, self.base),
                                                 key=lambda t: t[1] > t[2]) if m != old]
            changed = apply_changes(self.scenario, changes) if changes else self.scenario
            folder = self.out_dir / EVALS_FOLDER / scenario_digest(changed)[:8]
            self._scenarios[split] = (changed, folder)
        return self._scenarios[split]

    def run(self, wanted: list[tuple[tuple[Split, float], list[SweepRun]]]) -> None:
        """Run (in one batch) every ((split, budget scale), runs) not yet on disk."""
        by_split: dict[Split, list[SweepRun]] = {}
        for (split, scale), runs in wanted:
            by_split.setdefault(split, [])
            by_split[split] += [SweepRun(scale, r.seed) for r in runs]
        folders = []
        for split, runs in by_split.items():
            runs = list(dict.fromkeys(runs))
            changed, folder = self.scenario_of(split)
            folders.append((changed, runs, folder))
            self.used.update((split, r) for r in runs)
        (self.out_dir / EVALS_FOLDER).mkdir(parents=True, exist_ok=True)
        todo = sum(not (folder / r.file_name).exists() for _, runs, folder in folders for r in runs)
        size = sum(len(runs) for _, runs, _ in folders)
        already = size - todo

        def progress(fraction: float) -> None:
            self._show(self.done + max(0.0, fraction * size - already))

        # Also when every report is on disk: sweep_many finds a damaged one and runs it again.
        sweep_many(folders, runner=self.runner, progress=progress if self._progress else None)
        self.done += todo
        self._show(self.done)

    def _show(self, done: float) -> None:
        if self._progress is None:
            return
        shown = min(0.99, done / self.planned)
        if shown > self._shown:
            self._shown = shown
            self._progress(shown)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress(1.0)

    def reports(self, split: Split, runs: list[SweepRun], scale: float = 1.0) -> list[dict]:
        out = []
        _, folder = self.scenario_of(split)
        for run in runs:
            run = SweepRun(scale, run.seed)
            key = (split, run)
            if key not in self._reports:
                self._reports[key] = orjson.loads((folder / run.file_name).read_bytes())
            self.used.add(key)
            out.append(self._reports[key])
        return out

    def values(self, goal: _Goal, split: Split, runs: list[SweepRun]) -> list[float]:
        return [goal.value(r) for r in self.reports(split, runs)]


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def _paired_mean(values: list[float], baseline: list[float]) -> float:
    return _mean([v - b for v, b in zip(values, baseline)])


# ---- splits ---------------------------------------------------------------------------

def _fit(weights: Split, low: Split, high: Split, total: int) -> Split:
    """The split of `total` proportional to weights, each within [low, high]: the
    clipped share clip(w x lam, low, high) for the lam that makes it sum to total,
    in whole micros (the remainder to the largest fractions, then in order)."""
    n = len(weights)
    weights = [float(w) for w in weights] if any(weights) else [1.0] * n

    def clipped(lam: float) -> list[float]:
        return [min(max(w * lam, lo), hi) for w, lo, hi in zip(weights, low, high)]

    lo_lam, hi_lam = 0.0, 1.0
    while sum(clipped(hi_lam)) < total and hi_lam < 1e30:
        hi_lam *= 2
    for _ in range(200):
        mid = (lo_lam + hi_lam) / 2
        if sum(clipped(mid)) < total:
            lo_lam = mid
        else:
            hi_lam = mid
    shares = clipped(hi_lam)
    split = [max(lo, min(hi, math.floor(x))) for x, lo, hi in zip(shares, low, high)]
    order = sorted(range(n), key=lambda k: (-(shares[k] - math.floor(shares[k])), k))
    return _settle(split, low, high, total, order)


def _settle(split: list[int], low: Split, high: Split, total: int, order: list[int]) -> Split:
    """Add (or take) the micros that split lacks (or has over) total, in `order`."""
    left = total - sum(split)
    for k in order * 2:
        if left == 0:
            break
        if left > 0:
            move = min(left, high[k] - split[k])
        else:
            move = -min(-left, split[k] - low[k])
        split[k] += move
        left -= move
    assert left == 0 and all(lo <= x <= hi for x, lo, hi in zip(split, low, high))
    return tuple(split)


class _Curve:
    """A campaign's response to its budget: the concave envelope of its points."""

    def __init__(self, points: list[tuple[float, float]]):
        best: dict[float, float] = {0.0: 0.0}
        for budget, value in points:
            best[budget] = max(value, best.get(budget, -math.inf))
        hull: list[tuple[float, float]] = []
        for p in sorted(best.items()):
            while len(hull) >= 2 and _cross(hull[-2], hull[-1], p) >= 0:
                hull.pop()
            hull.append(p)
        self.hull = hull
        self.slopes = [(v1 - v0) / (b1 - b0) for (b0, v0), (b1, v1) in pairwise(hull)]
        self.beyond = min(self.slopes[-1], 0.0) if self.slopes else 0.0  # untested money
        # gains nothing (or keeps losing)

    def __call__(self, budget: float) -> float:
        hull = self.hull
        for (b0, v0), (b1, v1) in pairwise(hull):
            if budget <= b1:
                return v0 + (v1 - v0) * (budget - b0) / (b1 - b0)
        return hull[-1][1] + self.beyond * (budget - hull[-1][0])


def _cross(o, a, b) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _curves(ev: _Evaluations, goal: _Goal, split: Split, scales: tuple[float, ...]) -> list[dict]:
    """Per campaign its points over the scales (the means over the search seeds of the
    budget, the objective's part and the figures a marketer reads), and its _Curve."""
    curves = []
    for k, cid in enumerate(goal.ids):
        points = []
        for scale in scales:
            rows = [r["campaigns"][k] for r in ev.reports(split, goal.search, scale)]
            point = {"budget": rows[0]["budget"]}
            point["objective"] = interval([goal.contribution(r) for r in rows])
            for name in ("spend", "conversions", "incremental_conversions", "romi",
                         "incremental_romi"):
                point[name] = interval([r[name] for r in rows])
            points.append(point)
        curve = _Curve([(p["budget"], p["objective"]["mean"]) for p in points])
        curves.append({"id": cid, "scales": list(scales), "points": points, "curve": curve})
    return curves


def _allocate(curves: list[dict], goal: _Goal, total: int, current: Split) -> Split:
    """The total handed out by equal marginal return on the curves' envelopes: from
    the minimum budgets up, INCREMENTS steps, each to the campaign whose envelope gains
    most per unit from it (ties: the one furthest below its current-split budget, as a
    share of it, then the first)."""
    fs = [c["curve"] for c in curves]
    # Slopes closer than TIE of the steepest are equal: the curves are means over a few
    # seeds, and money that gains nothing anywhere should stay where the marketer had it.
    unit = max([abs(s) for f in fs for s in f.slopes] + [1e-300])
    split = list(goal.low)
    left = total - sum(split)
    step = max(1, -(-left // INCREMENTS))
    while left > 0:
        size = min(step, left)
        best, best_key = None, None
        for k, f in enumerate(fs):
            room = min(size, goal.high[k] - split[k])
            if room <= 0:
                continue
            b = _units(split[k])
            slope = (f(b + room / MICROS) - f(b)) / (room / MICROS)
            key = (round(slope / unit / TIE), (current[k] - split[k]) / max(current[k], 1), -k)
            if best_key is None or key > best_key:
                best, best_key = k, key
        room = min(size, goal.high[best] - split[best])
        split[best] += room
        left -= room
    return tuple(split)


# ---- the search -----------------------------------------------------------------------

def _moved(split: Split, k: int, amount: int) -> Split:
    out = list(split)
    out[k] += amount
    return tuple(out)


def _search(ev: _Evaluations, goal: _Goal, current: Split, start: Split, total: int,
            max_iterations: int, step: int, min_step: int) -> Split:
    """Local search from `start` by paired moves on the search seeds; the best split
    seen (current and start included), by mean objective over the search seeds."""
    seen: dict[Split, float] = {}

    def score(split: Split) -> float:
        if split not in seen:
            seen[split] = _mean(ev.values(goal, split, goal.search))
        return seen[split]

    x = start
    n = len(x)
    for iteration in range(max_iterations + 1):
        ev.run([((x, 1.0), goal.search)])
        if iteration == max_iterations or step < min_step:
            break
        room = _micros(MAX_TOTAL_BUDGET) - total  # a run at +step stays a valid scenario
        ups = {k: min(step, goal.high[k] - x[k], room) for k in range(n)}
        downs = {k: min(step, x[k] - goal.low[k]) for k in range(n)}
        ups = {k: a for k, a in ups.items() if a > 0}
        downs = {k: a for k, a in downs.items() if a > 0}
        # A budget that never binds (no bid paced or out of budget on any seed) gains
        # nothing from more, and loses nothing from less while well above what it
        # spends: those are not run (the move itself always is).
        rows = [r["campaigns"] for r in ev.reports(x, goal.search)]
        free = {k for k in range(n) if not any(
            row[k]["bid_outcomes"]["paced"] or row[k]["bid_outcomes"]["out_of_budget"] for row in rows)}
        spare = {k for k, a in downs.items() if k in free and all(
            row[k]["spend"] <= IDLE * _units(x[k] - a) for row in rows)}
        ev.run([((_moved(x, k, a), 1.0), goal.search) for k, a in ups.items() if k not in free]
               + [((_moved(x, k, -a), 1.0), goal.search) for k, a in downs.items()
                  if k not in spare])
        here = ev.values(goal, x, goal.search)
        gain = {k: 0.0 if k in free else
                _paired_mean(ev.values(goal, _moved(x, k, a), goal.search), here) / a
                for k, a in ups.items()}
        loss = {k: 0.0 if k in spare else
                _paired_mean(here, ev.values(goal, _moved(x, k, -a), goal.search)) / a
                for k, a in downs.items()}
        pairs = [(gain[i] - loss[j], -i, -j) for i in gain for j in loss if i != j]
        best = max(pairs, default=None)
        if best is None or best[0] <= 0:
            step //= 2
            continue
        i, j = -best[1], -best[2]
        amount = min(ups[i], downs[j])
        moves = [_moved(_moved(x, i, a), j, -a) for a in dict.fromkeys((amount, amount // 2)) if a > 0]
        ev.run([((y, 1.0), goal.search) for y in moves])
        better = [(_paired_mean(ev.values(goal, y, goal.search), here), -m, y)
                  for m, y in enumerate(moves)]
        for _, _, y in better:
            score(y)
        top = max(better)
        if top[0] > 0:
            x = top[2]
            if top[1] != 0:  # the half move won: the step was too long
                step //= 2
        else:
            step //= 2
    score(x)
    ev.run([((current, 1.0), goal.search)])
    score(current)
    score(start)
    # The best mean; ties go to the current split, then to the earliest seen.
    order = list(seen)
    return max(order, key=lambda s: (seen[s], s == current, -order.index(s)))


def _confirm(ev: _Evaluations, goal: _Goal, proposal: Split, current: Split
             ) -> tuple[Split, dict, dict]:
    """The proposal against the current split on the confirmation seeds: the split to
    recommend (the current one unless the proposal's paired gain is above 0), the
    recommended split's gain and the proposal's (split and gain), as measured."""
    ev.run([((proposal, 1.0), goal.confirm), ((current, 1.0), goal.confirm)])
    base = ev.values(goal, current, goal.confirm)
    gain = paired(ev.values(goal, proposal, goal.confirm), base)
    best_found = {"split": _named(goal, proposal), "gain": gain}
    if proposal != current and gain["mean"] is not None and gain["mean"] > 0:
        return proposal, gain, best_found
    return current, paired(base, base), best_found


def _named(goal: _Goal, split: Split) -> dict[str, float]:
    return {cid: _units(m) for cid, m in zip(goal.ids, split)}


def _result(ev: _Evaluations, goal: _Goal, total: int, chosen: Split, current: Split,
            gain: dict, best_found: dict, curves: list[dict], goal_part: dict | None) -> dict:
    proposed_reports = ev.reports(chosen, goal.confirm)
    current_reports = ev.reports(current, goal.confirm)
    return {
        "optimize_version": OPTIMIZE_VERSION,
        "scenario": goal.scenario.name,
        "currency": goal.scenario.currency,
        "objective": goal.objective,
        "incremental": goal.incremental,
        "total_budget": _units(total),
        "bounds": {cid: [_units(lo), _units(hi)] for cid, lo, hi in
                   zip(goal.ids, goal.low, goal.high)},
        "split": _named(goal, chosen),
        "current_split": _named(goal, current),
        "expected": variant_figures(proposed_reports, current_reports),
        "current": variant_figures(current_reports, None),
        "gain": gain,
        "found_better": chosen != current,
        "best_found": best_found,
        "search_seeds": goal.search_seeds,
        "confirm_seeds": goal.confirm_seeds,
        "evaluations": len(ev.used),
        "curves": [{"id": c["id"], "points": c["points"]} for c in curves],
        "goal": goal_part,
        "reachable": None if goal_part is None else goal_part["reachable"],
        "reason": None if goal_part is None else goal_part["reason"],
    }


def _write(out_dir: str | Path, result: dict) -> dict:
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_atomic(Path(out_dir) / OPTIMIZE_FILE, to_json(result))
    return result


# ---- the budget for a goal ------------------------------------------------------------

class _GoalSearch:
    """The smallest total that reaches the goal: see the module's docstring."""

    def __init__(self, ev: _Evaluations, goal: _Goal, scales: tuple[float, ...], rounds: int,
                 tolerance: float):
        self.ev, self.goal, self.scales = ev, goal, scales
        self.rounds, self.tolerance = rounds, tolerance
        self.current = tuple(min(max(b, lo), hi) for b, lo, hi in zip(goal.base, goal.low, goal.high))
        self.curves: list[dict] = []

    # What a split reaches on some seeds: mean conversions, mean total ROMI.
    def conversions(self, split: Split, runs: list[SweepRun]) -> float:
        return _mean([float(r["totals"][self.goal.conversions])
                      for r in self.ev.reports(split, runs)])

    def romi(self, split: Split, runs: list[SweepRun]) -> float | None:
        return interval([r["totals"][self.goal.romi] for r in self.ev.reports(split, runs)])["mean"]

    def enough(self, split: Split, runs: list[SweepRun]) -> bool:
        return self.conversions(split, runs) >= self.goal.target

    def romi_ok(self, split: Split, runs: list[SweepRun]) -> bool:
        if self.goal.min_romi is None:
            return True
        romi = self.romi(split, runs)
        return romi is not None and romi >= self.goal.min_romi

    def allocation(self, total: int) -> Split:
        return _allocate(self.curves, self.goal, total, self.proportional(total))

    def proportional(self, total: int) -> Split:
        return _fit(self.current, self.goal.low, self.goal.high, total)

    def predicted(self, total: int) -> float:
        split = self.allocation(total)
        return sum(c["curve"](_units(m)) for c, m in zip(self.curves, split))

    def run(self) -> dict:
        goal, ev = self.goal, self.ev
        unbound = self.unbound()
        ev.run([((unbound, 1.0), goal.search + goal.confirm)])
        if not self.enough(unbound, goal.confirm):
            return self.unreachable(unbound, self.market_reason(unbound), unbound)
        ev.run([((self.current, s), goal.search) for s in self.scales])
        self.curves = _curves(ev, goal, self.current, self.scales)
        low_total, ceiling = max(sum(goal.low), 1), sum(unbound)
        # The bracket (lo, hi]: lo assumed too little, hi found enough on the search seeds.
        guess = self.predicted_total(low_total, ceiling)
        lo, hi, hi_split = max(low_total, guess // 3), ceiling, unbound
        for round_ in range(self.rounds):
            if hi <= lo * (1 + self.tolerance):
                break
            totals = [round(guess / 1.1), guess] if round_ == 0 else \
                [round(lo * (hi / lo) ** f) for f in (1 / 3, 2 / 3)]
            totals = sorted(t for t in dict.fromkeys(totals) if lo < t < hi)
            if not totals:
                break
            splits = [self.allocation(t) for t in totals]
            ev.run([((s, 1.0), goal.search) for s in splits])
            for t, s in zip(totals, splits):
                if self.enough(s, goal.search):
                    hi, hi_split = t, s
                    break
                lo = t
        if not self.romi_ok(hi_split, goal.search):
            return self.romi_limited(hi_split, unbound)
        return self.confirm(hi, hi_split, ceiling, unbound)

    def unbound(self) -> Split:
        """Budgets that do not bind: UNBOUND_SCALE times the current ones, within the
        bounds and the total allowed (then they may bind)."""
        goal = self.goal
        split = [min(hi, max(lo, round(b * UNBOUND_SCALE)))
                 for b, lo, hi in zip(self.current, goal.low, goal.high)]
        if sum(split) > goal.limit:
            return _fit(tuple(split), goal.low, goal.high, goal.limit)
        return tuple(split)

    def predicted_total(self, lo: int, hi: int) -> int:
        """The smallest total whose allocation the curves predict enough (else hi)."""
        if self.predicted(hi) < self.goal.target:
            return hi
        for _ in range(60):
            if hi - lo <= max(1, hi // 1000):
                break
            mid = (lo + hi) // 2
            if self.predicted(mid) >= self.goal.target:
                hi = mid
            else:
                lo = mid
        return hi

    def confirm(self, total: int, split: Split, ceiling: int, unbound: Split) -> dict:
        """The split found on the search seeds, checked on fresh ones against the
        current split scaled to the same total; the total is raised (at most
        GOAL_RETRIES times) when the fresh seeds fall short of the target."""
        goal, ev = self.goal, self.ev
        for attempt in range(GOAL_RETRIES + 1):
            current = self.proportional(total)
            chosen, gain, best_found = _confirm(ev, goal, split, current)
            enough = self.enough(chosen, goal.confirm)
            ok = enough and self.romi_ok(chosen, goal.confirm)
            if enough or attempt == GOAL_RETRIES or total >= ceiling:
                break  # (more budget would not raise a ROMI found too low)
            got = max(self.conversions(chosen, goal.confirm), 1e-9)
            total = min(ceiling, round(total * max(1.05, min(2.0, goal.target / got))))
            split = self.allocation(total)
        figures = self.figures(chosen)
        romi = self.romi(chosen, goal.confirm)
        what, money, at = self.what(), _money(goal, total), self.romi_words()
        if ok:
            reason = (f"{figures['mean']:,.1f} {what} expected{_range(figures)} with a total"
                      f" budget of {money}, at {at} of {_pct(romi)}")
        elif not enough:
            reason = (f"on fresh seeds the best split found reaches only {figures['mean']:,.1f}"
                      f" {what}{_range(figures)} with a total budget of {money}, short of the"
                      f" {_count(goal.target)} asked: the target is at the edge of what this market"
                      f" gives; try more seeds or a little more budget")
        else:
            reason = (f"{figures['mean']:,.1f} {what}{_range(figures)} with a total budget of"
                      f" {money}, but at {at} of {_pct(romi)}, below the {_pct(goal.min_romi)}"
                      " asked")
        part = self.goal_part(ok, reason, unbound)
        return _result(ev, goal, total, chosen, current, gain, best_found, self.curves, part)

    def romi_limited(self, over: Split, unbound: Split) -> dict:
        """The target needs more budget than the ROMI floor allows: the most conversions
        at that ROMI (the largest total tried whose allocation keeps it), and why."""
        goal, ev = self.goal, self.ev
        # The bracket [lo, hi): ROMI assumed to hold at lo (the smallest curve point), fails at hi.
        hi = sum(over)
        lo = min(hi - 1, max(sum(goal.low), round(sum(self.current) * self.scales[0])))
        best = None
        for _ in range(self.rounds):
            if hi <= lo * (1 + self.tolerance):
                break
            totals = sorted(t for t in dict.fromkeys(round(lo * (hi / lo) ** f) for f in (1 / 3, 2 / 3))
                            if lo < t < hi)
            if not totals:
                break
            splits = [self.allocation(t) for t in totals]
            ev.run([((s, 1.0), goal.search) for s in splits])
            for t, s in zip(totals, splits):
                if not self.romi_ok(s, goal.search):
                    hi = t
                    break
                lo, best = t, s
        if best is None:  # the ROMI is not kept even at the bracket's foot: show that
            best = self.allocation(lo)
            ev.run([((best, 1.0), goal.search)])
        at = self.romi_words()
        shares = _outcome_shares(ev.reports(over, goal.search))
        why = (f"the ROMI falls below {_pct(goal.min_romi)} before the target: the best split"
               f" found to reach {self.conversions(over, goal.search):,.1f} {self.what()} (a total"
               f" budget of {_money(goal, sum(over))}) has {at} of {_pct(self.romi(over, goal.search))},"
               f" each of its conversions costing {self.cpa(over)} against {self.cpa(best)} at"
               f" {_money(goal, sum(best))}: the extra impressions are dearer or less likely to"
               f" convert ({shares['price']:.0%} of the requests the campaigns may bid on are lost"
               f" to higher bids or floors: lost_to_higher_bid, lost_to_market, below_floor;"
               f" {shares['frequency_capped']:.0%} frequency_capped)")
        return self.unreachable(best, why, best)

    def cpa(self, split: Split) -> str:
        """Spend per conversion over the search seeds, as money."""
        reports = self.ev.reports(split, self.goal.search)
        conversions = sum(r["totals"][self.goal.conversions] for r in reports)
        if not conversions:
            return "- (no conversion)"
        return _money(self.goal, _micros(sum(r["totals"]["spend"] for r in reports) / conversions))

    def unreachable(self, split: Split, why: str, most: Split) -> dict:
        """The goal cannot be reached: the result describes `split`, the most found."""
        goal, ev = self.goal, self.ev
        total = sum(split)
        current = self.proportional(total)
        ev.run([((most, 1.0), goal.confirm)])
        chosen, gain, best_found = _confirm(ev, goal, split, current)
        figures = self.figures(most)
        spend = interval([r["totals"]["spend"] for r in ev.reports(most, goal.confirm)])
        romi = "" if goal.min_romi is None else \
            f", at {self.romi_words()} of {_pct(self.romi(most, goal.confirm))}"
        lead = (f"at most {figures['mean']:,.1f} {self.what()}{_range(figures)}, with a total"
                f" budget of {_money(goal, sum(most))} (of which"
                f" {_money(goal, _micros(spend['mean']))} is spent){romi}, short of the"
                f" {_count(goal.target)} asked: ")
        part = self.goal_part(False, lead + why, most)
        return _result(ev, goal, total, chosen, current, gain, best_found, self.curves, part)

    def figures(self, split: Split) -> dict:
        return interval([r["totals"][self.goal.conversions]
                         for r in self.ev.reports(split, self.goal.confirm)])

    def goal_part(self, reachable: bool, reason: str, most: Split) -> dict:
        """The goal's verdict; "most": the most conversions found (on the confirmation
        seeds): with budgets that do not bind, or the most that keeps the ROMI floor."""
        goal = self.goal
        reports = self.ev.reports(most, goal.confirm)
        return {"target_conversions": goal.target, "min_romi": goal.min_romi,
                "incremental": goal.incremental, "reachable": reachable,
                "reason": _capital(reason) + ("" if reason.endswith(".") else "."),
                "most": {"conversions": self.figures(most), "budget": _units(sum(most)),
                         "spend": interval([r["totals"]["spend"] for r in reports])}}

    def what(self) -> str:
        return "ad-caused conversions" if self.goal.incremental else "conversions"

    def romi_words(self) -> str:
        return "an incremental ROMI" if self.goal.incremental else "a total ROMI"

    def market_reason(self, unbound: Split) -> str:
        """Why no budget reaches the target: the bid outcomes of the runs whose budgets
        do not bind, in the words of what limits the campaigns most."""
        shares = _outcome_shares(self.ev.reports(unbound, self.goal.confirm))
        duration = _duration(self.goal.scenario.simulation.duration)
        won, capped, price = shares["won"], shares["frequency_capped"], shares["price"]
        outside = f"{shares['not_targeted_all']:.0%} of all requests are outside their targeting (not_targeted)"
        if shares["budget"] >= max(won, capped, price) or (shares["budget"] > 0.05 and sum(unbound) >= self.goal.limit):
            return (f"the total budget allowed, {_money(self.goal, self.goal.limit)}, binds:"
                    f" {shares['budget']:.0%} of the requests the campaigns may bid on are held"
                    f" back to stay within their budgets (paced {shares['paced']:.0%},"
                    f" out_of_budget {shares['out_of_budget']:.0%}); a bigger total would buy more")
        if price >= max(won, capped):
            return _price_text(shares) + f"; {outside}"
        if capped >= won:
            return (f"frequency caps bind: {capped:.0%} of the requests the campaigns may bid on"
                    f" come from users who have already seen their cap (frequency_capped), and"
                    f" {outside}; looser caps or a wider audience would reach more")
        return (f"the audience is exhausted in this {duration} flight: the campaigns already win"
                f" {won:.0%} of the requests they may bid on (won), and {outside}; a longer"
                f" flight or wider targeting would reach more")


def _price_text(shares: dict) -> str:
    return (f"the market outbids them: {shares['price']:.0%} of the requests the campaigns may"
            f" bid on are lost to higher bids or floors (lost_to_higher_bid"
            f" {shares['lost_to_higher_bid']:.0%}, lost_to_market {shares['lost_to_market']:.0%},"
            f" below_floor {shares['below_floor'] + shares['below_deal_floor']:.0%}; won"
            f" {shares['won']:.0%}, frequency_capped {shares['frequency_capped']:.0%}), and more"
            " budget does not raise bids that stop at what an impression is worth to them")


def _count(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _outcome_shares(reports: list[dict]) -> dict:
    """The campaigns' bid outcomes over the runs: each as a share of the requests they
    may bid on (neither outside their targeting nor blocked), "price" the ones lost to
    higher bids or floors, and not_targeted_all the share of all outcomes untargeted."""
    counts = {name: 0 for name in OUTCOME_NAMES}
    for report in reports:
        for row in report["campaigns"]:
            for name in OUTCOME_NAMES:
                counts[name] += row["bid_outcomes"].get(name, 0)
    everything = sum(counts.values())
    eligible = everything - counts["not_targeted"] - counts["blocked"]
    shares = {name: counts[name] / eligible if eligible else 0.0 for name in OUTCOME_NAMES}
    shares["price"] = sum(shares[name] for name in ("lost_to_higher_bid", "lost_to_market",
                                                     "below_floor", "below_deal_floor"))
    shares["budget"] = shares["paced"] + shares["out_of_budget"]
    shares["not_targeted_all"] = counts["not_targeted"] / everything if everything else 0.0
    return shares


def _duration(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            amount = seconds / size
            return f"{amount:g}-{unit}" if amount == int(amount) else f"{amount:.1f}-{unit}"
    return f"{seconds:g}-second"


def _range(figure: dict) -> str:
    if figure.get("low") is None:
        return ""
    return f" (interval {figure['low']:,.1f} to {figure['high']:,.1f})"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.0%}"


def _money(goal: _Goal, micros: int) -> str:
    return f"{_units(micros):,.2f} {goal.scenario.currency}"
