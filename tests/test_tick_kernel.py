"""The simulation tick kernel rtb.kernel.clear_tick_nb against its plain-Python twin.

clear_tick_py below writes the kernel's rules out one request and one campaign at a
time with Python scalars:

- requests are cleared in the order given (time order); at each request first the
  boundaries it reaches: daily budgets are restored when the time reaches day_end_s
  (advancing by 86,400 s); calendar cap counts (campaign and advertiser) are cleared
  when it reaches their window end, for every calendar cap of the same length, the
  end advancing by whole windows;
- bids come one row per request, f8[n, nc]; a bid (NaN or negative = none, not
  counted; above MAX_BID_CPM counts as MAX_BID_CPM) is a candidate only if, in this
  order, the first failing test being its outcome: the campaign targets the request
  (slot and user bitsets, flight, admitted by a private deal; when only the slot's bit
  fails and the pair's bit is in slot_blocked_words instead, brand safety forbids the
  pair: blocked, else not_targeted); pacing lets it through; it reaches the floor (an
  admitted bid at or above a deal's floor is a deal bid and needs no other floor; a
  private deal has no other floor: below_deal_floor);
- candidates are ranked: deal bids first (by bid, then lower index), then the open
  auction with the market (by bid; campaigns beat the market on equal bids, the lowest
  campaign index beats other campaigns). Walking down, the first that may win wins: a
  campaign may win if it can pay the bid's maximum cost (bid micros + DSP fee, floor
  division in ppm, + data micros) from both its remaining total and daily budget
  (out_of_budget otherwise) and neither its cap (calendar count, or rolling ring of the
  last `limit` times whose oldest is inside the window) nor its advertiser's cap is
  reached (frequency_capped); the market always may. Those passed over keep their
  reason; the rest lost (to the market if it won);
- prices: a deal winner pays the fixed price, its bid (first price) or max(next deal
  bid that may win, deal floor); a private deal never falls back to the open auction;
  an open winner pays its bid (first price) or max(next entry that may win, floor);
- outcome counters, reach, exposures (saturating at 255) and the advertiser's last
  touch of the user (exact time, campaign), the result keeping the touch it replaced;
- the per-user books (exposures, touches, cap counters and rings) are read and written
  at the request's user_row (its row, rtb.state.UserRows), the targeting bitsets at its
  user; ring times and touches are stored split in a u4 low part and a high part of
  0-4 bytes (tests/touch_book.py); a new calendar window clears the counters of the rows
  in use (CapBook.rows_in_use) only;
- open_auction (no private deal, not sold through the deal) and floor_hit: in the open
  auction, sold in second price at exactly the floor, or unsold while the best of the
  market's bid and the targeting campaigns' bids >= 0 (slot and user bits, flight; any
  pacing, budget or cap) is below the floor.

Random small batches (integer grids for ties, tight budgets, a handful of users so caps
bind inside a batch, short windows so they expire, quarter-grid pacing uniforms so
shares are hit exactly, consecutive ticks sharing state) must give identical winners,
prices, flags, touches and state arrays. Hand-made cases pin each rule; invariants (floors,
second price <= bid, budgets never negative) are checked on the kernel directly.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from rtb import types as T
from rtb.books import (CampaignBook, CapBook, Deals, Targeting, TickResult, UserBook,
                       campaign_words, new_seller_book, no_deals)
from rtb.kernel import clear_tick, clear_tick_nb
from rtb.types import RequestBatch
from touch_book import (book_value, high_width, identity_rows, random_width, rank_tables,
                        ring_time, ring_times, row_touches, set_ring_time, set_touch,
                        set_touch_value, split_columns, touch_campaigns, touch_times, touch_value,
                        wide_value, with_high)

DAY = T.SECONDS_PER_DAY
FIRST, SECOND = T.MECHANISM_FIRST, T.MECHANISM_SECOND
NAN = math.nan


# ---- the twin ---------------------------------------------------------------------

def cpm_micros(cpm: float) -> int:
    """One impression's cost at `cpm`, the project's convention (types.cpm_to_micros)."""
    return int(T.cpm_to_micros(cpm))


def clear_tick_py(req, bids, mechanism, targeting, deals, book, caps, users, result):
    """Plain-Python statement of clear_tick_nb's rules; updates the same arrays in place.

    bids f8[n, nc]: one row per request.
    """
    winner, price_cpm, deal_won = result.winner, result.price_cpm, result.deal_won
    nc = bids.shape[1]
    for i in range(len(req.time_s)):
        t, u, s = float(req.time_s[i]), int(req.user[i]), int(req.target_row[i])
        r = int(req.user_row[i])  # the user's row in the per-user books
        has_id = u < users.no_id_row  # else a request without an id: no caps, no rows
        floor, market = float(req.floor_cpm[i]), float(req.market_cpm[i])
        d = int(req.deal[i])
        private = d >= 0 and bool(deals.private[d])
        deal_floor = float(deals.floor_cpm[d]) if d >= 0 else math.inf
        _pass_boundaries(t, book, caps)
        open_bids, deal_bids = [], []  # (bid, campaign) candidates, in index order
        offers = [market] if market >= 0.0 else []  # what the floor may have turned away
        for c in range(nc):
            b = float(bids[i, c])
            if not b >= 0.0:  # NaN (or a negative value): no bid, nothing counted
                continue
            if _targeted_by_slot_and_user(c, u, s, targeting) and _in_flight(c, t, targeting):
                offers.append(b)
            b = min(b, T.MAX_BID_CPM)
            admitted = d >= 0 and bool(deals.allowed[d, c])
            in_deal = admitted and b >= deal_floor
            reason = _first_failed_test(c, b, t, u, s, floor, float(req.u_pace[i]), admitted,
                                        in_deal, private, targeting)
            if reason is not None:
                book.outcomes[c, reason] += 1
            elif in_deal:
                deal_bids.append((b, c))
            else:
                open_bids.append((b, c))

        # Rank the candidates: deal bids first (by bid, then lower index), then the open
        # auction with the market (by bid; a campaign before the market on equal bids).
        deal_rank = sorted(deal_bids, key=lambda bc: (-bc[0], bc[1]))
        open_entries = open_bids + ([(market, T.MARKET)] if market >= floor else [])
        open_rank = sorted(open_entries, key=lambda bc: (-bc[0], bc[1] == T.MARKET, bc[1]))
        leader, best, setter, reasons = T.UNSOLD, 0.0, None, {}
        in_deal_tier = False
        for ranked, is_deal in ((deal_rank, True), ([] if private else open_rank, False)):
            for pos, (b, c) in enumerate(ranked):
                why = None if c == T.MARKET else _cannot_win(c, b, t, r, has_id, book, caps)
                if why is not None:
                    reasons[c] = why  # ranked above the winner but may not win
                    continue
                leader, best, in_deal_tier = c, b, is_deal
                # The price setter: the next entry that may win (the market always may).
                setter = next((b2 for b2, c2 in ranked[pos + 1:]
                               if c2 == T.MARKET or _cannot_win(c2, b2, t, r, has_id, book, caps) is None),
                              None)
                break
            if leader != T.UNSOLD:
                break
        deal_won[i] = in_deal_tier
        if in_deal_tier:
            if deals.fixed[d]:
                price = deal_floor
            elif mechanism == FIRST:
                price = best
            else:
                price = deal_floor if setter is None else max(setter, deal_floor)
        elif mechanism == FIRST:
            price = best
        else:
            price = floor if setter is None else max(setter, floor)
        for _, c in deal_bids + open_bids:
            if c in reasons:
                book.outcomes[c, reasons[c]] += 1
            elif c != leader:
                book.outcomes[c, T.LOSS_LOST_TO_MARKET if leader == T.MARKET
                              else T.LOSS_LOST_TO_BID] += 1
        # The open auction's floor: in play unless a private deal or the deal decided.
        in_open = not private and not in_deal_tier
        result.open_auction[i] = in_open
        if leader == T.UNSOLD:
            # Bids came (the market's, or targeting campaigns'), every one below the floor.
            result.floor_hit[i] = in_open and len(offers) > 0 and max(offers) < floor
        else:
            # Second price with nothing between the floor and the winner's bid.
            result.floor_hit[i] = in_open and mechanism == SECOND and price == floor
        if leader == T.UNSOLD:
            winner[i], price_cpm[i] = T.UNSOLD, 0.0
            continue
        winner[i], price_cpm[i] = leader, price
        if leader != T.MARKET:
            _charge_and_record(leader, price, t, u, r, i, book, caps, users, result)


def _roll_windows(t, kind, window_s, window_end_s, counts, column, rows_in_use):
    """Clear the counts of every calendar cap whose window ended, with all caps of its
    length, in the rows in use (the others are zero in a run)."""
    for c in range(kind.size):
        if kind[c] == T.CAP_CALENDAR and t >= window_end_s[c]:
            end = float(window_end_s[c])
            while t >= end:
                end += float(window_s[c])
            for g in range(kind.size):
                if kind[g] == T.CAP_CALENDAR and window_s[g] == window_s[c]:
                    counts[:rows_in_use, column[g]] = 0
                    window_end_s[g] = end


def _pass_boundaries(t, book, caps):
    for c in range(book.day_end_s.size):
        if t >= book.day_end_s[c]:  # a new UTC day: the daily budget is whole again
            book.remaining_daily[c] = book.daily_budget[c]
            while t >= book.day_end_s[c]:
                book.day_end_s[c] += DAY
    in_use = int(caps.rows_in_use[0])
    _roll_windows(t, caps.kind, caps.window_s, caps.window_end_s, caps.counts, caps.cal_col, in_use)
    _roll_windows(t, caps.adv_kind, caps.adv_window_s, caps.adv_window_end_s, caps.adv_counts,
                  caps.adv_col, in_use)


def _has_bit(words, row, c):
    word, bit = divmod(c, 64)
    return (int(words[row, word]) >> bit) & 1 == 1


def _targeted_by_slot_and_user(c, u, s, targeting):
    return _has_bit(targeting.slot_words, s, c) and _has_bit(targeting.user_words, u, c)


def _in_flight(c, t, targeting):
    return targeting.flight_start_s[c] <= t < targeting.flight_end_s[c]


def _first_failed_test(c, b, t, u, s, floor, u_pace, admitted, in_deal, private, targeting):
    rest = (_has_bit(targeting.user_words, u, c) and _in_flight(c, t, targeting)
            and not (private and not admitted))  # targeting but the slot
    if not rest:
        return T.OUTCOME_NOT_TARGETED
    if not _has_bit(targeting.slot_words, s, c):
        # Brand safety forbids a slot the campaign otherwise targets: blocked.
        blocked = _has_bit(targeting.slot_blocked_words, s, c)
        return T.OUTCOME_BLOCKED if blocked else T.OUTCOME_NOT_TARGETED
    x = u_pace + float(targeting.pace_offset[c])
    if x >= 1.0:
        x -= 1.0
    if not x < targeting.pace_share[c]:
        return T.OUTCOME_PACED
    if not in_deal and (private or b < floor):
        return T.LOSS_BELOW_DEAL_FLOOR if private else T.LOSS_BELOW_FLOOR
    return None


def _cannot_win(c, b, t, r, has_id, book, caps):
    """A candidate that cannot pay its whole bid is out of budget, else one whose own or
    advertiser's cap is reached in the user's row r is frequency-capped (never on a
    request without an id); None when it may win."""
    bid_micros = cpm_micros(b)
    max_cost = (bid_micros + bid_micros * int(book.dsp_fee_ppm[c]) // 1_000_000
                + int(book.data_micros[c]))
    if max_cost > book.remaining_total[c] or max_cost > book.remaining_daily[c]:
        return T.LOSS_OUT_OF_BUDGET
    a = int(book.advertiser[c])
    if not has_id:
        return None
    if _capped(caps, c, r, t) or int(caps.adv_counts[r, caps.adv_col[a]]) >= int(caps.adv_limit[a]):
        return T.LOSS_FREQUENCY_CAPPED
    return None


def _ring(caps, c):
    start = int(caps.ring_start[c])
    return range(start, start + int(caps.limit[c]))


def _capped(caps, c, r, t):
    # A calendar cap's counter, or (a cap whose window never ends in the run, rtb/layout.py)
    # the exposures column cal_col points at: limit calendar_limit (256 where none).
    if int(caps.counts[r, caps.cal_col[c]]) >= int(caps.calendar_limit[c]):
        return True
    if caps.kind[c] == T.CAP_ROLLING:
        # The last `limit` impressions all inside (t - window, t]: capped.
        oldest = min(ring_time(caps, r, k) for k in _ring(caps, c))
        return oldest > t - float(caps.window_s[c])
    return False


def _charge_and_record(c, price, t, u, r, i, book, caps, users, result):
    book.outcomes[c, T.WON] += 1
    media = cpm_micros(price)
    fee = media * int(book.dsp_fee_ppm[c]) // 1_000_000
    data = int(book.data_micros[c])
    book.remaining_total[c] -= media + fee + data
    book.remaining_daily[c] -= media + fee + data
    book.media_micros[c] += media
    book.fee_micros[c] += fee
    book.data_cost_micros[c] += data
    if u >= users.no_id_row:
        # No id: one more id reached, nothing seen before, no touch; no row written.
        result.prior_exposures[i] = 0
        book.reach[c] += 1
        result.prior_touch[i] = -1
        return
    if caps.kind[c] == T.CAP_CALENDAR:
        caps.counts[r, caps.cal_col[c]] += 1
    elif caps.kind[c] == T.CAP_ROLLING:
        ring = list(_ring(caps, c))
        oldest = min(ring, key=lambda k: (ring_time(caps, r, k), k))  # the first of equal times
        set_ring_time(caps, r, oldest, t)
    a = int(book.advertiser[c])
    if caps.adv_kind[a] == T.CAP_CALENDAR:
        caps.adv_counts[r, caps.adv_col[a]] += 1
    seen = int(users.exposures[r, c])
    result.prior_exposures[i] = seen
    if seen == 0:
        book.reach[c] += 1
    users.exposures[r, c] = min(seen + 1, 255)
    result.prior_touch[i] = wide_value(users, touch_value(users, r, a), a)  # the touch it replaces
    set_touch_value(users, r, a, book_value(users, t, c))


# ---- building state ---------------------------------------------------------------

class State(NamedTuple):
    targeting: Targeting
    deals: Deals
    book: CampaignBook
    caps: CapBook
    users: UserBook

    def copy(self) -> "State":
        return State(*(type(part)(*(a.copy() if isinstance(a, np.ndarray) else a for a in part))
                       for part in self))


def _column(value, size, dtype):
    return np.broadcast_to(np.asarray(value, dtype=dtype), (size,)).copy()


def _calendar_ends(kind, window_s, window_end_s):
    calendar = kind == T.CAP_CALENDAR
    end = window_s.copy() if window_end_s is None else _column(window_end_s, kind.size, np.float64)
    return np.where(calendar, end, np.inf)


def make_state(nc, n_users=4, n_adv=2, n_slots=1, *, budget=10**9, daily=None, fee_ppm=0,
               data=0, day_end_s=DAY, cap_kind=T.CAP_NONE, cap_limit=0, cap_window_s=1.0,
               window_end_s=None, adv_cap_kind=T.CAP_NONE, adv_cap_limit=0,
               adv_cap_window_s=1.0, adv_window_end_s=None, advertiser=None, slot_ok=None,
               slot_blocked=None, user_ok=None, flight_start_s=0.0, flight_end_s=1e9,
               pace_share=1.0, pace_offset=0.0, deals=None, high=1) -> State:
    """Kernel state laid out as rtb/state.py builds it; per-campaign arguments broadcast.

    slot_blocked: (slot, campaign) pairs targeted but forbidden by brand safety; like
    the simulation's, disjoint from slot_ok. User u's row in the per-user books is u,
    every row in use; ring times and touches have a high part of `high` bytes (1 holds
    times up to 2**24 s >> the rank bits; 0: none, times below 65,536 s >> them)."""
    slot_ok = np.ones((n_slots, nc), bool) if slot_ok is None else np.asarray(slot_ok, bool)
    slot_blocked = (np.zeros_like(slot_ok) if slot_blocked is None
                    else np.asarray(slot_blocked, bool))
    assert not (slot_ok & slot_blocked).any()
    user_ok = np.ones((n_users, nc), bool) if user_ok is None else np.asarray(user_ok, bool)
    targeting = Targeting(campaign_words(slot_ok), campaign_words(slot_blocked),
                          campaign_words(np.zeros_like(slot_ok)), campaign_words(user_ok),
                          _column(flight_start_s, nc, np.float64),
                          _column(flight_end_s, nc, np.float64),
                          _column(pace_share, nc, np.float64), _column(pace_offset, nc, np.float64))
    daily = budget if daily is None else daily
    advertiser = _column(np.arange(nc) % n_adv if advertiser is None else advertiser, nc, np.int32)
    book = CampaignBook(
        advertiser=advertiser,
        dsp_fee_ppm=_column(fee_ppm, nc, np.int64),
        data_micros=_column(data, nc, np.int64),
        remaining_total=_column(budget, nc, np.int64),
        remaining_daily=_column(daily, nc, np.int64),
        daily_budget=_column(daily, nc, np.int64),
        day_end_s=_column(day_end_s, nc, np.float64),
        media_micros=np.zeros(nc, dtype=np.int64),
        fee_micros=np.zeros(nc, dtype=np.int64),
        data_cost_micros=np.zeros(nc, dtype=np.int64),
        outcomes=np.zeros((nc, T.N_OUTCOMES), dtype=np.int64),
        reach=np.zeros(nc, dtype=np.int64),
    )
    kind = _column(cap_kind, nc, np.int8)
    limit = _column(cap_limit, nc, np.int32)
    window_s = _column(cap_window_s, nc, np.float64)
    rolling = np.flatnonzero(kind == T.CAP_ROLLING)
    ring_bounds = np.concatenate([[0], np.cumsum(limit[rolling])]).astype(np.int32)
    ring_start = np.zeros(nc, dtype=np.int32)
    ring_start[rolling] = ring_bounds[:-1]
    adv_kind = _column(adv_cap_kind, n_adv, np.int8)
    adv_window_s = _column(adv_cap_window_s, n_adv, np.float64)
    row_of, rows_in_use = identity_rows(n_users)
    ring_low, ring_high = split_columns(n_users, int(ring_bounds[-1]), high)
    caps = CapBook(kind=kind, limit=limit, window_s=window_s,
                   calendar_limit=np.where(kind == T.CAP_CALENDAR, limit, 256).astype(np.int32),
                   window_end_s=_calendar_ends(kind, window_s, window_end_s),
                   ring_start=ring_start,
                   counts=np.zeros((n_users, nc), dtype=np.uint8),
                   ring_low=ring_low, ring_high=ring_high,
                   adv_kind=adv_kind,
                   adv_limit=np.where(adv_kind == T.CAP_CALENDAR,
                                      _column(adv_cap_limit, n_adv, np.int32), 256).astype(np.int32),
                   adv_window_s=adv_window_s,
                   adv_window_end_s=_calendar_ends(adv_kind, adv_window_s, adv_window_end_s),
                   adv_counts=np.zeros((n_users, n_adv), dtype=np.uint8),
                   cal_col=np.arange(nc, dtype=np.int32), adv_col=np.arange(n_adv, dtype=np.int32),
                   rows_in_use=rows_in_use)
    bits, rank, campaign = rank_tables(advertiser.tolist(), n_adv)
    touch_low, touch_high = split_columns(n_users, n_adv, high)
    users = UserBook(exposures=np.zeros((n_users, nc), dtype=np.uint8), touch_low=touch_low,
                     touch_high=touch_high, row_of=row_of, rows_in_use=rows_in_use.copy(),
                     touch_bits=bits, touch_rank=rank, touch_campaign=campaign)
    return State(targeting, no_deals(nc) if deals is None else deals, book, caps, users)


def make_deals(floor_cpm, fixed, private, allowed) -> Deals:
    return Deals(np.asarray(floor_cpm, np.float64), np.asarray(fixed, np.bool_),
                 np.asarray(private, np.bool_), np.asarray(allowed, np.bool_))


def make_requests(time_s, user, floor_cpm, market_cpm, slot=None, u_pace=None,
                  deal=None) -> RequestBatch:
    """A RequestBatch; the fields the kernel does not read hold typed placeholders.
    Each user's row in the books is the user (make_state's identity rows)."""
    n = len(time_s)
    return RequestBatch(
        time_s=T.on_clock(time_s),  # a run's times are on the clock
        slot=(slot := np.zeros(n, dtype=np.int64) if slot is None else np.asarray(slot, np.int64)),
        target_row=slot,
        publisher=np.zeros(n, dtype=np.int32), format=np.zeros(n, dtype=np.uint8),
        deal=np.full(n, -1, np.int32) if deal is None else np.asarray(deal, np.int32),
        market_cpm=np.asarray(market_cpm, dtype=np.float64),
        floor_cpm=np.asarray(floor_cpm, dtype=np.float64),
        user=np.asarray(user, dtype=np.int64), user_row=np.asarray(user, dtype=np.int32),
        device_user=np.asarray(user, dtype=np.int64),
        person=np.asarray(user, dtype=np.int64), geo=np.zeros(n, dtype=np.uint8),
        user_ctr=np.ones(n, dtype=np.float32), user_segments=np.zeros(n, dtype=np.uint64),
        u_pace=np.zeros(n) if u_pace is None else np.asarray(u_pace, dtype=np.float64),
        u_click=np.zeros(n), u_convert=np.zeros(n), u_delay=np.zeros(n))


def as_bids(rows) -> np.ndarray:
    """Bids one row per request, as the kernel takes them: f8[n, nc]."""
    return np.ascontiguousarray(np.atleast_2d(np.asarray(rows, dtype=np.float64)))


PER_WIN = ("prior_exposures", "prior_touch")  # campaign wins only
# What undoes a win's writes (rtb/shards.py, tested in tests/test_shards.py): not a rule
# the twin states.
UNDO = ("replaced_slot", "replaced_value")


def sentinel_result(n) -> TickResult:
    # Sentinels: every row must be written (the PER_WIN fields only for campaign wins).
    return TickResult(np.full(n, 99, dtype=np.int32), np.full(n, -7.0),
                      np.full(n, 77, dtype=np.uint8), np.ones(n, dtype=np.bool_),
                      np.ones(n, dtype=np.bool_), np.ones(n, dtype=np.bool_),
                      np.full(n, 99, dtype=np.int64), np.full(n, -5, dtype=np.int32),
                      np.full(n, -3, dtype=np.int64))


def run_nb(req, bids, mechanism, state: State) -> TickResult:
    result = sentinel_result(req.time_s.size)
    clear_tick_nb(req, as_bids(bids), mechanism, state.targeting, state.deals,
                  state.book, state.caps, state.users, new_seller_book(1, state.book.advertiser.size),
                  None, result)
    return result


def run_py(req, bids, mechanism, state: State) -> TickResult:
    result = sentinel_result(req.time_s.size)
    clear_tick_py(req, as_bids(bids), mechanism, state.targeting, state.deals, state.book,
                  state.caps, state.users, result)
    return result


def assert_same_result(got: TickResult, want: TickResult) -> None:
    won = got.winner >= 0
    for name, x, y in zip(TickResult._fields, got, want):
        if name in UNDO:
            continue
        if name in PER_WIN:
            x, y = x[won], y[won]
        np.testing.assert_array_equal(x, y, err_msg=name)


# ---- random batches -----------------------------------------------------------------

GRID = np.arange(0.0, 4.01, 0.5)  # CPM grid: ties between bids, floors and the market


def random_case(rng: np.random.Generator):
    """A small market whose budgets, caps and ties bind often: (state, ticks, mechanism)."""
    nc = int(rng.choice([1, 2, 3, 5, 5, 66]))  # 66: two words of campaign bitsets
    n_users, n_adv, n_slots = int(rng.integers(1, 5)), int(rng.integers(1, 3)), int(rng.integers(1, 3))
    budget = rng.choice([0, 400, 1500, 3000, 8000, 10**9], size=nc)  # micros
    windows = rng.choice([5.0, 10.0, 25.0], size=nc)  # seconds: windows pass inside a batch
    adv_windows = rng.choice([5.0, 10.0, 25.0], size=n_adv)
    offset = float(rng.integers(0, 5))  # equal windows share their (epoch-aligned) ends
    n_deals = int(rng.choice([0, 0, 1, 3]))
    # Targeted slots, of which brand safety forbids some (their bids end `blocked`).
    slot_targeted = rng.random((n_slots, nc)) < 0.85
    unsafe = rng.random((n_slots, nc)) < rng.choice([0.0, 0.3])
    deals = None
    if n_deals:
        deals = make_deals(rng.choice(GRID[1:6], n_deals), rng.random(n_deals) < 0.3,
                           rng.random(n_deals) < 0.5, rng.random((n_deals, nc)) < 0.5)
    state = make_state(
        nc, n_users, n_adv, n_slots, budget=budget,
        daily=np.minimum(budget, rng.choice([500, 2500, 6000, 10**9], size=nc)),
        fee_ppm=rng.choice([0, 80_000, 123_457, 999_999], size=nc),
        data=rng.choice([0, 0, 1, 500], size=nc),
        day_end_s=float(rng.choice([20.0, 45.0, DAY])),
        cap_kind=rng.choice([T.CAP_NONE, T.CAP_CALENDAR, T.CAP_ROLLING], size=nc),
        cap_limit=rng.integers(1, 4, size=nc), cap_window_s=windows,
        window_end_s=windows - offset % windows,
        adv_cap_kind=rng.choice([T.CAP_NONE, T.CAP_NONE, T.CAP_CALENDAR], size=n_adv),
        adv_cap_limit=rng.integers(1, 6, size=n_adv), adv_cap_window_s=adv_windows,
        adv_window_end_s=adv_windows - offset % adv_windows,
        advertiser=rng.integers(0, n_adv, size=nc),
        slot_ok=slot_targeted & ~unsafe, slot_blocked=slot_targeted & unsafe,
        user_ok=rng.random((n_users, nc)) < 0.85,
        flight_start_s=rng.choice([0.0, 0.0, 5.0, 20.0], size=nc),
        flight_end_s=rng.choice([1e9, 1e9, 30.0, 60.0], size=nc),
        # Quarter-grid pacing uniforms and offsets: rotated uniforms land exactly on shares.
        pace_share=rng.choice([1.0, 1.0, 0.5, 0.0], size=nc),
        pace_offset=rng.choice([0.0, 0.25, 0.5, 0.75], size=nc),
        deals=deals, high=4)  # the high part is chosen below, once the times are known
    # Some users have seen campaigns before, some right below the counter's ceiling.
    seen = rng.choice([0, 0, 0, 1, 254, 255], size=state.users.exposures.shape)
    state.users.exposures[:] = seen.astype(np.uint8)
    state.book.reach[:] = (seen > 0).sum(axis=0)
    # Some users were touched before (by one of the advertiser's campaigns): the touch a
    # win replaces is not always none.
    touched = rng.random(state.users.touch_low.shape) < 0.3
    for u, a in zip(*np.nonzero(touched)):
        own = np.flatnonzero(state.book.advertiser == a)
        if own.size:
            set_touch(state.users, u, a, 0.0, int(rng.choice(own)))

    ticks = []
    t = 0.0
    for _ in range(int(rng.integers(1, 4))):  # consecutive ticks share the state
        n = int(rng.integers(0, 40 if nc < 10 else 8))
        # Integer-ish times so that requests land exactly on window and day ends.
        step = rng.choice([0.0, 0.5, 1.0, 2.5, 5.0, 0.3337], size=n)  # 0.3337: off the ms grid
        if n and rng.random() < 0.3:
            step[rng.integers(0, n)] += DAY  # a whole day passes now and then
        time_s = t + np.cumsum(step)
        t = float(time_s[-1]) if n else t
        deal = np.where(rng.random(n) < 0.5, rng.integers(0, max(n_deals, 1), n), -1) \
            if n_deals else None
        req = make_requests(time_s, rng.integers(0, n_users, size=n), rng.choice(GRID[:5], size=n),
                            np.where(rng.random(n) < 0.5, rng.choice(GRID, size=n), np.nan),
                            slot=rng.integers(0, n_slots, size=n),
                            u_pace=rng.choice([0.0, 0.25, 0.5, 0.75, 0.3], size=n), deal=deal)
        bids = rng.choice(GRID, size=(n, nc))  # one row per request
        bids[rng.random((n, nc)) < 0.3] = np.nan
        bids[rng.random((n, nc)) < 0.03] = -1.0  # no bid
        bids[rng.random((n, nc)) < 0.03] = -0.0  # a bid of zero
        ticks.append((req, np.ascontiguousarray(bids)))
    if n_users > 1 and rng.random() < 0.3:
        # The last user row is a request without an id (no consent): never capped, its
        # rows (with earlier exposures and touches) never read nor written.
        state = state._replace(users=state.users._replace(no_id_row=n_users - 1))
    # Ring times and touches without a high part when the batch's times fit 32 bits (half
    # the time; a short run's rows, rtb/layout.py), else with one of 1, 2 or 4 bytes.
    caps, users = with_high(state.caps, state.users,
                            random_width(rng, t, state.users.touch_bits))
    state = state._replace(caps=caps, users=users)
    return state, ticks, int(rng.choice([FIRST, SECOND]))


def assert_same_state(a: State, b: State) -> None:
    for part_a, part_b in zip(a, b):
        for name, x, y in zip(part_a._fields, part_a, part_b):
            np.testing.assert_array_equal(x, y, err_msg=f"{type(part_a).__name__}.{name}")


@pytest.mark.parametrize("seed", range(10))
def test_kernel_matches_twin_on_random_batches(seed):
    rng = np.random.default_rng([20261127, seed])
    for _ in range(40):
        state_nb, ticks, mechanism = random_case(rng)
        state_py = state_nb.copy()
        for req, bids in ticks:
            got = run_nb(req, bids, mechanism, state_nb)
            want = run_py(req, bids, mechanism, state_py)
            assert_same_result(got, want)
            assert_same_state(state_nb, state_py)


def test_random_batches_exercise_every_rule():
    """The comparison is worth something only if every outcome and tie actually happens."""
    rng = np.random.default_rng(99)
    outcomes = np.zeros(T.N_OUTCOMES, dtype=np.int64)
    seen = dict(market_wins=0, unsold=0, ties_with_market=0, day_resets=0, deal_wins=0,
                adv_capped=0, floor_hit_sold=0, floor_hit_unsold=0, closed_auction=0,
                replaced_touch=0, rolling_capped=0, wins_without_high_part=0,
                wins_with_high_part=0, high_part_written=0)
    for _ in range(300):
        state, ticks, mechanism = random_case(rng)
        start_day_end = state.book.day_end_s.copy()
        for req, bids in ticks:
            result = run_nb(req, bids, mechanism, state)
            seen["market_wins"] += int((result.winner == T.MARKET).sum())
            seen["unsold"] += int((result.winner == T.UNSOLD).sum())
            seen["deal_wins"] += int(result.deal_won.sum())
            top = np.max(np.where(np.isnan(bids), -1.0, bids), axis=1, initial=-1.0)
            seen["ties_with_market"] += int(((result.winner >= 0) & (top == req.market_cpm)).sum())
            sold = result.winner != T.UNSOLD
            seen["floor_hit_sold"] += int((result.floor_hit & sold).sum())
            seen["floor_hit_unsold"] += int((result.floor_hit & ~sold).sum())
            seen["closed_auction"] += int((~result.open_auction).sum())
            won = result.winner >= 0
            seen["replaced_touch"] += int((result.prior_touch[won] >= 0).sum())
            key = "wins_with_high_part" if high_width(state.users.touch_high) else "wins_without_high_part"
            seen[key] += int(won.sum())
        seen["high_part_written"] += int((state.users.touch_high > 0).any()
                                         and (state.caps.ring_high > 0).any())
        rolling = state.caps.kind == T.CAP_ROLLING
        seen["rolling_capped"] += int(state.book.outcomes[rolling, T.LOSS_FREQUENCY_CAPPED].sum())
        seen["day_resets"] += int((state.book.day_end_s > start_day_end).any())
        seen["adv_capped"] += int((state.caps.adv_counts >= state.caps.adv_limit).any())
        outcomes += state.book.outcomes.sum(axis=0)
    assert (outcomes > 0).all(), dict(zip(T.OUTCOME_NAMES, outcomes))
    assert all(v > 0 for v in seen.values()), seen


# ---- the rules one at a time ------------------------------------------------------

def test_campaign_beats_market_on_equal_bid_and_lowest_index_wins_ties():
    state = make_state(3)
    req = make_requests([0.0, 1.0], [0, 1], [0.5, 0.5], [2.0, NAN])
    result = run_nb(req, as_bids([[2.0, NAN, NAN], [NAN, 3.0, 3.0]]), SECOND, state)
    assert result.winner.tolist() == [0, 1]
    assert result.price_cpm.tolist() == [2.0, 3.0]  # a tie makes the second price the top bid
    assert state.book.outcomes[2, T.LOSS_LOST_TO_BID] == 1


def test_second_price_is_max_of_second_bid_and_floor_first_price_is_bid():
    req = make_requests([0.0, 1.0, 2.0], [0, 0, 0], [1.0, 1.0, 1.0], [NAN, 1.5, 0.5])
    bids = as_bids([[3.0, 2.0], [3.0, NAN], [3.0, NAN]])
    result = run_nb(req, bids, SECOND, make_state(2))
    assert result.winner.tolist() == [0, 0, 0]
    assert result.price_cpm.tolist() == [2.0, 1.5, 1.0]  # a market bid below the floor is none
    assert not result.deal_won.any()
    result = run_nb(req, bids, FIRST, make_state(2))
    assert result.price_cpm.tolist() == [3.0, 3.0, 3.0]


def test_bid_below_floor_loses_and_market_below_floor_leaves_request_unsold():
    state = make_state(1)
    result = run_nb(make_requests([0.0], [0], [2.0], [1.9]), as_bids([[1.99]]), SECOND, state)
    assert result.winner.tolist() == [T.UNSOLD] and result.price_cpm.tolist() == [0.0]
    assert state.book.outcomes[0].tolist() == [1 if k == T.LOSS_BELOW_FLOOR else 0
                                               for k in range(T.N_OUTCOMES)]


def test_nan_bid_counts_nothing():
    state = make_state(2)
    result = run_nb(make_requests([0.0], [0], [0.0], [NAN]), as_bids([[NAN, 1.0]]), SECOND, state)
    assert result.winner.tolist() == [1]
    assert state.book.outcomes[0].sum() == 0


def test_budget_covers_max_cost_of_bid_with_fee_and_data_to_the_micro():
    # Bid 2.0 CPM = 2000 micros, fee 10 % floor-divided = 200, data 5: max cost 2205.
    req, bids = make_requests([0.0], [0], [0.0], [NAN]), as_bids([[2.0]])
    fits = make_state(1, budget=2205, fee_ppm=100_000, data=5)
    result = run_nb(req, bids, SECOND, fits)
    assert result.winner.tolist() == [0] and result.price_cpm.tolist() == [0.0]  # alone, zero floor
    assert fits.book.remaining_total.tolist() == [2205 - 5]  # charged price + fee + data
    short = make_state(1, budget=2204, fee_ppm=100_000, data=5)
    assert run_nb(req, bids, SECOND, short).winner.tolist() == [T.UNSOLD]
    assert short.book.outcomes[0, T.LOSS_OUT_OF_BUDGET] == 1
    daily_short = make_state(1, budget=10**6, daily=2204, fee_ppm=100_000, data=5)
    assert run_nb(req, bids, SECOND, daily_short).winner.tolist() == [T.UNSOLD]


def test_fee_is_floor_divided_on_the_price_paid():
    state = make_state(1, fee_ppm=123_457)
    run_nb(make_requests([0.0], [0], [1.234], [NAN]), as_bids([[5.0]]), SECOND, state)
    assert state.book.media_micros.tolist() == [1234]
    assert state.book.fee_micros.tolist() == [1234 * 123_457 // 1_000_000]


def test_daily_budget_restored_exactly_at_day_end():
    state = make_state(1, budget=10**6, daily=1000, day_end_s=100.0)
    req = make_requests([0.0, 99.999, 100.0, 100.5], [0, 1, 2, 3], [0.0] * 4, [NAN] * 4)
    result = run_nb(req, as_bids([[1.0]] * 4), FIRST, state)
    assert result.winner.tolist() == [0, T.UNSOLD, 0, T.UNSOLD]
    assert state.book.day_end_s.tolist() == [100.0 + DAY]
    assert state.book.remaining_total.tolist() == [10**6 - 2000]


def test_calendar_cap_resets_when_window_ends_for_all_caps_of_that_length():
    # Campaigns 0 and 2 have 10 s calendar caps of 1; campaign 1 has none.
    state = make_state(3, cap_kind=[T.CAP_CALENDAR, T.CAP_NONE, T.CAP_CALENDAR],
                       cap_limit=[1, 0, 1], cap_window_s=[10.0, 1.0, 10.0], window_end_s=10.0)
    req = make_requests([0.0, 1.0, 2.0, 10.0], [0] * 4, [0.0] * 4, [NAN] * 4)
    result = run_nb(req, as_bids([[3.0, 1.0, 2.0]] * 4), SECOND, state)
    # 0 wins and is capped; 2 wins and is capped; 1 wins; at t = 10 a new window: 0 again.
    assert result.winner.tolist() == [0, 2, 1, 0]
    assert state.caps.window_end_s[[0, 2]].tolist() == [20.0, 20.0]
    assert state.book.outcomes[:, T.LOSS_FREQUENCY_CAPPED].tolist() == [2, 0, 1]
    assert state.caps.counts[0].tolist() == [1, 0, 0]


# (start, bytes of the high part): an impression at 0 s is one (ring value 1, not 0 =
# never shown); from 65,536 s on ring times and touches need more than 32 bits, and
# close to 2**31 s (68 years, the latest time a touch can say) 47.
@pytest.mark.parametrize("start, high", [(0.0, 0), (0.0, 1), (100_000.0, 1), (100_000.0, 2),
                                         (2.0**31 - 64, 2), (2.0**31 - 64, 4)])
def test_rolling_cap_allows_again_once_oldest_leaves_window(start, high):
    state = make_state(1, cap_kind=T.CAP_ROLLING, cap_limit=2, cap_window_s=10.0,
                       day_end_s=start + DAY, flight_end_s=math.inf, high=high)
    times = [start + t for t in (0.0, 5.0, 9.999, 10.0, 14.999, 15.0)]
    req = make_requests(times, [0] * 6, [0.0] * 6, [NAN] * 6)
    result = run_nb(req, as_bids([[1.0]] * 6), SECOND, state)
    assert result.winner.tolist() == [0, 0, T.UNSOLD, 0, T.UNSOLD, 0]
    assert result.prior_exposures[result.winner == 0].tolist() == [0, 1, 2, 3]
    assert sorted(ring_times(state.caps, 0)) == [start + 10.0, start + 15.0]
    assert touch_times(row_touches(state.users)[0, 0]) == [start + 15.0]
    assert touch_times(result.prior_touch[[5]]) == [start + 10.0]  # read back whole
    # The values past 32 bits are in the high part.
    if start > 0:
        assert (state.caps.ring_high[0] > 0).all() and state.users.touch_high[0, 0] > 0
    else:
        assert not state.caps.ring_high.any() and not state.users.touch_high.any()


def test_advertiser_cap_is_shared_by_its_campaigns():
    # Campaigns 0 and 1 belong to advertiser 0, capped at 2 per 100 s; campaign 2 to adv 1.
    state = make_state(3, n_adv=2, advertiser=[0, 0, 1], adv_cap_kind=[T.CAP_CALENDAR, T.CAP_NONE],
                       adv_cap_limit=[2, 0], adv_cap_window_s=[100.0, 1.0])
    req = make_requests([0.0, 1.0, 2.0, 100.0], [0] * 4, [0.0] * 4, [NAN] * 4)
    result = run_nb(req, as_bids([[3.0, 2.0, 1.0]] * 4), SECOND, state)
    assert result.winner.tolist() == [0, 0, 2, 0]
    assert state.book.outcomes[:2, T.LOSS_FREQUENCY_CAPPED].tolist() == [1, 1]
    assert state.caps.adv_counts[0].tolist() == [1, 0]  # a new window at t = 100


def test_first_failing_test_is_the_outcome():
    # Campaign 0 out of flight, 1 not targeting the slot, 2 paced out, 3 below the floor,
    # 4 out of budget, 5 capped, 6 targeting the slot but forbidden by brand safety:
    # each reports its own reason, none takes part.
    state = make_state(7, budget=[10**9] * 4 + [100] + [10**9] * 2,
                       flight_start_s=[50.0] + [0.0] * 6,
                       slot_ok=[[True, False, True, True, True, True, False]],
                       slot_blocked=[[False] * 6 + [True]],
                       pace_share=[1.0, 1.0, 0.25, 1.0, 1.0, 1.0, 1.0],
                       cap_kind=[T.CAP_NONE] * 5 + [T.CAP_CALENDAR, T.CAP_NONE], cap_limit=1,
                       cap_window_s=100.0)
    state.caps.counts[0, 5] = 1
    req = make_requests([1.0], [0], [1.0], [NAN], u_pace=[0.5])
    result = run_nb(req, as_bids([[2.0, 2.0, 2.0, 0.5, 2.0, 2.0, 2.0]]), SECOND, state)
    assert result.winner.tolist() == [T.UNSOLD]
    reasons = [T.OUTCOME_NOT_TARGETED, T.OUTCOME_NOT_TARGETED, T.OUTCOME_PACED,
               T.LOSS_BELOW_FLOOR, T.LOSS_OUT_OF_BUDGET, T.LOSS_FREQUENCY_CAPPED,
               T.OUTCOME_BLOCKED]
    expected = np.zeros((7, T.N_OUTCOMES), dtype=np.int64)
    expected[np.arange(7), reasons] = 1
    np.testing.assert_array_equal(state.book.outcomes, expected)
    # Bids came, the paced-out one above the floor: the floor did not act.
    assert result.floor_hit.tolist() == [False] and result.open_auction.tolist() == [True]


def test_blocked_needs_the_rest_of_targeting_and_is_counted_in_the_second_word():
    """A bid on a forbidden (slot, campaign) pair is blocked when the user, the flight
    and a private deal would let the campaign in; otherwise not targeted. Campaign 66
    (second bitset word) is forbidden on slot 0 and targets slot 1; campaign 67 targets
    slot 0 only for users 0 and 1 and starts at 2 s; deal 0 is private and admits 66."""
    nc = 70
    slot_ok = np.ones((2, nc), bool)
    slot_ok[0, [66, 67]] = False
    slot_blocked = ~slot_ok
    user_ok = np.ones((3, nc), bool)
    user_ok[2, 67] = False
    allowed = np.zeros((1, nc), bool)
    allowed[0, 66] = True
    state = make_state(nc, n_users=3, n_slots=2, slot_ok=slot_ok, slot_blocked=slot_blocked,
                       user_ok=user_ok, flight_start_s=[0.0] * 67 + [2.0, 0.0, 0.0],
                       deals=make_deals([0.0], [False], [True], allowed))
    req = make_requests([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], [0, 0, 0, 2, 1, 0],
                        [9.0, 9.0, 9.0, 9.0, 1.0, 1.0], [NAN] * 6,
                        slot=[0, 0, 0, 0, 1, 0], deal=[-1, -1, -1, -1, -1, 0])
    bids = np.full((6, nc), np.nan)
    bids[:, 66] = 5.0
    bids[:, 67] = [NAN, 5.0, 5.0, 5.0, 5.0, 5.0]
    bids[1, 66] = -1.0  # no bid: not counted
    result = run_nb(req, bids, SECOND, state)
    # 66 wins only on slot 1 (request 4); on slot 0 it is blocked, also inside the deal.
    assert result.winner.tolist() == [T.UNSOLD, T.UNSOLD, T.UNSOLD, T.UNSOLD, 66, T.UNSOLD]
    assert state.book.outcomes[66, T.OUTCOME_BLOCKED] == 4
    assert state.book.outcomes[66, T.WON] == 1
    # 67: before its flight (1 s), blocked (2 s), user 2 untargeted (3 s), wins on slot 1
    # but 66 bids as much with a lower index (4 s), not admitted by the private deal (5 s).
    assert state.book.outcomes[67].tolist() == [
        {T.OUTCOME_NOT_TARGETED: 3, T.OUTCOME_BLOCKED: 1, T.LOSS_LOST_TO_BID: 1}.get(k, 0)
        for k in range(T.N_OUTCOMES)]
    # Blocked bids below the floor (9) are not offers the floor turned away.
    assert not result.floor_hit.any()


def test_user_targeting_and_pacing_offset():
    # User 1 is not targeted by campaign 0; campaign 1's offset rotates the pacing uniform.
    state = make_state(2, n_users=2, user_ok=[[True, True], [False, True]],
                       pace_share=[1.0, 0.5], pace_offset=[0.0, 0.6])
    req = make_requests([0.0, 1.0, 2.0], [1, 0, 0], [0.0] * 3, [NAN] * 3, u_pace=[0.1, 0.1, 0.5])
    result = run_nb(req, as_bids([[3.0, 2.0]] * 3), SECOND, state)
    # 0.1 + 0.6 = 0.7 >= 0.5: paced out; 0.5 + 0.6 - 1 = 0.1 < 0.5: bids.
    assert result.winner.tolist() == [T.UNSOLD, 0, 0]
    assert state.book.outcomes[0, T.OUTCOME_NOT_TARGETED] == 1
    assert state.book.outcomes[1, T.OUTCOME_PACED] == 2
    assert state.book.outcomes[1, T.LOSS_LOST_TO_BID] == 1


def test_campaign_beyond_the_first_bitset_word():
    nc = 70
    ok = np.ones((1, nc), bool)
    ok[0, 66] = False
    state = make_state(nc, slot_ok=ok)
    bids = np.full((2, nc), np.nan)
    bids[0, 66], bids[1, 67] = 5.0, 5.0
    result = run_nb(make_requests([0.0, 1.0], [0, 0], [0.0, 0.0], [1.0, 1.0]), bids, SECOND, state)
    assert result.winner.tolist() == [T.MARKET, 67]
    assert state.book.outcomes[66, T.OUTCOME_NOT_TARGETED] == 1


def test_private_deal_admits_only_its_buyers_at_its_floor():
    # Deal 0: private, floor 2, campaigns 1 and 2 admitted. Campaign 0 bids most but is
    # not admitted; campaign 2 is admitted but below the deal floor.
    deals = make_deals([2.0], [False], [True], [[False, True, True]])
    state = make_state(3, deals=deals)
    req = make_requests([0.0, 1.0], [0, 1], [0.5, 0.5], [9.0, 9.0], deal=[0, 0])
    result = run_nb(req, as_bids([[5.0, 3.0, 1.5], [5.0, NAN, 1.5]]), SECOND, state)
    assert result.winner.tolist() == [1, T.UNSOLD]  # the market never sees a private deal
    assert result.price_cpm.tolist() == [2.0, 0.0]  # the deal floor is the reserve
    assert result.deal_won.tolist() == [True, False]
    assert state.book.outcomes[0, T.OUTCOME_NOT_TARGETED] == 2
    assert state.book.outcomes[2, T.LOSS_BELOW_DEAL_FLOOR] == 2


def test_open_deal_first_then_open_auction():
    # Deal 0: open, fixed price 2.5, campaign 0 admitted.
    deals = make_deals([2.5], [True], [False], [[True, False]])
    state = make_state(2, deals=deals)
    req = make_requests([0.0, 1.0], [0, 1], [0.5, 0.5], [4.0, 4.0], deal=[0, 0])
    result = run_nb(req, as_bids([[3.0, 6.0], [2.0, 6.0]]), SECOND, state)
    # Request 0: campaign 0's deal bid wins at the fixed price despite higher bids.
    # Request 1: its bid is below the deal price, so the open auction decides.
    assert result.winner.tolist() == [0, 1]
    assert result.price_cpm.tolist() == [2.5, 4.0]
    assert result.deal_won.tolist() == [True, False]
    assert state.book.outcomes[1, T.LOSS_LOST_TO_BID] == 1


def test_runaway_bid_counts_as_max_bid():
    state = make_state(1, budget=10**18)
    result = run_nb(make_requests([0.0], [0], [0.0], [NAN]), as_bids([[math.inf]]), FIRST, state)
    assert result.price_cpm.tolist() == [T.MAX_BID_CPM]
    assert state.book.media_micros.tolist() == [cpm_micros(T.MAX_BID_CPM)]


def test_reach_exposures_and_last_touch():
    state = make_state(2, n_users=3, n_adv=1, advertiser=[0, 0])
    state.users.exposures[1, 1] = 255
    req = make_requests([1.0, 2.0, 3.0, 4.5], [0, 0, 1, 2], [0.0] * 4, [NAN] * 4)
    bids = as_bids([[2.0, 1.0], [2.0, 1.0], [NAN, 1.0], [1.0, 2.0]])
    result = run_nb(req, bids, SECOND, state)
    assert result.winner.tolist() == [0, 0, 1, 1]
    assert result.prior_exposures.tolist() == [0, 1, 255, 0]
    assert state.book.reach.tolist() == [1, 1]  # user 1 had seen campaign 1 already
    assert state.users.exposures[:, 1].tolist() == [0, 255, 1]
    assert touch_campaigns(row_touches(state.users)[:, 0]) == [0, 1, 1]
    assert touch_times(row_touches(state.users)[:, 0]) == [2.0, 3.0, 4.5]  # the exact time
    # Each win reports the touch it replaced: none, then campaign 0's at 1 s.
    assert touch_times(result.prior_touch) == [-np.inf, 1.0, -np.inf, -np.inf]
    assert touch_campaigns(result.prior_touch) == [-1, 0, -1, -1]


def test_touch_is_per_advertiser_and_keeps_sub_millisecond_times():
    state = make_state(3, n_users=1, n_adv=2, advertiser=[0, 1, 0])
    t1, t2 = 26 / T.CLOCK_UNITS_PER_S, 59 / T.CLOCK_UNITS_PER_S  # 0.4 and 0.9 ms, on the clock
    req = make_requests([t1, t2, 7.25, 8.0], [0] * 4, [0.0] * 4, [NAN, NAN, 9.0, NAN])
    result = run_nb(req, as_bids([[1.0, NAN, NAN], [NAN, 1.0, NAN], [1.0, 1.0, 1.0],
                                  [NAN, NAN, 1.0]]), FIRST, state)
    assert result.winner.tolist() == [0, 1, T.MARKET, 2]  # the market touches nobody
    assert touch_times(result.prior_touch[[0, 1, 3]]) == [-np.inf, -np.inf, t1]
    assert touch_campaigns(result.prior_touch[[0, 1, 3]]) == [-1, -1, 0]
    assert touch_times(row_touches(state.users)) == [8.0, t2]
    assert touch_campaigns(row_touches(state.users)) == [2, 1]


# ---- invariants on the kernel alone --------------------------------------------------

@pytest.mark.parametrize("seed", range(3))
def test_kernel_invariants_floor_price_and_budgets(seed):
    rng = np.random.default_rng([7, seed])
    for _ in range(60):
        state, ticks, mechanism = random_case(rng)
        start_total = state.book.remaining_total.copy()
        for req, bids in ticks:
            result = run_nb(req, bids, mechanism, state)
            winner, price = result.winner, result.price_cpm
            sold = winner != T.UNSOLD
            deal_floor = np.where(req.deal >= 0, state.deals.floor_cpm[np.maximum(req.deal, 0)], np.inf)
            floor = np.where(result.deal_won, deal_floor, req.floor_cpm)
            assert (price[sold] >= floor[sold]).all()
            assert (price[~sold] == 0.0).all()
            camp = np.flatnonzero(winner >= 0)
            bid = bids[camp, winner[camp]]
            assert (price[camp] <= bid).all()
            if mechanism == FIRST:
                fixed = result.deal_won[camp] & state.deals.fixed[np.maximum(req.deal[camp], 0)]
                assert (price[camp][~fixed] == bid[~fixed]).all()
            market = winner == T.MARKET
            assert (price[market] <= req.market_cpm[market]).all()
            assert not (result.floor_hit & ~result.open_auction).any()
            assert (price[result.floor_hit & sold] == req.floor_cpm[result.floor_hit & sold]).all()
            assert not (result.deal_won & (winner < 0)).any()
            assert (state.book.remaining_total >= 0).all()
            assert (state.book.remaining_daily >= 0).all()
        spent = state.book.media_micros + state.book.fee_micros + state.book.data_cost_micros
        np.testing.assert_array_equal(start_total - state.book.remaining_total, spent)


def test_clear_tick_wrapper_clears_like_the_kernel():
    """clear_tick: the kernel on fresh result arrays, whose rows without a campaign win
    say "no earlier touch"; bids of the wrong shape are refused."""
    state = make_state(2)
    set_touch(state.users, 1, 1, 0.0, 1)  # user 1 touched by campaign 1 (advertiser 1)
    twin = state.copy()
    req = make_requests([0.0, 1.0, 2.0], [0, 1, 2], [1.0] * 3, [NAN, 5.0, NAN])
    bids = as_bids([[2.0, 1.5], [2.0, NAN], [0.5, NAN]])
    got = clear_tick(req, bids, SECOND, *state, new_seller_book(1, 2))
    assert_same_result(got, run_nb(req, bids, SECOND, twin))
    assert_same_state(state, twin)
    assert got.winner.tolist() == [0, T.MARKET, T.UNSOLD]
    assert got.prior_touch.tolist() == [-1] * 3
    assert got.floor_hit.tolist() == [False, False, True]
    with pytest.raises(ValueError, match="does not match"):
        clear_tick(req, bids.T, SECOND, *state, new_seller_book(1, 2))


@pytest.mark.parametrize("mechanism", [FIRST, SECOND])
@pytest.mark.parametrize("bid", [math.inf, 1e17])
def test_huge_bid_never_overspends(bid, mechanism):
    """A runaway strategy's bid must not overflow int64 micros and slip past the budget."""
    state = make_state(1, budget=1500)
    result = run_nb(make_requests([0.0], [0], [0.0], [1.0]), as_bids([[bid]]), mechanism, state)
    assert result.winner.tolist() == [T.MARKET]  # it cannot afford its bid
    assert state.book.remaining_total.tolist() == [1500]
    assert state.book.outcomes[0, T.LOSS_OUT_OF_BUDGET] == 1


LARGE_BUDGET_CHILD = """
import sys
sys.path.insert(0, {tests!r})
from test_tick_kernel import SECOND, as_bids, make_requests, make_state, run_nb
state = make_state(1, budget={budget}, daily=2**62, fee_ppm={fee_ppm})
result = run_nb(make_requests([0.0], [0], [0.0], [1.0]), as_bids([[2.0]]), SECOND, state)
print(int(result.winner[0]), int(state.book.remaining_total[0]))
"""


def test_large_budget_clears_without_hanging():
    """A budget the scenario accepts (up to 1e9 units = 1e15 micros) must clear a request.

    Run in a child process: the failure mode is an endless loop, not an exception.
    """
    budget, fee_ppm = 10**15, 155_000  # scenario.MAX_MONEY in micros; a 15.5 % DSP fee
    code = LARGE_BUDGET_CHILD.format(tests=str(Path(__file__).parent), budget=budget,
                                     fee_ppm=fee_ppm)
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("the kernel did not return within 20 s (it takes 2 s when it works)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    winner, remaining = map(int, proc.stdout.split())
    assert winner == 0  # 2.0 CPM beats the market's 1.0
    assert remaining == budget - 1000 - 1000 * fee_ppm // 1_000_000  # pays the second price, 1.0


def test_a_window_too_short_to_advance_time_cannot_hang_the_kernel():
    """Validation refuses such windows; the kernel still ends (it runs without the GIL,
    where Ctrl-C cannot stop it): a 1e-12 s calendar window far from the epoch."""
    code = ("import numpy as np, sys; sys.path.insert(0, 'tests');"
            "import test_tick_kernel as K;"
            "s = K.make_state(1, cap_kind=K.T.CAP_CALENDAR, cap_limit=1, cap_window_s=1e-12,"
            " window_end_s=1e6);"
            "req = K.make_requests([2e6, 3e6], [0, 0], [0.0, 0.0], [float('nan')] * 2);"
            "r = K.run_nb(req, K.as_bids([[1.0], [1.0]]), K.SECOND, s);"
            "print(r.winner.tolist())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[0, 0]"  # each request in a window of its own
