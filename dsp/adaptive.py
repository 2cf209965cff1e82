"""Strategies that learn (docs/strategies.md, "Strategies that learn").

ShadedBid: first-price bid shading that learns its win-rate curve from its own wins
and losses. BudgetOrtbBid: a value bidder whose lambda is solved online so that its
spend follows its budget over the flight. Their specs are in rtb.strategy_spec.

Two implementations of each. The classes are the reference: bid() and observe() on a
view, as any Python strategy (simulate(strategies=...) and the theory checks run
them). In a scenario the exchange runs them in its fast path instead (their
formula()): the state below (Learners, in the run state) is the classes' state for
every such campaign in arrays, updated once per tick, and the bids come from the numba
bid pass (dsp.bidding.learner_bids); tests/test_adaptive_strategies.py checks that
the two give the same run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from dsp.strategies import FORMULA_BUDGET_ORTB, FORMULA_SHADED, BidView, Feedback

GRID_POINTS = 160  # the shading grid: log-spaced over four decades below max_cpm
GRID_DECADES = 4.0
PACING_WINDOW_S = 900.0  # spend and target are averaged over about 15 simulated minutes


def value_cpm(view: BidView, value_per_conversion: float) -> np.ndarray:
    """Expected value of each request's impression, CPM: pCTR x pCVR x value x 1000."""
    return view.pctr * view.pcvr * (value_per_conversion * 1000.0)


@njit(cache=True, nogil=True)
def _monotone_fit_nb(wins, weights, out):
    """out = the non-decreasing sequence closest to wins / weights (pool adjacent violators)."""
    n = wins.size
    means = np.empty(n)
    sizes = np.empty(n)
    counts = np.empty(n, dtype=np.int64)
    top = 0
    for i in range(n):
        mean, size, count = wins[i] / weights[i], weights[i], 1
        while top > 0 and means[top - 1] >= mean:
            top -= 1
            prev_mean, prev_size = means[top], sizes[top]
            count += counts[top]
            mean = (prev_mean * prev_size + mean * size) / (prev_size + size)
            size += prev_size
        means[top], sizes[top], counts[top] = mean, size, count
        top += 1
    i = 0
    for j in range(top):
        for _ in range(counts[j]):
            out[i] = means[j]
            i += 1


def monotone_fit(wins: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence closest to wins / weights in weighted least squares
    (pool adjacent violators); weights > 0."""
    out = np.empty(wins.size)
    _monotone_fit_nb(np.asarray(wins, dtype=np.float64), np.asarray(weights, dtype=np.float64), out)
    return out


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

    def formula(self) -> tuple[int, float, float, float]:
        """The exchange's fast path (Learners): value scale, first price (1) or not (0)."""
        return FORMULA_SHADED, self.value_per_conversion * 1000.0, float(self.first_price), 0.0

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

    def formula(self) -> tuple[int, float, float, float]:
        """The exchange's fast path (Learners): value scale, c (NaN = the linear form)."""
        return (FORMULA_BUDGET_ORTB, self.value_per_conversion * 1000.0,
                math.nan if self.c is None else float(self.c), 0.0)

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


# ---- the exchange's fast path ---------------------------------------------------------------

@njit(cache=True, nogil=True)
def _refit_nb(grid, bids, wins, win_rate, hull, n_hull, cross, s):
    """Row s: win_rate = the fit of (wins + 1) / (bids + 1), and the points that can
    maximise the surplus (v - b) x P(b) for some v: hull[s, :n_hull[s]], ascending.

    Only the lowest point of each level of the fit can (ShadedBid.bid's `keep`); of
    those, point k's surplus is a line in v of slope P(b_k), the best is on the
    lines' upper envelope, and hull[s, j + 1] beats hull[s, j] for v above cross[s, j].
    The bid pass looks v up there and compares the neighbours' surpluses exactly.
    """
    _monotone_fit_nb(wins[s] + 1.0, bids[s] + 1.0, win_rate[s])
    p, b = win_rate[s], grid[s]
    h = 0
    for k in range(p.size):
        if k > 0 and not p[k] > p[k - 1]:
            continue  # not the lowest point of its level
        while h > 0:
            j = hull[s, h - 1]  # k beats j for v above x
            x = (p[k] * b[k] - p[j] * b[j]) / (p[k] - p[j])
            if h > 1 and x <= cross[s, h - 2]:
                h -= 1  # j is never above both its neighbours
            else:
                cross[s, h - 1] = x
                break
        hull[s, h] = k
        h += 1
    n_hull[s] = h


@njit(cache=True, nogil=True)
def _shaded_learn_nb(rows, campaign, points, winner, half_life, grid, bids, wins, placed,
                     win_rate, hull, n_hull, cross):
    """ShadedBid.observe for the shaded rows that bid this tick, then their refit.

    points[s, i]: the grid point row s bid on request i if the bid went to auction
    (pacing let it through), -1 else; winner[i]: the campaign that won request i.
    """
    n_points = bids.shape[1]
    for s in rows:
        c = campaign[s]
        count = np.zeros(n_points)
        won = np.zeros(n_points)
        n = 0
        for i in range(points.shape[1]):
            k = points[s, i]
            if k >= 0:
                count[k] += 1.0
                n += 1
                if winner[i] == c:
                    won[k] += 1.0
        if half_life[s] < np.inf:
            factor = 0.5 ** (n / half_life[s])
            for k in range(n_points):
                bids[s, k] *= factor
                wins[s, k] *= factor
        for k in range(n_points):
            bids[s, k] += count[k]
            wins[s, k] += won[k]
        placed[s] += n
        _refit_nb(grid, bids, wins, win_rate, hull, n_hull, cross, s)


@njit(cache=True, nogil=True)
def _ortb_learn_nb(ortb, target, spend_micros, weight, step, lam, spend, average):
    """BudgetOrtbBid.observe for campaigns ortb (numba, not numpy: np.exp is not
    math.exp to the last bit, and lam would drift from the class's)."""
    for j in range(ortb.size):
        c = ortb[j]
        spend[c] += weight * (spend_micros[j] / 1e6 - spend[c])
        average[c] += weight * (target[j] - average[c])
        if average[c] > 0:
            ratio = min(spend[c] / average[c], 4.0)
            lam[c] = min(1e9, max(1e-9, lam[c] * math.exp(step[c] * weight * (ratio - 1.0))))


@dataclass
class Learners:
    """The run state of the campaigns whose strategy learns in the exchange's fast path
    (the formulas FORMULA_BUDGET_ORTB and FORMULA_SHADED): the classes' state, in arrays.

    budget_ortb, per campaign (f8[nc], unused elsewhere): lam, and the ~15-minute
    averages of spend and target. shaded (first price only; in second price it bids v
    and has no state), per shaded row s of campaign shaded[s]: the grid, the decayed
    bid and win counts per point, the fit and the points it makes candidates, bids
    placed, its parameters.
    """

    ortb: np.ndarray  # i8[k]: the budget_ortb campaigns
    step: np.ndarray  # f8[nc]
    lam: np.ndarray  # f8[nc]
    spend: np.ndarray  # f8[nc]: average spend per tick, currency units
    target: np.ndarray  # f8[nc]: average target per tick
    shaded: np.ndarray  # i8[s]: the first-price shaded campaigns
    grid: np.ndarray  # f8[s, GRID_POINTS]
    bids: np.ndarray  # f8[s, GRID_POINTS]
    wins: np.ndarray  # f8[s, GRID_POINTS]
    win_rate: np.ndarray  # f8[s, GRID_POINTS]: the fit of (wins + 1) / (bids + 1)
    hull: np.ndarray  # i8[s, GRID_POINTS]: [:n_hull[s]] the points that can be best (_refit_nb)
    n_hull: np.ndarray  # i8[s]
    cross: np.ndarray  # f8[s, GRID_POINTS]: v above which hull[s, j + 1] beats hull[s, j]
    placed: np.ndarray  # i8[s]
    explore: np.ndarray  # f8[s]
    warmup: np.ndarray  # i8[s]
    half_life: np.ndarray  # f8[s]: inf = none

    @classmethod
    def start(cls, strategies, code: np.ndarray) -> Learners:
        """From the strategies' objects (their state as it is: fresh ones from a scenario)."""
        nc = code.size
        ortb = np.flatnonzero(code == FORMULA_BUDGET_ORTB)
        shaded = np.array([c for c in np.flatnonzero(code == FORMULA_SHADED)
                           if strategies[c].first_price], dtype=np.int64)
        objs = [strategies[c] for c in shaded]
        lam, step = np.ones(nc), np.zeros(nc)
        spend, target = np.zeros(nc), np.zeros(nc)
        for c in ortb:
            o = strategies[c]
            lam[c], step[c], spend[c], target[c] = o.lam, o.step, o._spend, o._target
        shape = (shaded.size, GRID_POINTS)
        state = cls(
            ortb=ortb, step=step, lam=lam, spend=spend, target=target, shaded=shaded,
            grid=np.array([o.grid for o in objs]).reshape(shape),
            bids=np.array([o.bids for o in objs], dtype=np.float64).reshape(shape),
            wins=np.array([o.wins for o in objs], dtype=np.float64).reshape(shape),
            win_rate=np.empty(shape), hull=np.empty(shape, dtype=np.int64),
            n_hull=np.zeros(shaded.size, dtype=np.int64), cross=np.empty(shape),
            placed=np.array([o.placed for o in objs], dtype=np.int64),
            explore=np.array([o.explore for o in objs], dtype=np.float64),
            warmup=np.array([o.warmup for o in objs], dtype=np.int64),
            half_life=np.array([np.inf if o.half_life is None else o.half_life for o in objs],
                               dtype=np.float64))
        for s in range(shaded.size):
            _refit_nb(state.grid, state.bids, state.wins, state.win_rate, state.hull, state.n_hull,
                      state.cross, s)
        return state

    def targets(self, ortb: np.ndarray, book, flight_end_s: np.ndarray, t0: float,
                t1: float) -> np.ndarray:
        """BudgetOrtbBid.bid's target for the given campaigns this tick, from the book at
        the tick's start (what their views would say), in the same operations."""
        from dsp.campaigns import NO_LIMIT_MICROS
        from rtb.types import MICROS_PER_UNIT, SECONDS_PER_DAY

        length = t1 - t0
        budget_left = book.remaining_total[ortb] / MICROS_PER_UNIT
        flight_left = np.maximum(0.0, flight_end_s[ortb] - t0)
        target = budget_left * np.minimum(1.0, length / np.maximum(flight_left, length))
        day_end, daily = book.day_end_s[ortb].copy(), book.remaining_daily[ortb].copy()
        budget = book.daily_budget[ortb]
        new_day = t0 >= day_end
        daily[new_day] = budget[new_day]
        while (behind := t0 >= day_end).any():
            day_end[behind] += SECONDS_PER_DAY
        limited = budget < NO_LIMIT_MICROS
        day_share = np.minimum(1.0, length / np.maximum(day_end - t0, length))
        return np.where(limited, np.minimum(target, daily / MICROS_PER_UNIT * day_share), target)

    def learn_ortb(self, ortb: np.ndarray, target: np.ndarray, spend_micros: np.ndarray,
                   length: float) -> None:
        """BudgetOrtbBid.observe for the given campaigns (all bid this tick)."""
        _ortb_learn_nb(ortb, target, spend_micros.astype(np.float64), min(1.0, length / PACING_WINDOW_S),
                       self.step, self.lam, self.spend, self.target)

    def learn_shaded(self, rows: np.ndarray, points: np.ndarray, winner: np.ndarray) -> None:
        """ShadedBid.observe for shaded rows `rows` (they bid this tick)."""
        _shaded_learn_nb(rows, self.shaded, points, winner, self.half_life, self.grid, self.bids,
                         self.wins, self.placed, self.win_rate, self.hull, self.n_hull, self.cross)
