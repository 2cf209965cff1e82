"""The DSPs' side of a tick: predicted CTR/CVR and each campaign's strategy's bids.

Targeting and pacing are applied by the exchange's kernel, request by request.
Built-in strategies are evaluated together in one numba pass (their `formula()`);
any other Strategy gets the numpy view below and its own `bid()`.
"""

from __future__ import annotations

from functools import cached_property
from typing import NamedTuple

import numpy as np
from numba import njit

from dsp import strategies as S
from dsp.campaigns import NO_LIMIT_MICROS, CampaignTable
from dsp.strategies import ViewLabels
from rtb.books import CampaignBook, Deals, Targeting
from rtb.prefetch import GATHER_AHEAD, prefetch_item
from rtb.types import MICROS_PER_UNIT, SECONDS_PER_DAY, RequestBatch

CUSTOM = -1  # formula code of a strategy without formula(): its bid() is called


class TickView(NamedTuple):
    """The tick's part of every custom strategy's view: references, no copies (the
    exchange makes one per tick, and only when a custom strategy bids)."""

    requests: RequestBatch
    targeting: Targeting
    deals: Deals
    slot_device: np.ndarray  # u1[n_slot]
    visible_segments: np.ndarray  # u4/u8[n_users]: the segment bits DSPs see (matched, consented)
    book: CampaignBook  # the campaigns' money at the tick's start
    tick_start_s: float
    tick_end_s: float
    labels: tuple[ViewLabels, ...]  # per campaign
    seen_publisher: np.ndarray  # i4[n]: BidView.publisher: the publisher, or, for a request
    # sold anonymously, its anonymous id (an index after the publishers' in the labels)
    seen_slot: np.ndarray  # i8[n]: BidView.slot, likewise


@njit(cache=True, nogil=True)
def _eligible_rows_nb(c, time_s, row, user, deal, slot_words, user_words, flight_start_s,
                      flight_end_s, deal_private, deal_allowed, out):
    """Fill out[:m] with the requests campaign c may bid on; returns m.

    The targeting test of rtb/kernel.py's clear_tick_nb (targeting bits of the request's
    target row, which brand safety has cleared, the flight, a private deal's buyers),
    request by request; tests/test_bidview.py checks that the two agree.
    """
    w = c // 64
    bit = np.uint64(c % 64)
    one = np.uint64(1)
    start, end = flight_start_s[c], flight_end_s[c]
    m = 0
    for i in range(time_s.size):
        if ((slot_words[row[i], w] & user_words[user[i], w]) >> bit) & one:
            t = time_s[i]
            d = deal[i]
            if t >= start and t < end and (d < 0 or not deal_private[d] or deal_allowed[d, c]):
                out[m] = i
                m += 1
    return m


def eligible_rows(c: int, tick: TickView) -> np.ndarray:
    """i8[m]: the tick's requests (ascending) campaign c may bid on (BidView's rows)."""
    r, tg, deals = tick.requests, tick.targeting, tick.deals
    out = np.empty(r.time_s.size, dtype=np.int64)
    m = _eligible_rows_nb(c, r.time_s, r.target_row, r.user, r.deal, tg.slot_words, tg.user_words,
                          tg.flight_start_s, tg.flight_end_s, deals.private, deals.allowed, out)
    return out[:m]


class CampaignView:
    """A strategy's view of the tick for one campaign: the fields of
    dsp.strategies.BidView, over `rows` of the tick's requests (all when None).

    Each array is computed on first read and kept: most strategies read a few
    fields, and each costs a gather over the view's rows. The campaign's money and
    time left are read when the view is made (the tick's start).
    """

    def __init__(self, predicted_ctr, ctr_multiplier, base_cvr, cvr_multiplier, floor_cpm,
                 rng: np.random.Generator, rows: np.ndarray | None = None,
                 tick: TickView | None = None, campaign: int = -1):
        self._predicted_ctr = predicted_ctr
        self._ctr_multiplier = ctr_multiplier
        self._base_cvr = base_cvr
        self._cvr_multiplier = cvr_multiplier
        self._floor_cpm = floor_cpm
        self._rng = rng
        self._rows = rows
        self._tick = tick
        self._c = campaign
        self.spend = self.budget_left = self.daily_budget_left = None
        self.day_left_s = self.flight_left_s = self.tick_start_s = self.tick_end_s = None
        self.labels = self.requests_left = None  # requests_left: rtb replay's episodes only
        if tick is not None:
            self._read_book(tick, campaign)

    def _read_book(self, tick: TickView, c: int) -> None:
        # Python numbers throughout (item()): a numpy scalar costs several times more
        # per operation, and this runs once per tick for every custom strategy.
        book, t0 = tick.book, tick.tick_start_s
        self.tick_start_s, self.tick_end_s = t0, tick.tick_end_s
        self.labels = tick.labels[c]
        spent = book.media_micros.item(c) + book.fee_micros.item(c) + book.data_cost_micros.item(c)
        self.spend = spent / MICROS_PER_UNIT
        self.budget_left = book.remaining_total.item(c) / MICROS_PER_UNIT
        # The kernel restores a daily budget at the first request after midnight: a
        # day that ended before this tick is a fresh one here.
        day_end, daily, budget = book.day_end_s.item(c), book.remaining_daily.item(c), book.daily_budget.item(c)
        if t0 >= day_end:
            daily = budget
            while t0 >= day_end:
                day_end += SECONDS_PER_DAY
        self.daily_budget_left = np.inf if budget >= NO_LIMIT_MICROS else daily / MICROS_PER_UNIT
        self.day_left_s = day_end - t0
        self.flight_left_s = max(0.0, tick.targeting.flight_end_s.item(c) - t0)

    @property
    def rows(self) -> np.ndarray | None:
        """The tick's requests the view holds (ascending), None for all of them."""
        return self._rows

    def _take(self, values: np.ndarray) -> np.ndarray:
        return values if self._rows is None else values[self._rows]

    def _requests(self) -> RequestBatch:
        if self._tick is None:
            raise AttributeError("this view has only pctr, pcvr, floor_cpm and uniform")
        return self._tick.requests

    @cached_property
    def pctr(self) -> np.ndarray:
        return self._take(self._predicted_ctr) * self._ctr_multiplier

    @cached_property
    def pcvr(self) -> np.ndarray:
        return self._take(self._base_cvr) * self._cvr_multiplier

    @cached_property
    def floor_cpm(self) -> np.ndarray:
        return self._take(self._floor_cpm)

    @cached_property
    def uniform(self) -> np.ndarray:
        # Drawn from the campaign's own stream, once per tick that asks, one per request
        # of the tick (then taken): independent of every other campaign's, and no other
        # campaign's draws move.
        return self._take(self._rng.random(self._base_cvr.size))

    @cached_property
    def time_s(self) -> np.ndarray:
        return self._take(self._requests().time_s)

    @cached_property
    def publisher(self) -> np.ndarray:
        self._requests()
        return self._take(self._tick.seen_publisher)

    @cached_property
    def slot(self) -> np.ndarray:
        self._requests()
        return self._take(self._tick.seen_slot)

    @cached_property
    def format(self) -> np.ndarray:
        return self._take(self._requests().format)

    @cached_property
    def device(self) -> np.ndarray:
        return self._tick.slot_device[self._take(self._requests().slot)]

    @cached_property
    def geo(self) -> np.ndarray:
        return self._take(self._requests().geo)

    @cached_property
    def segments(self) -> np.ndarray:
        # u8 whatever the audience keeps (dmp.audience.segment_dtype): the documented type.
        return self._tick.visible_segments[self._take(self._requests().user)].astype(np.uint64)

    @cached_property
    def deal(self) -> np.ndarray:
        return self._take(self._requests().deal)

    @cached_property
    def deal_floor_cpm(self) -> np.ndarray:
        deal = self.deal
        return np.where(deal >= 0, self._tick.deals.floor_cpm[deal], np.nan)

    @cached_property
    def paced_in(self) -> np.ndarray:
        # The kernel's pacing test, in the same floating-point operations.
        tg, c = self._tick.targeting, self._c
        x = self._take(self._requests().u_pace) + tg.pace_offset[c]
        x = np.where(x >= 1.0, x - 1.0, x)
        return x < tg.pace_share[c]


class BidFormulas(NamedTuple):
    """Each campaign's strategy as a formula code and parameters (dsp.strategies)."""

    code: np.ndarray  # i8[nc]: FORMULA_* or CUSTOM
    params: np.ndarray  # f8[nc, 3]
    max_bid_cpm: np.ndarray  # f8[nc]: inf when none
    uniform_row: np.ndarray  # i8[nc]: FORMULA_UNIFORM campaigns' row of the tick's uniforms; -1 else


def bid_formulas(table: CampaignTable) -> BidFormulas:
    nc = len(table.ids)
    code = np.full(nc, CUSTOM, dtype=np.int64)
    params = np.zeros((nc, 3))
    for c, strategy in enumerate(table.strategies):
        formula = getattr(strategy, "formula", None)
        if formula is not None:
            code[c], *params[c] = formula()
    max_bid = np.array([np.inf if m is None else m for m in table.max_bid_cpm], dtype=np.float64)
    uniform = code == S.FORMULA_UNIFORM
    uniform_row = np.where(uniform, np.cumsum(uniform) - 1, -1).astype(np.int64)
    return BidFormulas(code, params, max_bid, uniform_row)


BLOCK = 64  # requests per block: a block's bids (64 x nc) stay in L1/L2 while written


@njit(cache=True, nogil=True)
def _formula_bids_nb(code, params, max_bid_cpm, uniform_row, active, dsp, ctr_multiplier,
                     cvr_multiplier, user_factor, user, base_ctr, base_cvr, uniforms,
                     predicted, out):
    """out[i, c] = campaign c's built-in formula on request i (NaN when inactive).

    The same operations, in the same order, as the strategies' numpy bid() on a
    CampaignView, so either path gives the same bits. Custom campaigns' columns are
    left alone. Also fills predicted f8[n_dsp, n], each DSP's predicted CTR per request
    (user_factor[user, d] * base_ctr), for the custom ones. Requests go in blocks so
    that each campaign's inner loop over requests has one formula (SIMD), while the
    block's rows of `out` stay in cache.
    """
    n, nc = out.shape
    n_dsp = user_factor.shape[1]
    factors = user_factor.reshape(-1)  # a row per id: millions, read at random
    for i in range(n):
        if i + GATHER_AHEAD < n:
            prefetch_item(factors, user[i + GATHER_AHEAD] * n_dsp)
        u = user[i]
        for d in range(n_dsp):
            predicted[d, i] = np.float64(user_factor[u, d]) * base_ctr[i]
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        for c in range(nc):
            k = code[c]
            if k == CUSTOM or k == S.FORMULA_BUDGET_ORTB or k == S.FORMULA_SHADED:
                continue  # bid at the tick: learner_bids
            m = max_bid_cpm[c]
            p0, p1, p2 = params[c, 0], params[c, 1], params[c, 2]
            ctr_mult, cvr_mult, d = ctr_multiplier[c], cvr_multiplier[c], dsp[c]
            if not active[c]:
                for i in range(start, stop):
                    out[i, c] = np.nan
            elif k == S.FORMULA_CONSTANT:
                for i in range(start, stop):
                    out[i, c] = m if p0 > m else p0
            elif k == S.FORMULA_UNIFORM:
                row = uniform_row[c]
                for i in range(start, stop):
                    b = uniforms[row, i] * p0
                    out[i, c] = m if b > m else b  # np.minimum's rule: NaN stays NaN
            elif k == S.FORMULA_PCTR:
                for i in range(start, stop):
                    b = predicted[d, i] * ctr_mult * p0
                    out[i, c] = m if b > m else b
            elif k == S.FORMULA_SQRT_PCTR:
                for i in range(start, stop):
                    b = np.sqrt(p0 * (predicted[d, i] * ctr_mult) + p1) - p2
                    out[i, c] = m if b > m else b
            else:  # FORMULA_VALUE
                for i in range(start, stop):
                    b = predicted[d, i] * ctr_mult * (base_cvr[i] * cvr_mult) * p0
                    out[i, c] = m if b > m else b


def formula_bids(table: CampaignTable, formulas: BidFormulas, user_factor: np.ndarray,
                 base_ctr: np.ndarray, base_cvr: np.ndarray, user: np.ndarray,
                 uniforms: np.ndarray, active: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(bids f8[n, nc], predicted f8[n_dsp, n]): the built-in strategies' bids.

    Reads no running state (all campaigns count as active unless `active` says
    otherwise), so the exchange can compute it ahead, for the next tick. Custom
    strategies' columns are left unset: finish_bids fills them.
    user_factor f4[n_users, n_dsp]: each DSP's estimate of a user's click propensity
    (truth times the model's error). base_ctr/base_cvr: per request, by format.
    uniforms f8[k, n]: row formulas.uniform_row[c] for each FORMULA_UNIFORM campaign c,
    drawn from that campaign's own stream.
    """
    nc = len(table.ids)
    bids = np.empty((user.size, nc))
    predicted = np.empty((user_factor.shape[1], user.size))  # one row per DSP
    if active is None:
        active = np.ones(nc, dtype=np.bool_)
    _formula_bids_nb(formulas.code, formulas.params, formulas.max_bid_cpm, formulas.uniform_row,
                     active, table.dsp, table.ctr_multiplier, table.cvr_multiplier, user_factor,
                     user, base_ctr, base_cvr, uniforms, predicted, bids)
    return bids, predicted


@njit(cache=True, nogil=True)
def _learner_bids_nb(campaigns, code, params, max_bid_cpm, lam, shade_row, grid, win_rate, hull,
                     n_hull, cross, explore_now, uniforms, dsp, ctr_multiplier, cvr_multiplier, predicted,
                     base_cvr, time_s, row, user, deal, slot_words, user_words, flight_start_s,
                     flight_end_s, deal_private, deal_allowed, u_pace, pace_offset, pace_share,
                     out, points):
    """out[:, c] for the learning built-ins' campaigns (dsp.adaptive), the same operations
    as their classes' bid() on a CampaignView.

    v = pCTR x pCVR x p0 per request. budget_ortb: sqrt(p1 / lam x v + p1^2) - p1, or
    v / lam when p1 is NaN. shaded in second price: v. shaded in first price (row s =
    shade_row[c]): on the requests the campaign may bid on (the targeting test of
    _eligible_rows_nb; 0.0 elsewhere, as a custom strategy's column), the grid point
    maximising (v - b) x win_rate (none when not positive; looked up on the hull of
    dsp.adaptive._refit_nb), or with u < explore_now[s]
    the grid point at or below u / explore x v (below the grid: none); points[s, i] =
    that point where pacing lets the bid through, -1 elsewhere. All capped at
    max_bid_cpm. The first-price ones go request by request (each request's user row
    of targeting bits is read once for all of them, as in the kernel).
    """
    n = out.shape[0]
    n_grid = grid.shape[1]
    shading = np.empty(campaigns.size, dtype=np.int64)
    n_shading = 0
    for c in campaigns:
        if code[c] == S.FORMULA_SHADED and params[c, 1] != 0.0:
            shading[n_shading] = c
            n_shading += 1
    for start in range(0, n, BLOCK):  # in blocks of requests, as _formula_bids_nb
        stop = min(start + BLOCK, n)
        for c in campaigns:
            k = code[c]
            p0, p1 = params[c, 0], params[c, 1]
            m = max_bid_cpm[c]
            ctr_mult, cvr_mult, d = ctr_multiplier[c], cvr_multiplier[c], dsp[c]
            if k == S.FORMULA_BUDGET_ORTB:
                lam_c = lam[c]
                if np.isnan(p1):
                    for i in range(start, stop):
                        b = predicted[d, i] * ctr_mult * (base_cvr[i] * cvr_mult) * p0 / lam_c
                        out[i, c] = m if b > m else b
                else:
                    for i in range(start, stop):
                        v = predicted[d, i] * ctr_mult * (base_cvr[i] * cvr_mult) * p0
                        b = np.sqrt(p1 / lam_c * v + p1 * p1) - p1
                        out[i, c] = m if b > m else b
            elif p1 == 0.0:  # shaded, second price
                for i in range(start, stop):
                    b = predicted[d, i] * ctr_mult * (base_cvr[i] * cvr_mult) * p0
                    out[i, c] = m if b > m else b
    one = np.uint64(1)
    for i in range(n):
        t, dl, sl, us = time_s[i], deal[i], row[i], user[i]
        for j in range(n_shading):
            c = shading[j]
            s = shade_row[c]
            points[s, i] = -1
            w = c // 64
            if not ((((slot_words[sl, w] & user_words[us, w]) >> np.uint64(c % 64)) & one) != 0
                    and t >= flight_start_s[c] and t < flight_end_s[c]
                    and (dl < 0 or not deal_private[dl] or deal_allowed[dl, c])):
                out[i, c] = 0.0
                continue
            v = predicted[dsp[c], i] * ctr_multiplier[c] * (base_cvr[i] * cvr_multiplier[c]) * params[c, 0]
            u = uniforms[s, i]
            explore = explore_now[s]
            point = -1
            if u < explore:
                draw = (u / explore) * v
                lo, hi = 0, n_grid  # searchsorted(grid, draw, "right") - 1
                while lo < hi:
                    mid = (lo + hi) // 2
                    if grid[s, mid] <= draw:
                        lo = mid + 1
                    else:
                        hi = mid
                point = lo - 1
            elif v > grid[s, hull[s, 0]]:  # else no point has a positive surplus
                # the envelope's line at v, then the exact surpluses of it and its
                # neighbours (the first of equal ones, as np.argmax)
                lo, size = 0, n_hull[s] - 1  # lo = how many cross[s, :size] are below v
                if size > 0:
                    while size > 1:  # branch-free: v is a new guess every request
                        half = size // 2
                        lo = lo + half if cross[s, lo + half] < v else lo
                        size -= half
                    lo += cross[s, lo] < v
                best = -np.inf
                for q in range(max(lo - 1, 0), min(lo + 2, n_hull[s])):
                    g = hull[s, q]
                    surplus = (v - grid[s, g]) * win_rate[s, g]
                    if surplus > best:
                        best, point = surplus, g
                if not best > 0:
                    point = -1
            if point < 0:
                out[i, c] = np.nan
                continue
            b = grid[s, point]
            m = max_bid_cpm[c]
            out[i, c] = m if b > m else b
            x = u_pace[i] + pace_offset[c]
            if x >= 1.0:
                x = x - 1.0
            if x < pace_share[c]:
                points[s, i] = point


def learner_bids(table: CampaignTable, formulas: BidFormulas, campaigns: np.ndarray, learners,
                 explore_now: np.ndarray, uniforms: np.ndarray, tick: TickView,
                 predicted: np.ndarray, base_cvr: np.ndarray, bids: np.ndarray) -> np.ndarray:
    """Fill bids[:, c] for the given active campaigns of the learning built-ins
    (S.LEARNING_FORMULAS) from their state (dsp.adaptive.Learners) at the tick; returns
    points i2[n_shaded, n] (see _learner_bids_nb; rows of inactive ones are -1)."""
    r, tg, deals = tick.requests, tick.targeting, tick.deals
    n = r.time_s.size
    shade_row = np.full(len(table.ids), -1, dtype=np.int64)
    shade_row[learners.shaded] = np.arange(learners.shaded.size)
    points = np.full((learners.shaded.size, n), -1, dtype=np.int16)
    _learner_bids_nb(campaigns, formulas.code, formulas.params, formulas.max_bid_cpm, learners.lam,
                     shade_row, learners.grid, learners.win_rate, learners.hull, learners.n_hull,
                     learners.cross, explore_now, uniforms, table.dsp, table.ctr_multiplier, table.cvr_multiplier,
                     predicted, base_cvr, r.time_s, r.target_row, r.user, r.deal, tg.slot_words,
                     tg.user_words, tg.flight_start_s, tg.flight_end_s, deals.private,
                     deals.allowed, r.u_pace, tg.pace_offset, tg.pace_share, bids, points)
    return points


@njit(cache=True, nogil=True)
def _no_bids_nb(bids, columns):
    """bids[:, columns] = NaN, row by row: a column of a row-major tick of bids touches
    a cache line per request, so each row's lines are visited once for all columns."""
    for i in range(bids.shape[0]):
        for c in columns:
            bids[i, c] = np.nan


def finish_bids(table: CampaignTable, formulas: BidFormulas, active: np.ndarray,
                bids: np.ndarray, predicted: np.ndarray, base_cvr: np.ndarray,
                floor_cpm: np.ndarray, rngs: tuple[np.random.Generator, ...],
                tick: TickView | None = None,
                view_rows: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """NaN for inactive campaigns, and the custom strategies' bids (their own bid()).

    rngs: each campaign's own stream, for a custom strategy's view.uniform.
    tick: given, each custom strategy sees only the requests it may bid on
    (eligible_rows, kept in view_rows[c] if given) and every BidView field; its
    column is 0.0 on the others, which the kernel counts as it counts a built-in's
    bids there (not_targeted or blocked), so the report's bid outcomes mean the same
    for every strategy. Without tick, the view is every request's pCTR, pCVR, floor
    and uniform.
    """
    inactive = np.flatnonzero(~active)
    if inactive.size:
        _no_bids_nb(bids, inactive)
    for c in np.flatnonzero(active & (formulas.code == CUSTOM)).tolist():
        rows = None if tick is None else eligible_rows(c, tick)
        view = CampaignView(predicted[table.dsp[c]], table.ctr_multiplier[c], base_cvr,
                            table.cvr_multiplier[c], floor_cpm, rngs[c], rows, tick, c)
        column = table.strategies[c].bid(view)
        if table.max_bid_cpm[c] is not None:
            column = np.minimum(column, table.max_bid_cpm[c])
        if rows is None:
            bids[:, c] = column
        else:
            bids[:, c] = 0.0
            bids[rows, c] = column
            if view_rows is not None:
                view_rows[c] = rows
    return bids
