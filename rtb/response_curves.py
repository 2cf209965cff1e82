"""Response curves and the allocation of a total on them: rtb optimize's first guess at a split.

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

Also the plain split of a total in proportion to weights (the current budgets), within
the bounds: the current split scaled to a total.
"""

from __future__ import annotations

import math
from itertools import pairwise

from rtb.evaluations import Evaluations, Goal, Split, micros_to_units
from rtb.stats import interval
from rtb.types import MICROS_PER_UNIT

INCREMENTS = 1000  # the allocation hands the total out in this many increments
TIE = 0.01  # marginal returns closer than this share of the steepest count as equal


def proportional_split(weights: Split, low: Split, high: Split, total: int) -> Split:
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


class Curve:
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


def response_curves(ev: Evaluations, goal: Goal, split: Split, scales: tuple[float, ...]
                    ) -> list[dict]:
    """Per campaign its points over the scales (the means over the search seeds of the
    budget, the objective's part and the figures a marketer reads), and its Curve."""
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
        curve = Curve([(p["budget"], p["objective"]["mean"]) for p in points])
        curves.append({"id": cid, "scales": list(scales), "points": points, "curve": curve})
    return curves


def allocate(curves: list[dict], goal: Goal, total: int, current: Split) -> Split:
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
            b = micros_to_units(split[k])
            slope = (f(b + room / MICROS_PER_UNIT) - f(b)) / (room / MICROS_PER_UNIT)
            key = (round(slope / unit / TIE), (current[k] - split[k]) / max(current[k], 1), -k)
            if best_key is None or key > best_key:
                best, best_key = k, key
        room = min(size, goal.high[best] - split[best])
        split[best] += room
        left -= room
    return tuple(split)
