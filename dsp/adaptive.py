"""Strategies that learn (docs/strategies.md, "Strategies that learn").

ShadedBid: first-price bid shading that learns its win-rate curve from its own wins
and losses. BudgetOrtbBid: a value bidder whose lambda is solved online so that its
spend follows its budget over the flight. Both are Python strategies (the exchange
calls their bid() and observe() every tick); their specs are in rtb.strategy_spec.
"""

from __future__ import annotations

import math

import numpy as np

from dsp.strategies import BidView, Feedback

GRID_POINTS = 160  # the shading grid: log-spaced over four decades below max_cpm
GRID_DECADES = 4.0
PACING_WINDOW_S = 900.0  # spend and target are averaged over about 15 simulated minutes


def value_cpm(view: BidView, value_per_conversion: float) -> np.ndarray:
    """Expected value of each request's impression, CPM: pCTR x pCVR x value x 1000."""
    return view.pctr * view.pcvr * (value_per_conversion * 1000.0)


def monotone_fit(wins: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence closest to wins / weights in weighted least squares
    (pool adjacent violators); weights > 0."""
    means: list[float] = []
    sizes: list[float] = []
    counts: list[int] = []
    for w, n in zip((wins / weights).tolist(), weights.tolist()):
        mean, size, count = w, n, 1
        while means and means[-1] >= mean:
            prev_mean, prev_size = means.pop(), sizes.pop()
            count += counts.pop()
            mean = (prev_mean * prev_size + mean * size) / (prev_size + size)
            size += prev_size
        means.append(mean)
        sizes.append(size)
        counts.append(count)
    return np.repeat(means, counts)


class ShadedBid:
    """First-price bid shading that learns P(win | bid) online.

    The bid grid is GRID_POINTS log-spaced CPMs from max_cpm / 1e4 to max_cpm; every bid
    is a grid point, so each is an observation of its own point. Per point it counts
    bids that went to auction (the view's rows that pacing let through) and wins (the
    feedback), decayed by half_life. P(win | b) is the non-decreasing fit of wins /
    bids, with one optimistic pseudo-bid (a win) per point: a point never tried looks
    winnable until bids there lose. The bid on a request of value v is the grid point
    maximising (v - b) x P(win | b), none when that is not positive.

    Exploration: the first `warmup` bids, then a share `explore` of requests, bid a
    uniform point of [0, v) (the campaign's own uniforms, snapped down to the grid),
    so the curve is known away from the bids it settles on.

    In a second-price auction it bids v (truthful bidding is optimal there), learning
    nothing.
    """

    def __init__(self, value_per_conversion: float, auction: str = "first", max_cpm: float = 100.0,
                 explore: float = 0.02, warmup: int = 500, half_life: float | None = None):
        self.value_per_conversion = float(value_per_conversion)
        self.first_price = auction == "first"
        self.explore, self.warmup, self.half_life = float(explore), int(warmup), half_life
        self.grid = max_cpm * 10.0 ** np.linspace(-GRID_DECADES, 0.0, GRID_POINTS)
        self.bids = np.zeros(GRID_POINTS)  # bids placed at each point (decayed)
        self.wins = np.zeros(GRID_POINTS)  # of which won
        self.placed = 0  # bids placed so far
        self._win_rate: np.ndarray | None = None  # the fit, refreshed after feedback
        self._last: tuple[float | None, np.ndarray, np.ndarray] | None = None  # tick, point, rows

    def win_rate(self) -> np.ndarray:
        """P(win | grid[k]) as fitted now, f8[GRID_POINTS]."""
        if self._win_rate is None:
            self._win_rate = monotone_fit(self.wins + 1.0, self.bids + 1.0)
        return self._win_rate

    def bid(self, view: BidView) -> np.ndarray:
        v = value_cpm(view, self.value_per_conversion)
        if not self.first_price:
            return v
        grid = self.grid
        # The best point per request: only the lowest point of each level of the fit
        # can be best, and the best point does not fall as v rises.
        p = self.win_rate()
        keep = np.flatnonzero(np.r_[True, np.diff(p) > 0])
        surplus = (v[:, None] - grid[keep][None, :]) * p[keep][None, :]
        best = keep[np.argmax(surplus, axis=1)]
        point = np.where(surplus.max(axis=1, initial=-np.inf) > 0, best, -1)
        u = view.uniform
        explore = 1.0 if self.placed < self.warmup else self.explore
        trying = u < explore
        if trying.any():
            draw = (u[trying] / explore) * v[trying]
            point[trying] = np.searchsorted(grid, draw, side="right") - 1  # -1: below the grid
        bids = np.where(point >= 0, grid[np.maximum(point, 0)], np.nan)
        placed = point >= 0
        if view.paced_in is not None:
            placed &= view.paced_in
        rows = np.flatnonzero(placed)
        self._last = (view.tick_start_s, point[rows], rows)
        self.placed += rows.size
        return bids

    def observe(self, feedback: Feedback) -> None:
        last, self._last = self._last, None
        if last is None or feedback.won is None:
            return
        tick, point, rows = last
        if tick is not None and feedback.tick_start_s is not None and tick != feedback.tick_start_s:
            return  # conversions of a tick it did not bid in
        if self.half_life is not None:
            keep = 0.5 ** (rows.size / self.half_life)
            self.bids *= keep
            self.wins *= keep
        self.bids += np.bincount(point, minlength=GRID_POINTS)
        won = np.searchsorted(rows, feedback.won)
        won = won[(won < rows.size) & (rows[np.minimum(won, rows.size - 1)] == feedback.won)]
        self.wins += np.bincount(point[won], minlength=GRID_POINTS)
        self._win_rate = None
        return


class BudgetOrtbBid:
    """A budget-constrained value bidder: bid sqrt(c / lam x v + c^2) - c (ORTB's
    concave form on the value v, CPM) or, without c, v / lam; lam solved online.

    Target: what is left of the budget (and of today's, with a daily budget), spent in
    proportion to the time left in the flight (the day). After every tick it bid in,
    spend and target are averaged over about 15 simulated minutes, and
    log lam += step x (spend / target - 1) x (tick length / 15 min): lam rises when
    it spends ahead of the target (bids fall), falls when behind.
    """

    def __init__(self, value_per_conversion: float, c: float | None = None, lam: float = 1.0,
                 step: float = 0.5):
        self.value_per_conversion = float(value_per_conversion)
        self.c, self.lam, self.step = c, float(lam), float(step)
        self._spend = self._target = 0.0  # recent averages, currency units per tick
        self._tick: tuple[float | None, float, float] | None = None  # bid tick, length, target

    def bid(self, view: BidView) -> np.ndarray:
        v = value_cpm(view, self.value_per_conversion)
        t0, t1 = view.tick_start_s, view.tick_end_s
        if t0 is not None and t1 is not None and view.budget_left is not None:
            length = t1 - t0
            share = min(1.0, length / max(view.flight_left_s, length))
            target = view.budget_left * share
            day_left = view.day_left_s
            if view.daily_budget_left is not None and math.isfinite(view.daily_budget_left):
                target = min(target, view.daily_budget_left * min(1.0, length / max(day_left, length)))
            self._tick = (t0, length, target)
        if self.c is None:
            return v / self.lam
        return np.sqrt(self.c / self.lam * v + self.c * self.c) - self.c

    def observe(self, feedback: Feedback) -> None:
        last, self._tick = self._tick, None
        if last is None or last[0] != feedback.tick_start_s:
            return
        _, length, target = last
        weight = min(1.0, length / PACING_WINDOW_S)
        self._spend += weight * (feedback.spend_micros / 1e6 - self._spend)
        self._target += weight * (target - self._target)
        if self._target <= 0:
            return
        ratio = min(self._spend / self._target, 4.0)
        self.lam = min(1e9, max(1e-9, self.lam * math.exp(self.step * weight * (ratio - 1.0))))
        return
