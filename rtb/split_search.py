"""The split search: refinement by simulation, confirmation on fresh seeds, and the result.

(c) Refinement. The response curves (rtb.response_curves) ignore how campaigns interact
    away from joint scaling (the same advertiser's campaigns take each other's
    last-touch credit), so the allocation is refined by simulation: per iteration every
    campaign is run at +step and -step (paired on the search seeds, as marginal gain and
    loss per unit); the step moves from the campaign that loses least to the one that
    gains most (the move and its half, in one batch), and is kept only if the paired
    mean improves; otherwise the step halves. It stops at an iteration cap or a minimum
    step. A budget that never binds (no bid paced or out of budget on any seed) is taken
    to gain nothing from more, and to lose nothing from less while well above its
    spend: those runs are skipped (a third of them on the quickstart); the move itself
    is always simulated. The best split seen (the current one included) is the proposal.

    With the profit objective, money no campaign can use well is best not spent: the
    split then gives it to campaigns whose budgets do not bind (in proportion to their
    current budgets), and the expected spend (in "expected") shows what is left over.
(d) Confirmation. Choosing the best of many splits on the same seeds flatters the
    winner, so the proposal and the current split are run on fresh seeds the search
    never used, and the paired gain there, with its interval, is the answer. A proposal
    that does not beat the current split there (gain <= 0) is not recommended: the
    result keeps the current split and says so (found_better false).

The result (optimize.json's content) is the confirmed split with its expected figures
against the current split's, both measured on the confirmation seeds; the budget for a
goal (rtb.goal_search) confirms and reports its split the same way.
"""

from __future__ import annotations

from rtb.evaluations import Evaluations, Goal, Split, mean, micros_to_units
from rtb.plan import variant_figures
from rtb.spec_base import MAX_TOTAL_BUDGET
from rtb.stats import paired
from rtb.types import units_to_micros

OPTIMIZE_VERSION = 1
IDLE = 0.8  # a campaign spending under this share of its budget, never paced, has money to spare


def _moved(split: Split, k: int, amount: int) -> Split:
    out = list(split)
    out[k] += amount
    return tuple(out)


def _paired_mean(values: list[float], baseline: list[float]) -> float:
    return mean([v - b for v, b in zip(values, baseline)])


def search_split(ev: Evaluations, goal: Goal, current: Split, start: Split, total: int,
                 max_iterations: int, step: int, min_step: int) -> Split:
    """Local search from `start` by paired moves on the search seeds; the best split
    seen (current and start included), by mean objective over the search seeds."""
    seen: dict[Split, float] = {}

    def score(split: Split) -> float:
        if split not in seen:
            seen[split] = mean(ev.values(goal, split, goal.search))
        return seen[split]

    x = start
    n = len(x)
    for iteration in range(max_iterations + 1):
        ev.run([((x, 1.0), goal.search)])
        if iteration == max_iterations or step < min_step:
            break
        room = units_to_micros(MAX_TOTAL_BUDGET) - total  # a run at +step stays a valid scenario
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
            row[k]["spend"] <= IDLE * micros_to_units(x[k] - a) for row in rows)}
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


def confirm_split(ev: Evaluations, goal: Goal, proposal: Split, current: Split
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


def _named(goal: Goal, split: Split) -> dict[str, float]:
    return {cid: micros_to_units(m) for cid, m in zip(goal.ids, split)}


def optimize_result(ev: Evaluations, goal: Goal, total: int, chosen: Split, current: Split,
                    gain: dict, best_found: dict, curves: list[dict], goal_part: dict | None
                    ) -> dict:
    """The result of a confirmed split (see rtb.optimize); goal_part: budget_for_goal's
    verdict, None for optimize_split."""
    proposed_reports = ev.reports(chosen, goal.confirm)
    current_reports = ev.reports(current, goal.confirm)
    return {
        "optimize_version": OPTIMIZE_VERSION,
        "scenario": goal.scenario.name,
        "currency": goal.scenario.currency,
        "objective": goal.objective,
        "incremental": goal.incremental,
        "total_budget": micros_to_units(total),
        "bounds": {cid: [micros_to_units(lo), micros_to_units(hi)] for cid, lo, hi in
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
