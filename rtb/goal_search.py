"""The budget for a goal: the smallest total, with its split, that reaches a number of conversions.

budget_for_goal (rtb.optimize) first runs budgets so large they do not bind: if even that
does not reach the target, the answer is how many conversions can be reached and why,
from that run's own bid outcomes (the market outbids the campaigns, frequency caps bind,
the audience is exhausted, or the total allowed binds). Otherwise the response curves'
allocation (rtb.response_curves) predicts the smallest total that reaches the target,
and simulation checks it: the bracket [too little, enough] narrows by two points per
batch (the prediction first, then thirds in log space), the smallest total found enough
is confirmed on fresh seeds (and raised if they fall short), with the ROMI floor checked
the same way. When the floor gives way before the target, the answer is the most
conversions found at that ROMI, and why.
"""

from __future__ import annotations

from rtb.evaluations import Evaluations, Goal, Split, mean, micros_to_units
from rtb.response_curves import allocate, proportional_split, response_curves
from rtb.split_search import confirm_split, optimize_result
from rtb.stats import interval
from rtb.sweep import SweepRun
from rtb.types import OUTCOME_NAMES, units_to_micros

UNBOUND_SCALE = 100.0  # budgets this many times the current ones do not bind (checked)
GOAL_RETRIES = 3  # raises of the total (by 10 % or more) when the fresh seeds fall short of the target


class GoalSearch:
    """The smallest total that reaches the goal: see the module's docstring."""

    def __init__(self, ev: Evaluations, goal: Goal, scales: tuple[float, ...], rounds: int,
                 tolerance: float):
        self.ev, self.goal, self.scales = ev, goal, scales
        self.rounds, self.tolerance = rounds, tolerance
        self.current = tuple(min(max(b, lo), hi) for b, lo, hi in zip(goal.base, goal.low, goal.high))
        self.curves: list[dict] = []

    # What a split reaches on some seeds: mean conversions, mean total ROMI.
    def conversions(self, split: Split, runs: list[SweepRun]) -> float:
        return mean([float(r["totals"][self.goal.conversions])
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
        return allocate(self.curves, self.goal, total, self.proportional(total))

    def proportional(self, total: int) -> Split:
        return proportional_split(self.current, self.goal.low, self.goal.high, total)

    def predicted(self, total: int) -> float:
        split = self.allocation(total)
        return sum(c["curve"](micros_to_units(m)) for c, m in zip(self.curves, split))

    def run(self) -> dict:
        goal, ev = self.goal, self.ev
        unbound = self.unbound()
        ev.run([((unbound, 1.0), goal.search + goal.confirm)])
        if not self.enough(unbound, goal.confirm):
            return self.unreachable(unbound, self.market_reason(unbound), unbound)
        ev.run([((self.current, s), goal.search) for s in self.scales])
        self.curves = response_curves(ev, goal, self.current, self.scales)
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
            return proportional_split(tuple(split), goal.low, goal.high, goal.limit)
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
            chosen, gain, best_found = confirm_split(ev, goal, split, current)
            enough = self.enough(chosen, goal.confirm)
            ok = enough and self.romi_ok(chosen, goal.confirm)
            if enough or attempt == GOAL_RETRIES or total >= ceiling:
                break  # (more budget would not raise a ROMI found too low)
            got = max(self.conversions(chosen, goal.confirm), 1e-9)
            total = min(ceiling, round(total * max(1.1, min(2.0, goal.target / got))))
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
        return optimize_result(ev, goal, total, chosen, current, gain, best_found, self.curves,
                               part)

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
        spend = sum(r["totals"]["spend"] for r in reports)
        return _money(self.goal, units_to_micros(spend / conversions))

    def unreachable(self, split: Split, why: str, most: Split) -> dict:
        """The goal cannot be reached: the result describes `split`, the most found."""
        goal, ev = self.goal, self.ev
        total = sum(split)
        current = self.proportional(total)
        ev.run([((most, 1.0), goal.confirm)])
        chosen, gain, best_found = confirm_split(ev, goal, split, current)
        figures = self.figures(most)
        spend = interval([r["totals"]["spend"] for r in ev.reports(most, goal.confirm)])
        romi = "" if goal.min_romi is None else \
            f", at {self.romi_words()} of {_pct(self.romi(most, goal.confirm))}"
        lead = (f"at most {figures['mean']:,.1f} {self.what()}{_range(figures)}, with a total"
                f" budget of {_money(goal, sum(most))} (of which"
                f" {_money(goal, units_to_micros(spend['mean']))} is spent){romi}, short of the"
                f" {_count(goal.target)} asked: ")
        part = self.goal_part(False, lead + why, most)
        return optimize_result(ev, goal, total, chosen, current, gain, best_found, self.curves,
                               part)

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
                "most": {"conversions": self.figures(most), "budget": micros_to_units(sum(most)),
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


def _money(goal: Goal, micros: int) -> str:
    return f"{micros_to_units(micros):,.2f} {goal.scenario.currency}"
