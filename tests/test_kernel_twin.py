"""The tick kernel rtb.kernel.clear_tick_nb against clear_tick_py, a plain-Python twin.

The twin is written from the documented rules (the kernel's, Deals', Targeting's and
the books' docstrings, docs/auction.md), one request and one campaign at a time with
Python scalars, not from the kernel's code:

- requests are cleared in the order given (time order); at each request, first the
  boundaries it reaches: a campaign's daily budget is restored when the time reaches
  its day_end_s (which advances by whole days past the time); a calendar cap's counts
  are cleared when the time reaches its window end, together with every calendar cap
  of the same window length (they share UTC-aligned boundaries), the end advancing by
  whole windows; advertiser caps the same way;
- bids are f8[n, nc], one row per request; a bid (NaN or negative = none, not counted;
  above MAX_BID_CPM counts as MAX_BID_CPM) is a candidate when, in this order (the
  first failing test is its outcome): the campaign targets the request (bit c of word
  c // 64 set in slot_words[slot] & user_words[user], inside the flight, and admitted
  by the deal when the deal is private); a campaign that passes all of that except
  that its bit is in slot_blocked_words[slot] instead of slot_words[slot] (brand
  safety forbids the pair) is `blocked`, any other miss `not_targeted`; pacing lets it
  through (x = u_pace + offset, minus 1 if >= 1; x < pace_share); it meets the floor
  (a deal bid, by an admitted campaign at or above the deal floor, needs no other
  floor; on a private deal nothing else counts: below_deal_floor);
- candidates are walked best first: deal bids (by bid, lower index first), then, if no
  deal bid may win and the deal is not private, the open auction with the market (if
  its bid meets the floor; campaigns before the market on equal bids). A campaign may
  win if it can pay the bid's worst cost (bid micros rounded half up + DSP fee (floor
  division, ppm) + data micros) from both its remaining total and daily budget
  (else out_of_budget) and neither its own cap nor its advertiser's cap is reached
  (calendar: count >= limit; rolling: the oldest of the last `limit` times is > t -
  window; else frequency_capped); the market always may. Passed-over candidates keep
  that reason; the first that may win wins;
- prices: fixed-price deal: the deal price; first price: the bid; second price: max(the
  next entry below the winner that may win, the deal floor or floor);
- the other candidates end lost_to_market (the market won) or lost_to_higher_bid; the
  winner pays media + fee + data from both budgets, counts against its caps, its user's
  exposure (saturating at 255) and reach; its advertiser's touch of the user becomes
  (the request's time, the campaign), and the result keeps the touch it replaced;
- a request's targeting is its target_row of the targeting tables; at its publisher,
  each campaign with a bid (>= 0) whose bit is in slot_hidden_words[row] &
  user_words[user] (its domain targeting hidden by anonymity), in flight and admitted
  by a private deal, counts a hidden bid; each win counts, with its media micros;
- with a bid book: at the request's publisher, every bid that pacing let through (its
  outcome past `paced`) counts and adds its bid (capped at MAX_BID_CPM) to the
  (publisher, campaign) sum, in request order from 0 within the tick, the tick's sum
  then added to the book's; and counts in its bin at (publisher, the campaign's
  advertiser): the bid's float64 bits (0 below 0, capped at MAX_BID_CPM) >> 45, minus
  the bits of 2**-20 >> 45, plus 1, at least 0;
- a request whose user is a no-id row (user >= users.no_id_row: no consent) is never
  capped, and its win touches no per-user row: reach + 1, prior exposures 0, prior
  touch none (-1);
- the per-user books (cap counters and rings, exposures, touches) are read and written
  at the request's user_row (its id's row, handed out as ids first appear), the
  targeting bitsets at its user; a new calendar window clears the counters of the rows
  in use only (rows_in_use[0]: the others are zero in a run); ring times (clock units
  + 1, 0 = never shown) and touches (((clock units + 1) << touch_bits) | the campaign's
  rank among its advertiser's, 0 = none) are split in a u4 low part and a high part of
  0, 1, 2 or 4 bytes (tests/touch_book.py);
- open_auction: the request carries no private deal and was not sold through its deal;
  floor_hit: open_auction and either, in second price, sold (to a campaign or the
  market) at exactly the floor, or unsold while the highest of the market's bid and
  the bids (>= 0) of campaigns targeting the request (targeting bit, flight; whatever
  pacing, budgets or caps then did) is >= 0 and below the floor.

Random small markets (user rows in a random order, books with and without a high
part) must give identical results (every field; prior_* on campaign wins) and every
state array: 2,600 from seeded numpy loops (each failure names its
seed), and 400 more drawn by hypothesis through the same generator (a failure shrinks
to a small market). Invariants are checked on the kernel's output directly, and
hand-worked cases pin single rules.
"""

from __future__ import annotations

import json
import math
import select
import subprocess
import sys
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtb import types as T
from rtb.books import (BidBook, CampaignBook, CapBook, Deals, SellerBook, Targeting, TickResult,
                       UserBook, campaign_words, new_bid_book, new_seller_book, no_deals)
from rtb.kernel import clear_tick_nb
from rtb.types import RequestBatch
from touch_book import (book_value, high_width, pack_touch, random_width, rank_tables, ring_time,
                        ring_times, row_touches, set_ring_time, set_touch, set_touch_value,
                        split_columns, touch_campaigns, touch_times, touch_value, wide_value,
                        with_high)

DAY = T.SECONDS_PER_DAY
FIRST, SECOND = T.MECHANISM_FIRST, T.MECHANISM_SECOND
NAN, INF = math.nan, math.inf

NO_LIMIT = 2**62  # a daily budget that never binds (dsp.campaigns.NO_LIMIT_MICROS)


# ---- the twin ---------------------------------------------------------------------

def _micros(cpm: float) -> int:
    """One impression at `cpm`, rounded half up: the project's convention."""
    return int(T.cpm_to_micros(cpm))


def _cost(cpm: float, fee_ppm: int, data_micros: int) -> tuple[int, int, int]:
    media = _micros(cpm)
    return media, media * fee_ppm // T.PPM, data_micros


def _expire_windows_py(t, kind, window_s, window_end_s, counts, column, rows_in_use):
    """Calendar windows the time has reached: clear them, with their whole window length,
    in the rows in use."""
    for c in range(kind.size):
        if kind[c] != T.CAP_CALENDAR or t < window_end_s[c]:
            continue
        end = float(window_end_s[c])
        while t >= end:
            end += float(window_s[c])
        same = (kind == T.CAP_CALENDAR) & (window_s == window_s[c])
        counts[:rows_in_use, column[same]] = 0
        window_end_s[same] = end


def _cross_boundaries_py(t, book, caps):
    for c in range(book.day_end_s.size):
        if t >= book.day_end_s[c]:
            book.remaining_daily[c] = book.daily_budget[c]
            while t >= book.day_end_s[c]:
                book.day_end_s[c] += DAY
    in_use = int(caps.rows_in_use[0])
    _expire_windows_py(t, caps.kind, caps.window_s, caps.window_end_s, caps.counts, caps.cal_col,
                       in_use)
    _expire_windows_py(t, caps.adv_kind, caps.adv_window_s, caps.adv_window_end_s,
                       caps.adv_counts, caps.adv_col, in_use)


def _bit(words, row, c) -> bool:
    """Campaign c's bit in a row of campaign bitsets (bit c of word c // 64)."""
    word, bit = divmod(c, 64)
    return bool((int(words[row, word]) >> bit) & 1)


def _bid_bin(b: float) -> int:
    """The bid's bin (rtb.books.BidBook.bins), from its float64 bits."""
    bits = int(np.array(b, np.float64).view(np.int64)) if b > 0.0 else 0
    bits = min(bits, int(np.array(T.MAX_BID_CPM).view(np.int64)))
    base = int(np.array(2.0**-20).view(np.int64)) >> 45
    return max((bits >> 45) - base + 1, 0)


def _targets(targeting, c, s, u) -> bool:
    return _bit(targeting.slot_words, s, c) and _bit(targeting.user_words, u, c)


def _in_flight(targeting, c, t) -> bool:
    return bool(targeting.flight_start_s[c] <= t < targeting.flight_end_s[c])


def _ring(caps, c) -> list[int]:
    first = int(caps.ring_start[c])
    return list(range(first, first + int(caps.limit[c])))


def _capped(caps, book, c, r, t) -> bool:
    """Is campaign c capped at t in the user's row r?"""
    # A calendar cap's counter, or (a cap whose window never ends in the run, rtb/layout.py)
    # the exposures column cal_col points at: limit calendar_limit (256 where none).
    if caps.counts[r, caps.cal_col[c]] >= caps.calendar_limit[c]:
        return True
    if caps.kind[c] == T.CAP_ROLLING:
        # Capped when the last `limit` impressions all fall inside (t - window, t].
        if min(ring_time(caps, r, k) for k in _ring(caps, c)) > t - caps.window_s[c]:
            return True
    a = book.advertiser[c]
    return bool(caps.adv_kind[a] == T.CAP_CALENDAR
                and caps.adv_counts[r, caps.adv_col[a]] >= caps.adv_limit[a])


def _pre_auction_failure(c, b, i, req, targeting, deal):
    """The outcome of a bid that fails targeting, pacing or its floor; None for a candidate."""
    t, u, s = float(req.time_s[i]), int(req.user[i]), int(req.target_row[i])
    d, private, deal_floor, allowed = deal
    # Everything but the slot's part of targeting: the user, the flight, a private deal.
    reachable = (_bit(targeting.user_words, u, c) and _in_flight(targeting, c, t)
                 and (allowed[c] or not private))
    if not (reachable and _bit(targeting.slot_words, s, c)):
        # Targeted but for brand safety, which forbids this (slot, campaign) pair?
        if reachable and _bit(targeting.slot_blocked_words, s, c):
            return T.OUTCOME_BLOCKED
        return T.OUTCOME_NOT_TARGETED
    x = float(req.u_pace[i]) + float(targeting.pace_offset[c])
    if x >= 1.0:
        x -= 1.0
    if not x < targeting.pace_share[c]:
        return T.OUTCOME_PACED
    deal_bid = allowed[c] and b >= deal_floor
    if not deal_bid:
        if private:
            return T.LOSS_BELOW_DEAL_FLOOR
        if b < req.floor_cpm[i]:
            return T.LOSS_BELOW_FLOOR
    return None


def _cannot_win(c, b, i, req, book, caps, users):
    """Why a candidate may not win (out of budget, then capped), or None if it may."""
    t, u, r = float(req.time_s[i]), int(req.user[i]), int(req.user_row[i])
    cost = sum(_cost(b, int(book.dsp_fee_ppm[c]), int(book.data_micros[c])))
    if cost > book.remaining_total[c] or cost > book.remaining_daily[c]:
        return T.LOSS_OUT_OF_BUDGET
    if u < users.no_id_row and _capped(caps, book, c, r, t):
        return T.LOSS_FREQUENCY_CAPPED
    return None


MARKET_ENTRY = -1  # the market's place in a ranking of (bid, campaign) entries


def _walk(ranked, may_win):
    """Walk (bid, campaign) entries best first: (index of the winner or None, reasons of
    those passed over above it, the entry that sets a second price after it or None)."""
    reasons = {}
    for k, (b, c) in enumerate(ranked):
        why = None if c == MARKET_ENTRY else may_win(c, b)
        if why is not None:
            reasons[c] = why
            continue
        after = next(((b2, c2) for b2, c2 in ranked[k + 1:]
                      if c2 == MARKET_ENTRY or may_win(c2, b2) is None), None)
        return k, reasons, after
    return None, reasons, None


def _clear_open(tier, market, floor, mechanism, may_win):
    """(winner, price, reasons) of the open auction among (campaign, bid) pairs and the market."""
    # Rank by bid, then campaigns above the market, then the lower campaign index.
    entrants = sorted([(b, 1, -c) for c, b in tier]
                      + ([(market, 0, 0)] if market >= floor else []), reverse=True)
    ranked = [(b, -minus_c if is_campaign else MARKET_ENTRY) for b, is_campaign, minus_c in entrants]
    k, reasons, after = _walk(ranked, may_win)
    if k is None:
        return T.UNSOLD, 0.0, reasons
    best, c = ranked[k]
    winner = T.MARKET if c == MARKET_ENTRY else c
    if mechanism == FIRST:
        return winner, best, reasons
    return winner, max(after[0], floor) if after else floor, reasons


def _clear_deal(tier, deal_floor, fixed, mechanism, may_win):
    """(winner, price, reasons) among deal bids; winner None if none may win."""
    ranked = [(b, c) for c, b in sorted(tier, key=lambda cb: (-cb[1], cb[0]))]
    k, reasons, after = _walk(ranked, may_win)
    if k is None:
        return None, 0.0, reasons
    best, winner = ranked[k]
    if fixed:
        return winner, deal_floor, reasons
    if mechanism == FIRST:
        return winner, best, reasons
    return winner, max(after[0], deal_floor) if after else deal_floor, reasons


def _settle(c, price, i, t, u, r, book, caps, users, result):
    """Charge campaign c's win of request i (user u, whose row is r) and record it."""
    media, fee, data = _cost(price, int(book.dsp_fee_ppm[c]), int(book.data_micros[c]))
    book.remaining_total[c] -= media + fee + data
    book.remaining_daily[c] -= media + fee + data
    book.media_micros[c] += media
    book.fee_micros[c] += fee
    book.data_cost_micros[c] += data
    if u >= users.no_id_row:  # no id: nothing to count against, nothing to remember
        result.prior_exposures[i] = 0
        book.reach[c] += 1
        result.prior_touch[i] = -1
        return
    if caps.kind[c] == T.CAP_CALENDAR:
        caps.counts[r, caps.cal_col[c]] += 1
    elif caps.kind[c] == T.CAP_ROLLING:
        ring = _ring(caps, c)
        oldest = min(ring, key=lambda k: (ring_time(caps, r, k), k))  # the first of equal times
        set_ring_time(caps, r, oldest, t)
    a = int(book.advertiser[c])
    if caps.adv_kind[a] == T.CAP_CALENDAR:
        caps.adv_counts[r, caps.adv_col[a]] += 1
    seen = int(users.exposures[r, c])
    result.prior_exposures[i] = seen
    book.reach[c] += seen == 0
    users.exposures[r, c] = min(seen + 1, 255)
    # The advertiser's last touch of the user: this impression, at its exact time.
    result.prior_touch[i] = wide_value(users, touch_value(users, r, a), a)
    set_touch_value(users, r, a, book_value(users, t, c))


def _floor_hit(mechanism, winner, price, floor, offered) -> bool:
    """Did the open-auction floor act on a request in the open auction? `offered`: the
    market's bid and the targeting campaigns' bids, whatever became of them."""
    if winner != T.UNSOLD:
        return mechanism == SECOND and price == floor  # nothing above the floor set the price
    return bool(offered) and max(offered) < floor  # bids came, all below the floor


def clear_tick_py(req, bids, mechanism, targeting, deals, book, caps, users, sellers, bid_book,
                  result):
    """The kernel's rules, written out plainly; updates the same arrays in place."""
    n, nc = bids.shape
    tick_sums = {}  # (publisher, campaign): this tick's sum of the bids paced in
    for i in range(n):
        t, u, s = float(req.time_s[i]), int(req.user[i]), int(req.target_row[i])
        p = int(req.publisher[i])
        _cross_boundaries_py(t, book, caps)
        d = int(req.deal[i])
        if d >= 0:
            deal = (d, bool(deals.private[d]), float(deals.floor_cpm[d]), deals.allowed[d])
        else:
            deal = (d, False, INF, np.zeros(nc, bool))
        _, private, deal_floor, allowed = deal
        market, floor = float(req.market_cpm[i]), float(req.floor_cpm[i])
        deal_tier, open_tier = [], []
        offered = [market] if market >= 0.0 else []  # for floor_hit; NaN: no market bid
        for c in range(nc):
            b = float(bids[i, c])
            if not b >= 0.0:  # NaN or negative: no bid
                continue
            if _targets(targeting, c, s, u) and _in_flight(targeting, c, t):
                offered.append(b)
            if (_bit(targeting.slot_hidden_words, s, c) and _bit(targeting.user_words, u, c)
                    and _in_flight(targeting, c, t) and (allowed[c] or not private)):
                sellers.hidden_bids[p, c] += 1
            b = min(b, T.MAX_BID_CPM)
            outcome = _pre_auction_failure(c, b, i, req, targeting, deal)
            paced_in = outcome not in (T.OUTCOME_NOT_TARGETED, T.OUTCOME_BLOCKED, T.OUTCOME_PACED)
            if bid_book is not None and paced_in:
                bid_book.bids[p, c] += 1
                tick_sums[p, c] = tick_sums.get((p, c), 0.0) + b
                n_adv = bid_book.bins.shape[0] // bid_book.bids.shape[0]
                bid_book.bins[p * n_adv + int(book.advertiser[c]), _bid_bin(b)] += 1
            if outcome is not None:
                book.outcomes[c, outcome] += 1
            elif allowed[c] and b >= deal_floor:
                deal_tier.append((c, b))
            else:
                open_tier.append((c, b))

        def may_win(c, b):
            return _cannot_win(c, b, i, req, book, caps, users)

        # Candidates ranked above the winner that may not win get their reason; the
        # rest lost (to the market if it won).
        winner, price, reasons = None, 0.0, {}
        if deal_tier:
            winner, price, reasons = _clear_deal(deal_tier, deal_floor, bool(deals.fixed[d]),
                                                 mechanism, may_win)
        result.deal_won[i] = winner is not None
        if winner is None:
            if private:
                winner, price = T.UNSOLD, 0.0
            else:
                winner, price, open_reasons = _clear_open(open_tier, market, floor, mechanism,
                                                          may_win)
                reasons.update(open_reasons)
        result.winner[i], result.price_cpm[i] = winner, price
        result.open_auction[i] = in_open = not private and not result.deal_won[i]
        result.floor_hit[i] = in_open and _floor_hit(mechanism, winner, price, floor, offered)
        loss = T.LOSS_LOST_TO_MARKET if winner == T.MARKET else T.LOSS_LOST_TO_BID
        for c, _ in deal_tier + open_tier:
            book.outcomes[c, reasons.get(c, T.WON if c == winner else loss)] += 1
        if winner >= 0:
            _settle(winner, price, i, t, u, int(req.user_row[i]), book, caps, users, result)
            sellers.wins[p, winner] += 1
            sellers.media_micros[p, winner] += _micros(price)
    for (p, c), total in tick_sums.items():
        bid_book.bid_sum_cpm[p, c] += total


# ---- building inputs --------------------------------------------------------------

class Market(NamedTuple):
    """Everything a kernel call needs except the requests and bids."""

    targeting: Targeting
    deals: Deals
    book: CampaignBook
    caps: CapBook
    users: UserBook
    sellers: SellerBook
    bid_book: BidBook | None

    def copy(self) -> "Market":
        return Market(*(None if part is None
                        else type(part)(*(a.copy() if isinstance(a, np.ndarray) else a for a in part))
                        for part in self))


def _col(value, nc, dtype):
    return np.broadcast_to(np.asarray(value, dtype=dtype), (nc,)).copy()


def make_targeting(nc, *, slot_ok=None, slot_blocked=None, slot_hidden=None, user_ok=None,
                   n_slots=1, n_users=1, flight_start_s=0.0, flight_end_s=INF, pace_share=1.0,
                   pace_offset=0.0) -> Targeting:
    """slot_blocked: (row, campaign) pairs the campaign targets but brand safety forbids;
    as in the simulation, they are not in slot_ok. slot_hidden: pairs whose domain
    targeting the row's anonymity hides (not in slot_ok either)."""
    slot_ok = np.ones((n_slots, nc), bool) if slot_ok is None else np.asarray(slot_ok, bool)
    blocked = np.zeros_like(slot_ok) if slot_blocked is None else np.asarray(slot_blocked, bool)
    hidden = np.zeros_like(slot_ok) if slot_hidden is None else np.asarray(slot_hidden, bool)
    assert not (slot_ok & blocked).any(), "a blocked pair is not targeted"
    assert not (slot_ok & hidden).any(), "a hidden pair is not targeted"
    user_ok = np.ones((n_users, nc), bool) if user_ok is None else np.asarray(user_ok, bool)
    return Targeting(campaign_words(slot_ok), campaign_words(blocked), campaign_words(hidden),
                     campaign_words(user_ok),
                     _col(flight_start_s, nc, np.float64), _col(flight_end_s, nc, np.float64),
                     _col(pace_share, nc, np.float64), _col(pace_offset, nc, np.float64))


def make_deals(floor_cpm, fixed, private, allowed) -> Deals:
    allowed = np.atleast_2d(np.asarray(allowed, bool))
    nd = allowed.shape[0]
    return Deals(_col(floor_cpm, nd, np.float64), _col(fixed, nd, np.bool_),
                 _col(private, nd, np.bool_), allowed.copy())


def make_book(nc, *, advertiser=0, fee_ppm=0, data_micros=0, total=10**12, daily=NO_LIMIT,
              remaining_daily=None, day_end_s=DAY) -> CampaignBook:
    daily = _col(daily, nc, np.int64)
    return CampaignBook(
        advertiser=_col(advertiser, nc, np.int32), dsp_fee_ppm=_col(fee_ppm, nc, np.int64),
        data_micros=_col(data_micros, nc, np.int64), remaining_total=_col(total, nc, np.int64),
        remaining_daily=daily.copy() if remaining_daily is None else _col(remaining_daily, nc, np.int64),
        daily_budget=daily, day_end_s=_col(day_end_s, nc, np.float64),
        media_micros=np.zeros(nc, np.int64), fee_micros=np.zeros(nc, np.int64),
        data_cost_micros=np.zeros(nc, np.int64), outcomes=np.zeros((nc, T.N_OUTCOMES), np.int64),
        reach=np.zeros(nc, np.int64))


def make_caps(nc, n_rows, *, kind=T.CAP_NONE, limit=1, window_s=DAY, window_end_s=None,
              n_adv=1, adv_kind=T.CAP_NONE, adv_limit=1, adv_window_s=DAY,
              adv_window_end_s=None, compact=False, high=1, rows_in_use=None) -> CapBook:
    """Caps laid out as rtb/state.py builds them; window ends default to the first window.
    compact: counters only for calendar caps and capped advertisers (rtb/layout.py; at
    least one column), else one per campaign and advertiser (cal_col, adv_col the identity).
    Rings never shown (0), with a high part of `high` bytes; every row in use unless
    rows_in_use says fewer."""
    kind = _col(kind, nc, np.int8)
    limit = _col(limit, nc, np.int32)
    window_s = _col(window_s, nc, np.float64)
    calendar = kind == T.CAP_CALENDAR
    ends = window_s if window_end_s is None else _col(window_end_s, nc, np.float64)
    rolling = np.flatnonzero(kind == T.CAP_ROLLING).astype(np.int32)
    bounds = np.concatenate([[0], np.cumsum(limit[rolling])]).astype(np.int32)
    ring_start = np.zeros(nc, np.int32)
    ring_start[rolling] = bounds[:-1]
    adv_kind = _col(adv_kind, n_adv, np.int8)
    adv_on = adv_kind == T.CAP_CALENDAR
    adv_window_s = _col(adv_window_s, n_adv, np.float64)
    adv_ends = adv_window_s if adv_window_end_s is None else _col(adv_window_end_s, n_adv, np.float64)
    cal_col, adv_col = np.arange(nc, dtype=np.int32), np.arange(n_adv, dtype=np.int32)
    if compact:
        cal_col, adv_col = np.zeros(nc, np.int32), np.zeros(n_adv, np.int32)
        cal_col[calendar] = np.arange(int(calendar.sum()))
        adv_col[adv_on] = np.arange(int(adv_on.sum()))
    ring_low, ring_high = split_columns(n_rows, int(bounds[-1]), high)
    return CapBook(
        kind=kind, limit=limit, window_s=window_s,
        calendar_limit=np.where(calendar, limit, 256).astype(np.int32),
        window_end_s=np.where(calendar, ends, INF), ring_start=ring_start,
        counts=np.zeros((n_rows, max(1, int(calendar.sum())) if compact else nc), np.uint8),
        ring_low=ring_low, ring_high=ring_high,
        adv_kind=adv_kind, adv_limit=np.where(adv_on, _col(adv_limit, n_adv, np.int32), 256).astype(np.int32),
        adv_window_s=adv_window_s, adv_window_end_s=np.where(adv_on, adv_ends, INF),
        adv_counts=np.zeros((n_rows, max(1, int(adv_on.sum())) if compact else n_adv), np.uint8),
        cal_col=cal_col, adv_col=adv_col,
        rows_in_use=np.array([n_rows if rows_in_use is None else rows_in_use], np.int64))


def make_users(nc, n_rows, n_adv=1, advertiser=0, *, high=1, row_of=None,
                rows_in_use=None) -> UserBook:
    """No exposures, no touches yet (0), touches with a high part of `high` bytes.
    advertiser: each campaign's (the ranks of the touch book). row_of: each user's row,
    the identity (user u's row is u) unless given; rows_in_use: every row unless given."""
    bits, rank, campaign = rank_tables(_col(advertiser, nc, np.int32).tolist(), n_adv)
    touch_low, touch_high = split_columns(n_rows, n_adv, high)
    return UserBook(np.zeros((n_rows, nc), np.uint8), touch_low, touch_high,
                    np.arange(n_rows, dtype=np.int32) if row_of is None else row_of,
                    np.array([n_rows if rows_in_use is None else rows_in_use], np.int64),
                    touch_bits=bits, touch_rank=rank, touch_campaign=campaign)


def make_requests(time_s, *, user=0, slot=0, floor_cpm=0.0, market_cpm=NAN, u_pace=0.0,
                  deal=-1, target_row=None, publisher=0, user_row=None) -> RequestBatch:
    """A RequestBatch; the fields the kernel does not read are typed placeholders.
    target_row: the slot's, unless given; user_row: the user (make_users' identity rows),
    unless given."""
    time_s = T.on_clock(time_s)  # a run's times are on the clock
    n = time_s.size
    return RequestBatch(
        time_s=time_s.copy(), slot=_col(slot, n, np.int64),
        target_row=_col(slot if target_row is None else target_row, n, np.int64),
        publisher=_col(publisher, n, np.int32),
        format=np.zeros(n, np.uint8), deal=_col(deal, n, np.int32),
        market_cpm=_col(market_cpm, n, np.float64), floor_cpm=_col(floor_cpm, n, np.float64),
        user=_col(user, n, np.int64),
        user_row=_col(user if user_row is None else user_row, n, np.int32),
        device_user=_col(user, n, np.int64),
        person=_col(user, n, np.int64), geo=np.zeros(n, np.uint8), user_ctr=np.ones(n, np.float32),
        user_segments=np.zeros(n, np.uint64), u_pace=_col(u_pace, n, np.float64),
        u_click=np.zeros(n), u_convert=np.zeros(n), u_delay=np.zeros(n))


def make_market(nc, n_users=1, n_adv=1, *, deals=None, targeting=None, book=None,
                caps=None, n_pub=1, bid_book=False, high=1) -> Market:
    """User u's row is u; ring times and touches with a high part of `high` bytes."""
    book = book or make_book(nc)
    return Market(targeting or make_targeting(nc, n_users=n_users), deals or no_deals(nc),
                  book, caps or make_caps(nc, n_users, n_adv=n_adv, high=high),
                  make_users(nc, n_users, n_adv, book.advertiser, high=high),
                  new_seller_book(n_pub, nc), new_bid_book(n_pub, nc, n_adv) if bid_book else None)


def empty_result(n) -> TickResult:
    """Sentinels: winner, price and the flags must be written for every request (prior_*
    only on campaign wins, and only those rows are compared)."""
    return TickResult(np.full(n, 99, np.int32), np.full(n, -7.0), np.full(n, 77, np.uint8),
                      np.ones(n, np.bool_), np.ones(n, np.bool_), np.ones(n, np.bool_),
                      np.full(n, 99, np.int64), np.full(n, -5, np.int32), np.full(n, -3, np.int64))


def run_kernel(req, bids, m: Market, mechanism=SECOND) -> TickResult:
    """bids f8[n, nc], one row per request, as the kernel takes them."""
    result = empty_result(req.time_s.size)
    clear_tick_nb(req, np.ascontiguousarray(bids, np.float64), mechanism, m.targeting, m.deals,
                  m.book, m.caps, m.users, m.sellers, m.bid_book, result)
    return result


def run_twin(req, bids, m: Market, mechanism=SECOND) -> TickResult:
    result = empty_result(req.time_s.size)
    clear_tick_py(req, np.asarray(bids, np.float64), mechanism, m.targeting, m.deals, m.book,
                  m.caps, m.users, m.sellers, m.bid_book, result)
    return result


# ---- random small markets ---------------------------------------------------------

CALENDAR_WINDOWS = (60.0, 120.0, 300.0, 3_600.0, DAY)  # each divides a day: UTC-aligned
# The last skips whole days and windows; 0.3337 s puts times off the millisecond grid.
STEPS = (0.5, 1.0, 5.0, 60.0, 7_200.0, 50_000.0, 0.3337)


def _first_window_end(midnight_s: float, window_s: float) -> float:
    """End of the first UTC-aligned window when the first UTC midnight is at midnight_s."""
    return window_s - ((DAY - midnight_s) % window_s)


class Case(NamedTuple):
    mechanism: int
    market: Market
    ticks: list  # [(RequestBatch, bids f8[n, nc])], consecutive, sharing the state


def random_case(rng: np.random.Generator) -> Case:
    """A small market built to hit every rule: see the comments for what each knob aims at."""
    big = rng.random() < 0.12  # > 64 campaigns: two or three bitset words
    nc = int(rng.integers(65, 141) if big else rng.integers(1, 9))
    n_users = int(rng.integers(1, 7))  # few users: repeats, so caps bind inside a batch
    n_slots = int(rng.integers(1, 4))
    n_rows = n_slots + int(rng.integers(0, 3))  # the slots' rows, then anonymous rows
    n_pub = int(rng.integers(1, 4))
    n_adv = int(rng.integers(1, min(nc, 3) + 1))
    n_per_tick = [int(rng.integers(1, 16 if big else 41)) for _ in range(int(rng.integers(1, 3)))]
    n_steps = max(n_per_tick)
    step = float(rng.choice(STEPS))
    # The batch starts at `origin`, 5 steps in: rolling caps remember impressions up to
    # 5 steps before it, from 0 s on (a ring time is never before the run's start).
    origin = 5 * step
    # The first UTC midnight on the time grid and usually inside the batch (exact hits).
    midnight = min(step * float(rng.integers(1, n_steps + 2)), DAY)
    # Users get rows in a random order (as ids do when they first appear in a run), from
    # row 1; row 0 is the row of requests without an id. Spare rows past the rows in use
    # are never handed out (nor cleared).
    n_spare = int(rng.integers(0, 3))
    n_user_rows = n_users + 1 + n_spare
    row_of = (1 + np.argsort(rng.random(n_users))).astype(np.int32)

    # Targeting, flights and pacing.
    density = rng.choice([0.5, 0.9, 1.0])
    slot_targeted = rng.random((n_rows, nc)) < density
    # Brand safety forbids some targeted (slot, campaign) pairs: those bids are `blocked`.
    unsafe = rng.random((n_rows, nc)) < rng.choice([0.0, 0.15, 0.5])
    slot_ok, slot_blocked = slot_targeted & ~unsafe, slot_targeted & unsafe
    # Anonymity hides some campaigns' domain targeting on some rows.
    slot_hidden = ~slot_ok & (rng.random((n_rows, nc)) < rng.choice([0.0, 0.3]))
    user_ok = rng.random((n_users, nc)) < density
    flight_start = np.where(rng.random(nc) < 0.3, origin + step * rng.integers(0, n_steps + 1, nc),
                            0.0)
    flight_end = np.where(rng.random(nc) < 0.3,
                          origin + step * rng.integers(1, 2 * n_steps + 1, nc), INF)
    grid_pacing = rng.random() < 0.5  # quarters: x lands exactly on 1.0 and on pace_share
    pace_share = np.where(rng.random(nc) < 0.4, rng.choice([0.0, 0.25, 0.5, 0.75], nc), 1.0)
    pace_offset = rng.integers(0, 4, nc) / 4 if grid_pacing else rng.random(nc)
    targeting = make_targeting(nc, slot_ok=slot_ok, slot_blocked=slot_blocked,
                               slot_hidden=slot_hidden, user_ok=user_ok,
                               flight_start_s=flight_start,
                               flight_end_s=flight_end, pace_share=pace_share,
                               pace_offset=pace_offset)

    # Deals of every kind.
    nd = int(rng.integers(0, 4))
    if nd:
        deals = make_deals(rng.integers(0, 6, nd) * rng.choice([0.5, 1.0]), rng.random(nd) < 0.4,
                           rng.random(nd) < 0.5, rng.random((nd, nc)) < rng.choice([0.3, 0.7]))
    else:
        deals = no_deals(nc)

    # Budgets: tight (a few impressions), ample, or on the edge: within a micro of the
    # worst cost of a bid near `edge_micros` (bids then sit on half micros, see below).
    bid_mode = rng.choice(["grid", "continuous", "edge"], p=[0.55, 0.25, 0.2])
    budget_mode = "edge" if bid_mode == "edge" else rng.choice(["tight", "ample"], p=[0.6, 0.4])
    fee_ppm = rng.choice([0, 100_000, 150_000, 333_333, 999_999], nc)
    data_micros = rng.choice([0, 0, 50, 333], nc)
    edge_micros = rng.integers(0, 6_000, nc)

    def budgets():
        if budget_mode == "edge":
            worst = edge_micros + edge_micros * fee_ppm // T.PPM + data_micros
            return worst + rng.integers(-1, 2, nc)
        return rng.integers(0, 25_000, nc) if budget_mode == "tight" else np.full(nc, 10**10)

    has_daily = rng.random(nc) < 0.6
    daily = np.where(has_daily, np.maximum(budgets(), 0) // 2, NO_LIMIT)
    remaining_daily = np.where(has_daily, np.maximum(budgets(), 0), NO_LIMIT)
    book = make_book(nc, advertiser=rng.integers(0, n_adv, nc), fee_ppm=fee_ppm,
                     data_micros=data_micros, total=np.maximum(budgets(), 0), daily=daily,
                     remaining_daily=remaining_daily, day_end_s=origin + midnight)
    book.outcomes[:] = rng.integers(0, 3, book.outcomes.shape)  # counters only ever add

    # Caps: campaign calendar and rolling caps, advertiser calendar caps.
    kind = rng.choice([T.CAP_NONE, T.CAP_CALENDAR, T.CAP_ROLLING], nc)
    limit = rng.integers(1, 4, nc)
    window = np.where(kind == T.CAP_CALENDAR, rng.choice(CALENDAR_WINDOWS, nc),
                      step * rng.integers(1, 8, nc))
    ends = [origin + _first_window_end(midnight, w) for w in window]
    adv_kind = np.where(rng.random(n_adv) < 0.5, T.CAP_CALENDAR, T.CAP_NONE)
    adv_window = rng.choice(CALENDAR_WINDOWS, n_adv)
    # With a 4-byte high part while the state is drawn; the run's own is chosen below.
    caps = make_caps(nc, n_user_rows, kind=kind, limit=limit, window_s=window, window_end_s=ends,
                     n_adv=n_adv, adv_kind=adv_kind, adv_limit=rng.integers(1, 5, n_adv),
                     adv_window_s=adv_window,
                     adv_window_end_s=[origin + _first_window_end(midnight, w) for w in adv_window],
                     compact=rng.random() < 0.5, high=4, rows_in_use=n_users + 1)
    # Every row holds something, the rows no request of an id reaches too: what the
    # kernel must neither read nor write there shows.
    calendar = kind == T.CAP_CALENDAR
    caps.counts[:, caps.cal_col[calendar]] = rng.integers(0, limit[calendar] + 1,
                                                          (n_user_rows, int(calendar.sum())))
    adv_on = caps.adv_kind == T.CAP_CALENDAR
    caps.adv_counts[:, caps.adv_col[adv_on]] = rng.integers(0, caps.adv_limit[adv_on] + 1,
                                                            (n_user_rows, int(adv_on.sum())))
    recent = rng.random(caps.ring_low.shape) < 0.3  # impressions shortly before the batch
    for (row, k), back in zip(zip(*np.nonzero(recent)), rng.integers(0, 6, int(recent.sum()))):
        set_ring_time(caps, row, k, float(T.on_clock(origin - step * back)))

    users = make_users(nc, n_user_rows, n_adv, book.advertiser, high=4, row_of=row_of,
                       rows_in_use=n_users + 1)
    users.exposures[:] = rng.choice(np.array([0, 0, 1, 2, 254, 255], np.uint8), (n_user_rows, nc))
    # Touches at the start, before the batch, each by one of the advertiser's campaigns.
    touched = rng.random((n_user_rows, n_adv)) < 0.4
    for (row, a), pick in zip(zip(*np.nonzero(touched)), rng.random(int(touched.sum()))):
        own = np.flatnonzero(book.advertiser == a)
        if own.size:
            set_touch(users, row, a, 0.0, int(own[int(pick * own.size)]))
    market = Market(targeting, deals, book, caps, users, new_seller_book(n_pub, nc),
                    new_bid_book(n_pub, nc, n_adv) if rng.random() < 0.5 else None)

    # Requests and bids: integer grids make ties (bid/bid, bid/market, bid/floor) common.
    nan_share = rng.choice([0.0, 0.2, 0.5])
    market_share = rng.choice([0.0, 0.5, 1.0])
    deal_share = rng.choice([0.0, 0.3, 0.8]) if nd else 0.0
    ticks, t0 = [], origin
    for n in n_per_tick:
        def prices(shape):
            if bid_mode == "continuous":
                return rng.uniform(0.0, 6.0, shape)
            return rng.integers(0, 6, shape) * 1.0

        time_s = t0 + step * np.sort(rng.integers(0, n_steps + 1, n))
        t0 = float(time_s[-1])
        # Bids f8[n, nc], one row per request, as the kernel takes them.
        if bid_mode == "edge":  # half micros around edge_micros: rounding decides
            bids = np.maximum(edge_micros[None, :] + rng.integers(-1, 2, (n, nc)) + 0.5, 0) / 1000
        else:
            bids = prices((n, nc))
        bids[rng.random((n, nc)) < nan_share] = NAN
        if rng.random() < 0.05:
            bids[rng.random((n, nc)) < 0.05] = INF  # a runaway strategy: clamped to MAX_BID_CPM
        if rng.random() < 0.1:
            bids[rng.random((n, nc)) < 0.1] = -1.0  # negative: no bid
            bids[rng.random((n, nc)) < 0.1] = -0.0  # a bid of zero
        market_cpm = np.where(rng.random(n) < market_share, prices(n), NAN)
        deal = np.where(rng.random(n) < deal_share, rng.integers(0, max(nd, 1), n), -1)
        u_pace = rng.integers(0, 4, n) / 4 if grid_pacing else rng.random(n)
        slot = rng.integers(0, n_slots, n)
        user = rng.integers(0, n_users, n)
        req = make_requests(time_s, user=user, user_row=row_of[user], slot=slot,
                            floor_cpm=prices(n) * rng.choice([0.5, 1.0]), market_cpm=market_cpm,
                            u_pace=u_pace, deal=deal,
                            target_row=np.where(rng.random(n) < 0.3, rng.integers(0, n_rows, n), slot),
                            publisher=rng.integers(0, n_pub, n))
        ticks.append((req, bids))
    if n_users > 1 and rng.random() < 0.3:
        # The last user is a no-id row (no consent): its requests carry row 0, as in a run,
        # and row 0's junk counts, rings, exposures and touches (and those of the row the
        # user had) must be neither read nor written.
        no_id_row = n_users - 1
        row_of[no_id_row] = 0
        ticks = [(req._replace(user_row=np.where(req.user >= no_id_row, 0, req.user_row)
                               .astype(np.int32)), bids) for req, bids in ticks]
        market = market._replace(users=market.users._replace(no_id_row=no_id_row))
    # Ring times and touches without a high part when the batch's times fit 32 bits (half
    # the time then, as a short run's rows, rtb/layout.py), else with 1, 2 or 4 bytes.
    caps, users = with_high(market.caps, market.users,
                            random_width(rng, t0, market.users.touch_bits))
    market = market._replace(caps=caps, users=users)
    return Case(int(rng.choice([FIRST, SECOND])), market, ticks)


def assert_same(kernel_out, twin_out, label):
    for part_k, part_p in zip(kernel_out, twin_out):
        assert (part_k is None) == (part_p is None), label
        if part_k is None:
            continue
        for name in part_k._fields:
            np.testing.assert_array_equal(getattr(part_k, name), getattr(part_p, name),
                                          err_msg=f"{label}: {type(part_k).__name__}.{name}")


PER_WIN = ("prior_exposures", "prior_touch")
# What undoes a win's writes (rtb/shards.py, tested in tests/test_shards.py): not a rule
# the twin states.
UNDO = ("replaced_slot", "replaced_value")


def assert_same_result(rk: TickResult, rp: TickResult, where: str) -> None:
    """Every field on every request; the prior_* fields on campaign wins, where they are set."""
    won = rk.winner >= 0
    for name in TickResult._fields:
        if name in UNDO:
            continue
        k, p = getattr(rk, name), getattr(rp, name)
        if name in PER_WIN:
            k, p = k[won], p[won]
        np.testing.assert_array_equal(k, p, err_msg=f"{where}: {name}")


def compare(case: Case, label: str) -> list[tuple]:
    """Run kernel and twin on copies of the case; assert identical; return kernel results."""
    mk, mp = case.market.copy(), case.market.copy()
    out = []
    for k, (req, bids) in enumerate(case.ticks):
        rk = run_kernel(req, bids, mk, case.mechanism)
        rp = run_twin(req, bids, mp, case.mechanism)
        where = f"{label} tick {k}"
        assert_same_result(rk, rp, where)
        assert_same(mk[2:], mp[2:], where)  # book, caps, users, sellers, bid book
        out.append(rk)
    return out


BLOCKS = 13
CASES_PER_BLOCK = 200


@pytest.mark.parametrize("block", range(BLOCKS))
def test_kernel_matches_twin_on_random_batches(block):
    for k in range(CASES_PER_BLOCK):
        seed = (20_261_201, block, k)
        compare(random_case(np.random.default_rng(seed)), f"seed {seed}")


class DrawnRng:
    """random_case's generator with hypothesis choosing every scalar: the market's shape
    (sizes, modes, shares, steps) shrinks towards a small, plain market on a failure.
    Arrays come from numpy, seeded by a drawn integer: drawn element by element they
    would overflow hypothesis's buffer."""

    def __init__(self, data: st.DataObject):
        self.data = data
        self.arrays = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="array seed"))

    def random(self, size=None):
        if size is None:
            return self.data.draw(st.floats(0.0, 1.0, exclude_max=True))
        return self.arrays.random(size)

    def integers(self, low, high=None, size=None):
        if size is not None:
            return self.arrays.integers(low, high, size)
        low, high = (0, low) if high is None else (low, high)
        return self.data.draw(st.integers(int(low), int(high) - 1))

    def choice(self, a, size=None, p=None):
        if size is not None:
            return self.arrays.choice(a, size, p=p)
        return self.data.draw(st.sampled_from(list(a)))  # every option, whatever p

    def uniform(self, low, high, size):
        return self.arrays.uniform(low, high, size)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_kernel_matches_twin_on_markets_hypothesis_draws(data):
    compare(random_case(DrawnRng(data)), "hypothesis market")


def test_random_markets_reach_every_rule():
    """The comparison is worth something only if the markets reach the rules: every
    outcome, floor hits of both kinds, requests outside the open auction, wins that
    replace an earlier touch, anonymous rows and hidden bids, bids binned in several
    bins, rolling caps that bind, wins in books with and without a high part, values
    written past 32 bits (block 0's markets, on the kernel alone)."""
    outcomes = np.zeros(T.N_OUTCOMES, np.int64)
    seen = {"hit_sold": 0, "hit_unsold": 0, "closed": 0, "replaced_touch": 0, "no_id_won": 0,
            "hidden": 0, "anonymous_row": 0, "bids_binned": 0, "bins_used": 0,
            "rolling_capped": 0, "wins_without_high_part": 0, "wins_with_high_part": 0,
            "high_part_written": 0}
    for k in range(CASES_PER_BLOCK):
        case = random_case(np.random.default_rng((20_261_201, 0, k)))
        m = case.market.copy()
        start = m.book.outcomes.copy()
        for req, bids in case.ticks:
            r = run_kernel(req, bids, m, case.mechanism)
            sold = r.winner != T.UNSOLD
            seen["hit_sold"] += int((r.floor_hit & sold).sum())
            seen["hit_unsold"] += int((r.floor_hit & ~sold).sum())
            seen["closed"] += int((~r.open_auction).sum())
            seen["replaced_touch"] += int((r.prior_touch[r.winner >= 0] >= 0).sum())
            seen["no_id_won"] += int(((r.winner >= 0) & (req.user >= m.users.no_id_row)).sum())
            seen["anonymous_row"] += int((req.target_row != req.slot).sum())
            high = "with" if high_width(m.users.touch_high) else "without"
            seen[f"wins_{high}_high_part"] += int((r.winner >= 0).sum())
        seen["high_part_written"] += int(bool((m.users.touch_high != case.market.users.touch_high).any()
                                              and (m.caps.ring_high != case.market.caps.ring_high).any()))
        rolling = m.caps.kind == T.CAP_ROLLING
        seen["rolling_capped"] += int((m.book.outcomes - start)[rolling, T.LOSS_FREQUENCY_CAPPED].sum())
        outcomes += (m.book.outcomes - start).sum(axis=0)
        seen["hidden"] += int(m.sellers.hidden_bids.sum())
        if m.bid_book is not None:
            seen["bids_binned"] += int(m.bid_book.bins.sum())
            seen["bins_used"] = max(seen["bins_used"], int((m.bid_book.bins.sum(axis=0) > 0).sum()))
            assert m.bid_book.bins.sum() == m.bid_book.bids.sum()
    assert (outcomes > 0).all(), dict(zip(T.OUTCOME_NAMES, outcomes.tolist()))
    assert all(v > 0 for v in seen.values()), seen


# ---- invariants, checked on the kernel alone ----------------------------------------

@pytest.mark.parametrize("block", range(3))
def test_invariants_on_random_batches(block):
    for k in range(60):
        seed = (77, block, k)
        case = random_case(np.random.default_rng(seed))
        m = case.market.copy()
        for req, bids in case.ticks:
            _check_invariants(case, m, req, bids, seed)


def _check_invariants(case, m, req, bids, seed):
    book = m.book
    before = m.copy()
    r = run_kernel(req, bids, m, case.mechanism)
    n, nc = bids.shape
    msg = f"seed {seed}"
    sold = r.winner != T.UNSOLD
    assert np.all(r.price_cpm[~sold] == 0.0), msg
    assert np.all(r.deal_won <= (r.winner >= 0)), msg
    for i in np.flatnonzero(sold):
        d, w, p = int(req.deal[i]), int(r.winner[i]), float(r.price_cpm[i])
        if r.deal_won[i]:
            dfloor = float(m.deals.floor_cpm[d])
            assert m.deals.allowed[d, w] and p >= dfloor, msg
            assert bids[i, w] >= dfloor, msg
            if m.deals.fixed[d]:
                assert p == dfloor, msg
        else:
            # A private deal never falls back to the open auction.
            assert d < 0 or not m.deals.private[d], msg
            assert p >= req.floor_cpm[i], msg
        bid = float(req.market_cpm[i]) if w == T.MARKET else min(float(bids[i, w]), T.MAX_BID_CPM)
        assert p <= bid, msg  # first price pays the bid, second price never more
        if case.mechanism == FIRST and not (r.deal_won[i] and m.deals.fixed[d]):
            assert p == bid, msg
    # The open auction and its floor.
    private = (req.deal >= 0) & m.deals.private[np.maximum(req.deal, 0)]
    np.testing.assert_array_equal(r.open_auction, ~private & ~r.deal_won, err_msg=msg)
    assert np.all(r.floor_hit <= r.open_auction), msg
    hit_sold = r.floor_hit & sold
    assert case.mechanism == SECOND or not hit_sold.any(), msg
    assert np.all(r.price_cpm[hit_sold] == req.floor_cpm[hit_sold]), msg
    assert np.all(req.floor_cpm[r.floor_hit & ~sold] > 0.0), msg  # some bid >= 0 was below it
    # Touches: a campaign win replaces an earlier touch with its own.
    camp = np.flatnonzero(r.winner >= 0)
    assert np.all(np.array(touch_times(r.prior_touch[camp])) <= req.time_s[camp]), msg
    adv = book.advertiser[r.winner[camp]]
    last = {}  # the tick's last win per (user, its row, advertiser)
    for i, a in zip(camp, adv):
        last[int(req.user[i]), int(req.user_row[i]), int(a)] = i
    for (u, row, a), i in last.items():
        if u < m.users.no_id_row:
            assert (wide_value(m.users, touch_value(m.users, row, a), a)
                    == pack_touch(req.time_s[i], r.winner[i])), msg
    # No id (no consent): no touch, no exposure, and no row written: the rows no request
    # with an id reaches (the no-id requests' row 0, spare rows) keep their values, but
    # for counters a new calendar window clears, in the rows in use only.
    no_id = camp[req.user[camp] >= m.users.no_id_row]
    assert np.all(r.prior_touch[no_id] == -1) and np.all(r.prior_exposures[no_id] == 0), msg
    n_rows = m.users.exposures.shape[0]
    rows = np.setdiff1d(np.arange(n_rows), req.user_row[req.user < m.users.no_id_row])
    spare = np.arange(int(m.caps.rows_in_use[0]), n_rows)
    per_row = {"caps": ("counts", "ring_low", "ring_high", "adv_counts"),
               "users": ("exposures", "touch_low", "touch_high")}
    for part, names in per_row.items():
        for name in names:
            now, then = getattr(getattr(m, part), name), getattr(getattr(before, part), name)
            assert now.shape[0] == n_rows, name
            if name in ("counts", "adv_counts"):
                assert np.all(now[rows] <= then[rows]), f"{msg}: {name}"
                np.testing.assert_array_equal(now[spare], then[spare], err_msg=f"{msg}: {name}")
            else:
                np.testing.assert_array_equal(now[rows], then[rows], err_msg=f"{msg}: {name}")
    # Money: spend <= budget, every micro accounted for.
    spent = ((book.media_micros - before.book.media_micros) + (book.fee_micros - before.book.fee_micros)
             + (book.data_cost_micros - before.book.data_cost_micros))
    assert np.all(before.book.remaining_total - book.remaining_total == spent), msg
    assert np.all(book.remaining_total >= 0) and np.all(book.remaining_daily >= 0), msg
    # Outcomes: one per bid made; one win per impression.
    delta = book.outcomes - before.book.outcomes
    np.testing.assert_array_equal(delta.sum(axis=1), (bids >= 0.0).sum(axis=0), err_msg=msg)
    # Blocked: only campaigns whose targeting some slot's brand safety forbids.
    forbidden = np.unpackbits(m.targeting.slot_blocked_words.view(np.uint8), axis=1,
                              bitorder="little")[:, :nc].any(axis=0)
    assert np.all(delta[~forbidden, T.OUTCOME_BLOCKED] == 0), msg
    np.testing.assert_array_equal(delta[:, T.WON], np.bincount(r.winner[r.winner >= 0], minlength=nc),
                                  err_msg=msg)
    assert delta[:, T.LOSS_LOST_TO_MARKET].sum() <= nc * np.count_nonzero(r.winner == T.MARKET), msg
    # Caps: no counter past its limit.
    calendar = m.caps.kind == T.CAP_CALENDAR
    assert np.all(m.caps.counts[:, m.caps.cal_col[calendar]] <= m.caps.limit[calendar]), msg
    adv_on = m.caps.adv_kind == T.CAP_CALENDAR
    assert np.all(m.caps.adv_counts[:, m.caps.adv_col[adv_on]] <= m.caps.adv_limit[adv_on]), msg


# ---- hand-worked cases --------------------------------------------------------------

def _both(req, bids, m, mechanism=SECOND):
    """Kernel result (and state in m), after checking the twin agrees on a copy.

    bids f8[n, nc]: one row per request."""
    bids = np.asarray(bids, np.float64)
    twin_m = m.copy()
    rp = run_twin(req, bids, twin_m, mechanism)
    rk = run_kernel(req, bids, m, mechanism)
    assert_same_result(rk, rp, "hand case")
    assert_same(m[2:], twin_m[2:], "hand case")
    return rk


@pytest.mark.parametrize("mechanism", [FIRST, SECOND])
def test_campaign_beats_market_on_equal_bid(mechanism):
    m = make_market(2)
    req = make_requests([0.0, 1.0], floor_cpm=1.0, market_cpm=[2.0, 2.0])
    bids = [[NAN, 2.0], [1.5, 2.0]]  # campaign 1 ties the market twice
    r = _both(req, bids, m, mechanism)
    assert r.winner.tolist() == [1, 1]
    assert r.price_cpm.tolist() == [2.0, 2.0]  # second price: the market's equal bid
    assert m.book.outcomes[0, T.LOSS_LOST_TO_BID] == 1
    assert m.book.outcomes[1, T.WON] == 2


def test_lowest_index_wins_a_tie_and_pays_its_bid():
    m = make_market(3)
    req = make_requests([0.0], floor_cpm=0.5, market_cpm=1.0)
    r = _both(req, [[2.0, 3.0, 3.0]], m)
    assert (r.winner[0], r.price_cpm[0]) == (1, 3.0)
    assert m.book.outcomes[2, T.LOSS_LOST_TO_BID] == 1


def test_market_above_campaigns_wins_and_they_lose_to_market():
    m = make_market(2)
    req = make_requests([0.0], floor_cpm=1.0, market_cpm=4.0)
    r = _both(req, [[3.0, 0.5]], m)
    assert (r.winner[0], r.price_cpm[0]) == (T.MARKET, 3.0)
    assert m.book.outcomes[0, T.LOSS_LOST_TO_MARKET] == 1
    assert m.book.outcomes[1, T.LOSS_BELOW_FLOOR] == 1


@pytest.mark.parametrize("mechanism", [FIRST, SECOND])
def test_private_deal_without_qualifying_bid_stays_unsold(mechanism):
    """The market bids 10 and campaign 1 bids 20, but the private deal admits only 0."""
    deals = make_deals(3.0, False, True, [[True, False]])
    m = make_market(2, deals=deals)
    req = make_requests([0.0], floor_cpm=1.0, market_cpm=10.0, deal=0)
    r = _both(req, [[2.5, 20.0]], m, mechanism)
    assert (r.winner[0], r.price_cpm[0], r.deal_won[0]) == (T.UNSOLD, 0.0, False)
    assert (r.open_auction[0], r.floor_hit[0]) == (False, False)  # no open auction at all
    assert m.book.outcomes[0, T.LOSS_BELOW_DEAL_FLOOR] == 1
    assert m.book.outcomes[1, T.OUTCOME_NOT_TARGETED] == 1
    assert m.book.media_micros.sum() == 0


@pytest.mark.parametrize("mechanism", [FIRST, SECOND])
def test_fixed_price_deal_charges_the_fixed_price(mechanism):
    deals = make_deals(3.0, True, True, [[True, True, False]])
    m = make_market(3, deals=deals)
    m.book.dsp_fee_ppm[:] = 100_000
    req = make_requests([0.0], floor_cpm=4.0, market_cpm=9.0, deal=0)
    r = _both(req, [[5.0, 7.0, 8.0]], m, mechanism)
    assert (r.winner[0], r.price_cpm[0], r.deal_won[0]) == (1, 3.0, True)
    assert m.book.media_micros[1] == 3_000 and m.book.fee_micros[1] == 300
    assert m.book.outcomes[0, T.LOSS_LOST_TO_BID] == 1


def test_second_price_deal_pays_second_deal_bid_or_deal_floor():
    deals = make_deals([2.0, 2.0], False, False, [[True, True, False], [True, False, False]])
    m = make_market(3, deals=deals)
    req = make_requests([0.0, 1.0], floor_cpm=0.5, market_cpm=50.0, deal=[0, 1])
    # Campaign 2 is not in the deals: it bids in the open tier and loses to the deal.
    r = _both(req, [[5.0, 3.0, 9.0], [5.0, 3.0, 9.0]], m)
    assert r.winner.tolist() == [0, 0] and r.deal_won.tolist() == [True, True]
    assert r.price_cpm.tolist() == [3.0, 2.0]
    assert r.open_auction.tolist() == [False, False]  # sold through the (open) deals
    assert m.book.outcomes[2, T.LOSS_LOST_TO_BID] == 2


def test_open_deal_falls_back_to_the_open_auction():
    deals = make_deals(6.0, False, False, [[True, False]])
    m = make_market(2, deals=deals)
    req = make_requests([0.0, 1.0], floor_cpm=1.0, market_cpm=[NAN, 4.5], deal=0)
    # Campaign 0 is below the deal floor, so it bids in the open auction with the rest.
    r = _both(req, [[5.0, 4.0], [5.0, 4.0]], m)
    assert r.winner.tolist() == [0, 0] and r.deal_won.tolist() == [False, False]
    assert r.price_cpm.tolist() == [4.0, 4.5]
    assert r.open_auction.tolist() == [True, True]


def test_budget_test_is_exact_to_the_micro():
    # 2.0 CPM = 2000 micros + 10 % fee 200 + data 50 = 2250.
    book = make_book(2, fee_ppm=100_000, data_micros=50, total=[2_250, 2_249])
    m = make_market(2, book=book)
    req = make_requests([0.0], floor_cpm=0.0)
    r = _both(req, [[2.0, 2.0]], m, FIRST)
    assert r.winner[0] == 0
    assert m.book.remaining_total.tolist() == [0, 2_249]
    # Again with the other campaign first in index order: it cannot pay, so it loses.
    m = make_market(2, book=make_book(2, fee_ppm=100_000, data_micros=50, total=[2_249, 2_250]))
    r = _both(req, [[3.0, 2.0]], m, FIRST)
    assert r.winner[0] == 1 and m.book.outcomes[0, T.LOSS_OUT_OF_BUDGET] == 1
    # Half micros round up: 2.0025 CPM costs 2003 micros, 2.0015 CPM 2002.
    m = make_market(2, book=make_book(2, total=2_002))
    r = _both(req, [[2.0025, 2.0015]], m, FIRST)
    assert r.winner[0] == 1 and m.book.outcomes[0, T.LOSS_OUT_OF_BUDGET] == 1
    assert m.book.remaining_total.tolist() == [2_002, 0]


def test_daily_budget_restored_at_the_exact_midnight():
    book = make_book(1, total=10**9, daily=1_000, day_end_s=100.0)
    m = make_market(1, book=book)
    req = make_requests([10.0, 99.5, 100.0, 100.5, 86_500.0, 86_501.0, 3 * DAY + 150.0])
    r = _both(req, np.full((7, 1), 1.0), m, FIRST)
    assert r.winner.tolist() == [0, T.UNSOLD, 0, T.UNSOLD, 0, T.UNSOLD, 0]
    assert m.book.outcomes[0, T.LOSS_OUT_OF_BUDGET] == 3
    assert m.book.day_end_s[0] == 100.0 + 4 * DAY  # two days skipped at once


def test_calendar_windows_of_one_length_expire_together():
    caps = make_caps(3, 1, kind=[T.CAP_CALENDAR, T.CAP_CALENDAR, T.CAP_CALENDAR], limit=1,
                     window_s=[60.0, 60.0, 120.0], window_end_s=[60.0, 60.0, 120.0])
    m = make_market(3, caps=caps)
    req = make_requests([0.0, 1.0, 2.0, 60.0, 61.0, 62.0])
    bids = [[3, NAN, NAN], [NAN, 3, NAN], [NAN, NAN, 3], [3, NAN, 3], [3, NAN, 3], [NAN, 3, 3]]
    r = _both(req, bids, m)
    # At 60 s the 60 s windows start again, the 120 s window does not.
    assert r.winner.tolist() == [0, 1, 2, 0, T.UNSOLD, 1]
    assert m.caps.window_end_s.tolist() == [120.0, 120.0, 120.0]
    # Campaign 2 is capped throughout, but only at 61 s does it outrank the winner (none):
    # at 60 s and 62 s it ties with a lower index and lost to that bid.
    assert m.book.outcomes[:, T.LOSS_FREQUENCY_CAPPED].tolist() == [1, 0, 1]
    assert m.book.outcomes[:, T.LOSS_LOST_TO_BID].tolist() == [0, 0, 2]


def test_advertiser_cap_spans_its_campaigns():
    caps = make_caps(2, 1, n_adv=1, adv_kind=T.CAP_CALENDAR, adv_limit=2, adv_window_s=DAY)
    m = make_market(2, caps=caps)
    req = make_requests([0.0, 1.0, 2.0, DAY])
    r = _both(req, [[3.0, NAN], [NAN, 3.0], [3.0, 2.0], [3.0, NAN]], m)
    assert r.winner.tolist() == [0, 1, T.UNSOLD, 0]
    assert m.book.outcomes[:, T.LOSS_FREQUENCY_CAPPED].tolist() == [1, 1]


# (start, bytes of the high part): from 65,536 s on, ring times need more than 32 bits.
@pytest.mark.parametrize("start, high", [(0.0, 0), (0.0, 2), (100_000.0, 1), (100_000.0, 4)])
def test_rolling_cap_keeps_the_last_times(start, high):
    caps = make_caps(1, 1, kind=T.CAP_ROLLING, limit=2, window_s=10.0, high=high)
    m = make_market(1, caps=caps, high=high)
    req = make_requests([start + t for t in (0.0, 5.0, 9.0, 10.0, 14.0, 15.0)])
    r = _both(req, np.full((6, 1), 1.0), m)
    # Capped while both of the last two impressions are inside (t - 10, t].
    assert r.winner.tolist() == [0, 0, T.UNSOLD, 0, T.UNSOLD, 0]
    assert sorted(ring_times(m.caps, 0)) == [start + 10.0, start + 15.0]
    assert high_width(m.caps.ring_high) == high
    assert bool(m.caps.ring_high.any()) == (start > 0)  # the part past 32 bits


def test_pacing_throttle_wraps_around():
    targeting = make_targeting(2, pace_share=0.5, pace_offset=[0.0, 0.75])
    m = make_market(2, targeting=targeting)
    req = make_requests([0.0, 1.0, 2.0], u_pace=[0.25, 0.5, 0.75])
    r = _both(req, np.full((3, 2), 1.0), m)
    # x = 0.25 / 1.0 -> 0.0 (in, in); 0.5 / 1.25 -> 0.25 (out, in); 0.75 / 0.5 (out, out).
    assert r.winner.tolist() == [0, 1, T.UNSOLD]
    assert m.book.outcomes[:, T.OUTCOME_PACED].tolist() == [2, 1]


def test_two_bitset_words_and_untargeted_bids():
    nc = 70
    user_ok = np.zeros((1, nc), bool)
    user_ok[0, [3, 69]] = True
    m = make_market(nc, targeting=make_targeting(nc, user_ok=user_ok))
    bids = np.full((1, nc), NAN)
    bids[0, [3, 69, 68]] = [1.0, 2.0, 9.0]  # 68 bids high but does not target the user
    r = _both(make_requests([0.0], floor_cpm=0.5), bids, m)
    assert (r.winner[0], r.price_cpm[0]) == (69, 1.0)
    assert m.book.outcomes[68, T.OUTCOME_NOT_TARGETED] == 1


def test_brand_safety_block_counts_targeted_bids_as_blocked():
    """Campaigns 1-3 target slot 0 but brand safety forbids it; 1 and 3 also match user 1,
    3 starts its flight at 10 s; a private deal admits 0 and 1. A forbidden pair's bid is
    `blocked` only if it passes the rest of targeting (user, flight, deal), else
    not_targeted; a negative bid is none. Blocked bids never compete or count as offers."""
    targeting = make_targeting(4, slot_ok=[[True, False, False, False]],
                               slot_blocked=[[False, True, True, True]],
                               user_ok=[[True] * 4, [True, True, False, True]],
                               flight_start_s=[0.0, 0.0, 0.0, 10.0])
    deals = make_deals(1.0, False, True, [[True, True, False, False]])
    m = make_market(4, n_users=2, targeting=targeting, deals=deals)
    req = make_requests([0.0, 20.0, 21.0, 22.0], user=[0, 1, 0, 0], floor_cpm=1.0,
                        deal=[-1, -1, 0, -1])
    bids = [[2.0, 9.0, 9.0, 9.0],
            [2.0, 9.0, 9.0, 9.0],
            [2.0, 9.0, 9.0, NAN],
            [NAN, 0.5, -1.0, -0.0]]
    r = _both(req, bids, m)
    assert r.winner.tolist() == [0, 0, 0, T.UNSOLD]
    assert r.price_cpm.tolist() == [1.0, 1.0, 1.0, 0.0]  # the 9.0 bids set no price
    assert r.deal_won.tolist() == [False, False, True, False]
    assert r.floor_hit.tolist() == [True, True, False, False]  # 0.5 blocked: not an offer
    expected = np.zeros((4, T.N_OUTCOMES), np.int64)
    expected[0, T.WON] = 3
    expected[1, T.OUTCOME_BLOCKED] = 4
    expected[2, [T.OUTCOME_BLOCKED, T.OUTCOME_NOT_TARGETED]] = [1, 2]  # user 1; not admitted
    expected[3, [T.OUTCOME_BLOCKED, T.OUTCOME_NOT_TARGETED]] = [2, 1]  # before its flight
    np.testing.assert_array_equal(m.book.outcomes, expected)


@pytest.mark.parametrize("mechanism", [FIRST, SECOND])
def test_floor_hits(mechanism):
    """Campaign 1 is paced out, 2 cannot pay, 3 does not target the user; deal 0 is
    private (admits 0, floor 0.5), deal 1 open (admits 0, floor 5). Floor 2 throughout."""
    targeting = make_targeting(4, user_ok=[[True, True, True, False]],
                               pace_share=[1.0, 0.0, 1.0, 1.0])
    deals = make_deals([0.5, 5.0], False, [True, False], [[True, False, False, False]] * 2)
    book = make_book(4, total=[10**9, 10**9, 0, 10**9])
    m = make_market(4, targeting=targeting, deals=deals, book=book)
    cases = [  # (market, bids, deal, floor hit: first price, second price)
        (3.0, [NAN, NAN, NAN, NAN], -1, False, True),  # the market pays the floor
        (NAN, [1.5, NAN, NAN, NAN], -1, True, True),  # unsold, the only bid below the floor
        (1.0, [NAN, 3.0, NAN, NAN], -1, False, False),  # a bid above it, paced out
        (1.0, [NAN, 1.0, NAN, NAN], -1, True, True),  # bids below it, paced out or not
        (NAN, [NAN, NAN, NAN, NAN], -1, False, False),  # no bid at all
        (2.5, [4.0, NAN, NAN, NAN], -1, False, False),  # the market's bid sets the price
        (1.0, [4.0, NAN, NAN, NAN], -1, False, True),  # sold at the floor
        (NAN, [1.0, NAN, NAN, NAN], 0, False, False),  # sold through a private deal
        (NAN, [1.0, NAN, NAN, NAN], 1, True, True),  # open deal, no deal bid: open auction
        (NAN, [NAN, NAN, 3.0, NAN], -1, False, False),  # a bid above it that cannot pay
        (1.5, [NAN, NAN, 1.0, NAN], -1, True, True),  # bids below it
        (NAN, [NAN, NAN, NAN, 1.0], -1, False, False),  # a bid, but not targeting the request
        (NAN, [NAN, NAN, -0.0, NAN], -1, True, True),  # a bid of zero
    ]
    market, bids, deal, first_hit, second_hit = zip(*cases)
    req = make_requests(np.arange(len(cases), dtype=float), floor_cpm=2.0, market_cpm=market,
                        deal=deal)
    r = _both(req, bids, m, mechanism)
    assert r.floor_hit.tolist() == list(second_hit if mechanism == SECOND else first_hit)
    assert r.open_auction.tolist() == [d != 0 for d in deal]


def test_win_updates_reach_exposures_and_last_touch():
    m = make_market(2, n_users=2, n_adv=1)
    m.users.exposures[1, 1] = 255
    req = make_requests([1.5, 2.25, 3.0], user=[0, 0, 1])
    r = _both(req, [[NAN, 1.0], [NAN, 1.0], [NAN, 1.0]], m)
    assert r.prior_exposures.tolist() == [0, 1, 255]
    assert m.users.exposures[:, 1].tolist() == [2, 255]  # saturates
    assert m.book.reach[1] == 1
    assert touch_times(row_touches(m.users)[:, 0]) == [2.25, 3.0]
    assert touch_campaigns(row_touches(m.users)[:, 0]) == [1, 1]


def test_books_are_read_at_the_requests_row_and_targeting_at_its_user():
    """Users 0 and 1 have rows 2 and 3 (rows are handed out as ids appear); row 0 says
    campaign 0 reached its cap of 1, and so does row 3; campaign 1 targets user 1 only."""
    targeting = make_targeting(2, n_users=2, user_ok=[[True, False], [True, True]])
    caps = make_caps(2, 4, kind=T.CAP_CALENDAR, limit=1, rows_in_use=4)
    caps.counts[[0, 3], 0] = 1
    m = make_market(2, n_users=2, targeting=targeting, caps=caps)
    m = m._replace(users=make_users(2, 4, row_of=np.array([2, 3], np.int32)))
    req = make_requests([1.0, 2.0], user=[0, 1], user_row=[2, 3], floor_cpm=0.5)
    r = _both(req, [[2.0, 1.0], [2.0, 1.0]], m)
    assert r.winner.tolist() == [0, 1]
    assert m.users.exposures.tolist() == [[0, 0], [0, 0], [1, 0], [0, 1]]
    assert m.caps.counts.tolist() == [[1, 0], [0, 0], [1, 0], [1, 1]]
    assert touch_times(row_touches(m.users)[:, 0]) == [-INF, -INF, 1.0, 2.0]
    assert touch_campaigns(row_touches(m.users)[:, 0]) == [-1, -1, 0, 1]


@pytest.mark.parametrize("high", [0, 1, 2, 4])  # bytes of the touches' high part
def test_touch_keeps_the_exact_time_per_advertiser_and_the_result_the_one_replaced(high):
    # Campaigns 0 and 1 belong to advertiser 0, campaign 2 to advertiser 1. User 0 was
    # touched by campaign 0 at 0.5 s; market wins and unsold requests touch nobody.
    m = make_market(3, n_users=2, n_adv=2, book=make_book(3, advertiser=[0, 0, 1]), high=high)
    set_touch(m.users, 0, 0, 0.5, 0)
    t0 = 1 + 26 / T.CLOCK_UNITS_PER_S  # 1.0004 s, on the clock
    req = make_requests([t0, 2.5, 3.0, 4.0, 4.25, 4.5], user=[0, 0, 0, 0, 1, 0],
                        floor_cpm=1.0, market_cpm=[NAN, NAN, 9.0, NAN, NAN, NAN])
    bids = [[NAN, 2.0, NAN], [NAN, NAN, 2.0], [2.0, NAN, NAN], [2.0, NAN, NAN],
            [NAN, NAN, 2.0], [0.5, NAN, NAN]]
    r = _both(req, bids, m)
    assert r.winner.tolist() == [1, 2, T.MARKET, 0, 2, T.UNSOLD]
    won = r.winner >= 0
    assert touch_times(r.prior_touch[won]) == [0.5, -INF, t0, -INF]
    assert touch_campaigns(r.prior_touch[won]) == [0, -1, 1, -1]
    assert touch_times(row_touches(m.users)) == [4.0, 2.5, -INF, 4.25]
    assert touch_campaigns(row_touches(m.users)) == [0, 2, -1, 2]
    assert high_width(m.users.touch_high) == high


def test_runaway_bid_is_clamped():
    m = make_market(1)
    r = _both(make_requests([0.0], market_cpm=5.0), [[INF]], m, FIRST)
    assert (r.winner[0], r.price_cpm[0]) == (0, T.MAX_BID_CPM)


# ---- large budgets (a hang, fixed in 5f64b19) -----------------------------------------

# Budgets up to the scenario bound (MAX_MONEY = 1e9 units = 1e15 micros) with high DSP
# fees once overflowed int64 in _budget_threshold_nb's (x + 1) * fee_ppm, and its loop
# then ran for ever: clear_tick_nb never returned (`rtb run` hung on a valid scenario).
# The kernel now computes a checked bid's cost directly; the cases stay as a guard.
LARGE_BUDGETS = ((10**14, 150_000, 2.0), (10**15, 999_999, 2.0), (10**15, 999_999, INF))

_LARGE_BUDGET_CHILD = """
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
import test_kernel_twin as K
def run(total, fee_ppm, bid):
    m = K.make_market(1, book=K.make_book(1, total=total, fee_ppm=fee_ppm))
    r = K.run_kernel(K.make_requests([0.0]), np.array([[bid]]), m, K.FIRST)
    return [int(r.winner[0]), int(m.book.remaining_total[0])]
run(10**6, 0, 1.0)  # compiled (or loaded from the cache) before the clock starts
print("ready", flush=True)
print(json.dumps([run(*case) for case in K.LARGE_BUDGETS]), flush=True)
"""


def test_large_budgets_with_high_fees_clear():
    """Each campaign can pay its bid (even a clamped runaway one): it must win, promptly."""
    expected = []
    for total, fee_ppm, bid in LARGE_BUDGETS:
        twin = make_market(1, book=make_book(1, total=total, fee_ppm=fee_ppm))
        r = run_twin(make_requests([0.0]), np.array([[bid]]), twin, FIRST)
        expected.append([int(r.winner[0]), int(twin.book.remaining_total[0])])
    media = T.MICROS_PER_CPM * T.MAX_BID_CPM
    assert expected[2] == [0, 10**15 - int(media + media * 999_999 // T.PPM)]
    # A kernel that spins holds the GIL, so it runs in a child process, killed if the
    # calls take more than a few seconds (they take microseconds).
    code = _LARGE_BUDGET_CHILD.format(tests=str(__import__("pathlib").Path(__file__).parent))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"  # imports and compilation done
        ready, _, _ = select.select([child.stdout], [], [], 5.0)
        assert ready, "clear_tick_nb did not return within 5 s"
        assert json.loads(child.stdout.readline()) == expected
    finally:
        child.kill()
        child.wait()
