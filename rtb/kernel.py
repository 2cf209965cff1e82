"""The tick kernel: one numba call clears a whole tick's requests in time order.

A budget or a frequency cap that runs out inside the tick is exact because requests
are cleared one after another. Eligibility (targeting, brand safety, flights, deals,
pacing, floors) is decided here and only here, and every per-bid outcome count, every
floor hit and what each publisher saw of each campaign (SellerBook, BidBook) comes
from that one decision. State lives in plain arrays grouped in
NamedTuples (rtb/books.py; numba reads them as tuples of arrays); the kernel updates
the run's books in place and never draws random numbers. clear_tick() is its typed
wrapper.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros

from rtb import types as T
from rtb.books import (BID_BIN_BASE, BID_BIN_SHIFT, NO_TOUCH, BidBook, CampaignBook, CapBook,
                       Deals, SellerBook, Targeting, TickResult, UserBook, book_touch,
                       new_result, read_split, ring_time_s, ring_value, wide_touch,
                       write_split)
from rtb.prefetch import PREFETCH_AHEAD, prefetch_item, prefetch_row, prefetch_stride
from rtb.types import RequestBatch

def clear_tick(requests: RequestBatch, bids: np.ndarray, mechanism: int, targeting: Targeting,
               deals: Deals, book: CampaignBook, caps: CapBook, users: UserBook,
               sellers: SellerBook, bid_book: BidBook | None = None) -> TickResult:
    """Clear one tick's requests (time-sorted) against bids f8[n, nc] (NaN = no bid).

    Updates book, caps, users, sellers and bid_book (if given) in place; see
    clear_tick_nb for the rules.
    """
    n, nc = bids.shape
    if n != requests.time_s.size or nc != book.advertiser.size:
        raise ValueError(f"bids shape {bids.shape} does not match {requests.time_s.size} requests"
                         f" x {book.advertiser.size} campaigns")
    result = new_result(n)
    clear_tick_nb(requests, np.ascontiguousarray(bids, dtype=np.float64), mechanism, targeting,
                  deals, book, caps, users, sellers, bid_book, result)
    return result


@njit(cache=True)
def _next_calendar_window_nb(kind, window_s, window_end_s, counts, column, rows_in_use, c, t):
    """Start the window containing t for every calendar cap with c's window length (in
    the rows in use: the others are zero)."""
    end = window_end_s[c]
    while t >= end:
        after = end + window_s[c]
        # A window too short to move the end (validation refuses them) must not loop
        # forever inside a kernel that Ctrl-C cannot interrupt: jump just past t.
        end = after if after > end else np.nextafter(t, np.inf)
    members = np.flatnonzero((kind == T.CAP_CALENDAR) & (window_s == window_s[c]))
    for u in range(rows_in_use[0]):
        for col in members:
            counts[u, column[col]] = 0
    for col in members:
        window_end_s[col] = end


# Candidates are ranked by a key: the bid's float64 bit pattern read as an int64. For
# bids >= 0 (and +inf) the integers are in the floats' order, so a request's best bid is
# an integer max, which LLVM vectorises (a float max would need fast-math, which would
# also break the NaN tests). A deal bid's key is its pattern (>= 0); an open-auction
# bid's is shifted below zero by OPEN_KEY_BASE, so deal bids outrank open ones in the
# same max; NO_KEY, below both, marks a campaign that is not a candidate.
NO_KEY = -(1 << 63)
OPEN_KEY_BASE = NO_KEY + 1
MAX_BID_KEY = int(np.array(T.MAX_BID_CPM).view(np.int64))
@njit(cache=True, inline="always")
def _bid_value_nb(b):
    """A candidate's bid as it competes and pays: -0.0 as 0, capped at MAX_BID_CPM."""
    b = b if b > 0.0 else 0.0
    return b if b < T.MAX_BID_CPM else T.MAX_BID_CPM


# What the walk down a request's candidates is looking for.
SEEK_WINNER = 0
SEEK_DEAL_PRICE = 1  # second price in a deal: the next deal bid above the deal floor
SEEK_OPEN_PRICE = 2  # second price: the next bid above the market and the floor
SEEK_MARKET_PRICE = 3  # the market won in second price: the best bid above the floor
FOUND = 4


def clear_tick_nb(req, bids, mechanism, targeting, deals, book, caps, users, sellers, bid_book,
                  result):
    """Clear a tick's n requests in time order (see clear_requests_nb). Plain Python:
    a numba wrapper would compile the whole kernel again into itself."""
    clear_requests_nb(np.arange(bids.shape[0]), req, bids, mechanism, targeting, deals, book, caps,
                      users, sellers, bid_book, result, np.zeros(bids.shape[1], np.int64))


@njit(cache=True)
def cross_boundaries_nb(t, book, caps):
    """Restore daily budgets at each UTC midnight and clear calendar caps at each window
    boundary up to time t; returns the next boundary after t."""
    day_end_s, window_end_s, adv_window_end_s = book.day_end_s, caps.window_end_s, caps.adv_window_end_s
    for c in range(day_end_s.size):
        if t >= day_end_s[c]:
            book.remaining_daily[c] = book.daily_budget[c]
            while t >= day_end_s[c]:
                day_end_s[c] += T.SECONDS_PER_DAY
        if t >= window_end_s[c]:
            _next_calendar_window_nb(caps.kind, caps.window_s, window_end_s, caps.counts,
                                     caps.cal_col, caps.rows_in_use, c, t)
    for a in range(adv_window_end_s.size):
        if t >= adv_window_end_s[a]:
            _next_calendar_window_nb(caps.adv_kind, caps.adv_window_s, adv_window_end_s,
                                     caps.adv_counts, caps.adv_col, caps.rows_in_use, a, t)
    next_boundary_s = min(day_end_s.min(), window_end_s.min())
    if adv_window_end_s.size:
        next_boundary_s = min(next_boundary_s, adv_window_end_s.min())
    return next_boundary_s


@njit(cache=True, nogil=True)
def clear_requests_nb(order, req, bids, mechanism, targeting, deals, book, caps, users, sellers,
                      bid_book, result, passed_worst):
    """Clear requests order[0], order[1], ... (time-sorted) against nc campaigns and the
    rest of the market.

    order: the requests to clear, in time order (all of a tick's, or a shard's: see
    rtb/shards.py); bids are indexed by request, result by position in order (result[k]
    is request order[k]'s). passed_worst i8[nc] adds, per campaign, the worst cost of
    each bid whose budget check passed: from it rtb/shards.py tells whether the order
    of the checks could have mattered.

    bids f8[n, nc]: each campaign's strategy's bid per request (NaN = none), one row
    per request. A bid is a candidate if the campaign targets the request, brand safety
    allows the pair, pacing lets it through and it meets the floor (a deal bid: the deal
    floor); the first of these tests that fails is the bid's outcome. Candidates are ranked: deal bids first (see
    Deals), then by bid; campaigns beat the market on equal bids (as in the iPinYou
    protocol, where bid >= market price wins) and among campaigns the lowest index
    wins. Walking down the ranking, the first candidate whose campaign can pay its
    whole bid plus fees and data from both its total and daily budget, and whose own
    and advertiser's caps are not reached, wins. Candidates ranked above the winner
    lost as out_of_budget or frequency_capped; those below it lost to a higher bid, or
    to the market if the market won. Budgets and caps are checked only down to the
    winner and the bid that sets its price: a few reads of the dense u1 counters per
    request instead of one per campaign. Budgets reset at UTC midnight and calendar
    caps at their window boundary at the exact request time, even inside a tick.

    A request whose user is a no-id row (u >= users.no_id_row: no consent, see
    dmp/identity.py) is never capped and writes no per-user row: each impression on
    it is one more id reached, with no earlier exposure and no touch (NO_TOUCH).

    floor_hit: a request the open-auction floor acted on (not carrying a private deal,
    not sold through its deal): in second price, sold at exactly the floor, or, in
    either auction, unsold though bids came, the highest below the floor (the market's
    bid, or a bid of a campaign that targets the request, whether or not pacing,
    budget or caps then let it in).

    A request's targeting is row target_row of the targeting tables (its slot's, or
    the slot's anonymous row). sellers[request's publisher, campaign] counts the wins
    and their media cost, and the bids the request's anonymity hid from domain
    targeting (slot_hidden_words; they count as not_targeted, like any bid outside
    targeting). bid_book, when given (None compiles a kernel without any of its work),
    counts the bids pacing let through per (publisher, campaign), sums them as they
    compete and bins them per (publisher, advertiser) (BidBook).
    """
    # Unpack once: an array read out of a tuple inside the loop may cost a
    # reference-count update each time. For the same reason the loop calls no
    # function that takes arrays (but on rare boundaries): such calls kept atomic
    # reference counting in the loop, which cost more than the auction.
    time_s, user, user_row, row, floor_cpm, market_cpm = req.time_s, req.user, req.user_row, req.target_row, req.floor_cpm, req.market_cpm
    u_pace, deal, publisher = req.u_pace, req.deal, req.publisher
    slot_words, slot_blocked_words, user_words = targeting.slot_words, targeting.slot_blocked_words, targeting.user_words
    slot_hidden_words = targeting.slot_hidden_words
    flight_start_s, flight_end_s = targeting.flight_start_s, targeting.flight_end_s
    pace_share, pace_offset = targeting.pace_share, targeting.pace_offset
    deal_floor, deal_fixed, deal_private, deal_allowed = deals
    remaining_total, remaining_daily = book.remaining_total, book.remaining_daily
    fee_ppm, data_micros, outcomes = book.dsp_fee_ppm, book.data_micros, book.outcomes
    media_micros, fee_micros, data_cost_micros = book.media_micros, book.fee_micros, book.data_cost_micros
    reach, advertiser = book.reach, book.advertiser
    cap_kind, cap_limit, cap_window_s = caps.kind, caps.limit, caps.window_s
    calendar_limit, ring_start = caps.calendar_limit, caps.ring_start
    counts, ring_low, ring_high, cal_col = caps.counts, caps.ring_low, caps.ring_high, caps.cal_col
    adv_kind, adv_limit, adv_counts, adv_col = caps.adv_kind, caps.adv_limit, caps.adv_counts, caps.adv_col
    exposures, touch_low, touch_high, no_id_row = users.exposures, users.touch_low, users.touch_high, users.no_id_row
    touch_bits, touch_rank, touch_campaign = users.touch_bits, users.touch_rank, users.touch_campaign
    winner, price_cpm, prior_exposures, deal_won = result.winner, result.price_cpm, result.prior_exposures, result.deal_won
    open_auction, floor_hit = result.open_auction, result.floor_hit
    prior_touch, replaced_slot, replaced_value = result.prior_touch, result.replaced_slot, result.replaced_value
    seller_wins, seller_media, seller_hidden = sellers.wins, sellers.media_micros, sellers.hidden_bids

    nc = bids.shape[1]
    n_words = slot_blocked_words.shape[1]
    bid_bits = bids.view(np.int64)
    keys = np.empty(nc, np.int64)  # the request's candidates' rank keys, NO_KEY for the rest
    has_blocks = False  # most markets block nothing: their requests skip the block test
    has_hidden = False  # nor hide domains from domain targeting
    for r in range(slot_blocked_words.shape[0]):
        for w in range(n_words):
            has_blocks = has_blocks or slot_blocked_words[r, w] != 0
            has_hidden = has_hidden or slot_hidden_words[r, w] != 0
    targets = np.zeros(n_words * 64, np.int64)  # the request's targeting bits
    shifts = np.arange(64)
    # Per-campaign counts over the tick; the pre-auction outcomes are their
    # differences (the tests are nested).
    n_bids = np.zeros(nc, np.int64)
    n_targeted = np.zeros(nc, np.int64)
    n_blocked = np.zeros(nc, np.int64)
    n_paced_in = np.zeros(nc, np.int64)
    if bid_book is not None:
        # Bids paced in, counted and summed per (publisher, campaign) in rows of the
        # tick's own (row k: the tick's k-th publisher), added to the book at the end:
        # the pass writes only arrays it allocated (writing the book there would make
        # the compiler check it against every array the pass reads, at each request).
        book_bids, book_bid_sum, bid_bins = bid_book.bids, bid_book.bid_sum_cpm, bid_book.bins
        n_adv_bins = bid_bins.shape[0] // book_bids.shape[0]
        tick_row = np.full(book_bids.shape[0], -1, np.int64)
        n_tick_publishers = 0
        for i in order:
            if tick_row[publisher[i]] < 0:
                tick_row[publisher[i]] = n_tick_publishers
                n_tick_publishers += 1
        paced_in_by = np.zeros((n_tick_publishers, nc), np.int64)
        bid_sum_by = np.zeros((n_tick_publishers, nc))
        paced = np.zeros(n_words * 64, np.int64)  # the request's bids paced in, for the bins
    n_below_deal = np.zeros(nc, np.int64)
    n_candidates = np.zeros(nc, np.int64)
    lost_to_market = np.zeros(nc, np.int64)
    decided_before = (outcomes[:, T.LOSS_OUT_OF_BUDGET] + outcomes[:, T.LOSS_FREQUENCY_CAPPED]
                      + outcomes[:, T.WON])
    n_order = order.size
    scattered = n_order < bids.shape[0]  # a shard: its requests are spread over the tick
    next_boundary_s = -np.inf
    for ii in range(n_order):
        i = order[ii]
        u = user[i]
        ur = user_row[i]  # its row in the books (rtb.state.UserRows)
        has_id = u < no_id_row  # a request without an id (no consent) has no caps, no rows
        t = time_s[i]
        if t >= next_boundary_s:
            # A new UTC day restores daily budgets; a new calendar window clears its
            # caps: exactly at the boundary, even inside a tick.
            next_boundary_s = cross_boundaries_nb(t, book, caps)

        if scattered and ii + 2 * PREFETCH_AHEAD < n_order:
            # A shard's later request: its fields and bids, then (below) its user's rows.
            j = order[ii + 2 * PREFETCH_AHEAD]
            prefetch_row(bids, j)
            prefetch_item(user, j)
            prefetch_item(user_row, j)
            prefetch_item(time_s, j)
            prefetch_item(row, j)
            prefetch_item(floor_cpm, j)
            prefetch_item(market_cpm, j)
            prefetch_item(u_pace, j)
            prefetch_item(deal, j)
            prefetch_item(publisher, j)
        if ii + PREFETCH_AHEAD < n_order:
            # The user rows a later request will read: by then they are in cache.
            v = order[ii + PREFETCH_AHEAD]
            prefetch_row(user_words, user[v])
            # The user's whole row (rtb/layout.py), from its first column on.
            prefetch_stride(ring_low, user_row[v])
        floor = floor_cpm[i]
        d = deal[i]
        has_deal = d >= 0
        dd = d if has_deal else 0
        private = has_deal and deal_private[dd]
        s = row[i]
        p = publisher[i]
        if bid_book is not None:
            k_pub = tick_row[p]
        for w in range(n_words):
            word = np.int64(slot_words[s, w] & user_words[u, w])
            for k in range(min(64, nc - w * 64)):
                targets[w * 64 + k] = (word >> shifts[k]) & 1
        if has_blocks:
            # Brand-safety blocks (rare): bids that pass every other test of targeting.
            for w in range(n_words):
                blocked = slot_blocked_words[s, w] & user_words[u, w]
                c = w * 64
                while blocked != 0:
                    if blocked & np.uint64(1):
                        n_blocked[c] += ((bids[i, c] >= 0.0) & (t >= flight_start_s[c])
                                         & (t < flight_end_s[c]) & ((not private) or deal_allowed[dd, c]))
                    blocked >>= np.uint64(1)
                    c += 1
        if has_hidden:
            # Domain targeting that the request's anonymity hides (rare): bids targeted
            # in every other way, counted for the publisher.
            for w in range(n_words):
                hidden = slot_hidden_words[s, w] & user_words[u, w]
                c = w * 64
                while hidden != 0:
                    if hidden & np.uint64(1):
                        seller_hidden[p, c] += ((bids[i, c] >= 0.0) & (t >= flight_start_s[c])
                                                & (t < flight_end_s[c])
                                                & ((not private) or deal_allowed[dd, c]))
                    hidden >>= np.uint64(1)
                    c += 1
        up = u_pace[i]
        top = np.int64(NO_KEY)  # the row's best key, found during the pass
        # Every campaign's tests that read no running state, as one branch-free pass
        # over the row (SIMD): targeting bit, flight, pacing, floors (a deal bid: the
        # deal floor); counted, and the candidates keyed. Rows without a deal, most of
        # them, take a shorter pass.
        if has_deal:
            dfloor = deal_floor[dd]
            for c in range(nc):
                b = bids[i, c]
                has_bid = b >= 0.0  # NaN compares false
                allowed = deal_allowed[dd, c]
                targeted = (has_bid & (targets[c] != 0) & (t >= flight_start_s[c])
                            & (t < flight_end_s[c]) & (allowed | (not private)))
                x = up + pace_offset[c]
                x = x - 1.0 if x >= 1.0 else x
                paced_in = targeted & (x < pace_share[c])
                in_deal = paced_in & allowed & (b >= dfloor)
                in_open = paced_in & (not private) & (not in_deal) & (b >= floor)
                n_bids[c] += has_bid
                n_targeted[c] += targeted
                if bid_book is not None:
                    paced_in_by[k_pub, c] += paced_in
                    value = b if b < T.MAX_BID_CPM else T.MAX_BID_CPM
                    bid_sum_by[k_pub, c] += value if paced_in else 0.0
                    paced[c] = paced_in
                else:
                    n_paced_in[c] += paced_in
                n_below_deal[c] += paced_in & private & (not in_deal)
                n_candidates[c] += in_deal | in_open
                key = bid_bits[i, c]
                key = key if key > 0 else 0  # -0.0's bits are negative
                key = key if key < MAX_BID_KEY else MAX_BID_KEY
                open_key = key + OPEN_KEY_BASE if in_open else NO_KEY
                key = key if in_deal else open_key
                keys[c] = key
                top = key if key > top else top
        else:
            for c in range(nc):
                b = bids[i, c]
                has_bid = b >= 0.0
                targeted = (has_bid & (targets[c] != 0) & (t >= flight_start_s[c])
                            & (t < flight_end_s[c]))
                x = up + pace_offset[c]
                x = x - 1.0 if x >= 1.0 else x
                paced_in = targeted & (x < pace_share[c])
                in_open = paced_in & (b >= floor)
                n_bids[c] += has_bid
                n_targeted[c] += targeted
                if bid_book is not None:
                    paced_in_by[k_pub, c] += paced_in
                    value = b if b < T.MAX_BID_CPM else T.MAX_BID_CPM
                    bid_sum_by[k_pub, c] += value if paced_in else 0.0
                    paced[c] = paced_in
                else:
                    n_paced_in[c] += paced_in
                n_candidates[c] += in_open
                key = bid_bits[i, c]
                key = key if key > 0 else 0
                key = key if key < MAX_BID_KEY else MAX_BID_KEY
                key = key + OPEN_KEY_BASE if in_open else NO_KEY
                keys[c] = key
                top = key if key > top else top

        if bid_book is not None:
            # The bids paced in, each in its bin (BidBook): a bit per campaign, then
            # only the set bits visited.
            cell = p * n_adv_bins
            for w in range(n_words):
                word = np.uint64(0)
                for k in range(min(64, nc - w * 64)):
                    word |= np.uint64(paced[w * 64 + k]) << np.uint64(k)
                while word != 0:
                    c = w * 64 + np.int64(trailing_zeros(word))
                    word &= word - np.uint64(1)
                    key = bid_bits[i, c]
                    key = key if key > 0 else 0
                    key = key if key < MAX_BID_KEY else MAX_BID_KEY
                    b_bin = (key >> BID_BIN_SHIFT) - BID_BIN_BASE + 1
                    bid_bins[cell + advertiser[c], b_bin if b_bin > 0 else 0] += 1

        market = market_cpm[i]
        market_in = (not private) and market >= floor  # NaN compares false: no market bid
        reserve = max(market, floor) if market_in else floor
        leader = T.UNSOLD
        price = 0.0
        deal_won[ii] = False
        # Walk down the candidates, best first, checking budgets and caps as we go.
        seek = SEEK_WINNER
        first_step = True
        while seek != FOUND:
            # The best key left: the pass found the first; later ones take a max (SIMD).
            best = top
            if not first_step:
                best = np.int64(NO_KEY)
                for c in range(nc):
                    key = keys[c]
                    best = key if key > best else best
            first_step = False
            j = -1
            b = -1.0
            is_deal = best >= 0
            if best != NO_KEY:
                j = 0
                while keys[j] != best:
                    j += 1
                b = _bid_value_nb(bids[i, j])
            # Does the walk stop here (nothing left that matters)?
            if seek == SEEK_WINNER:
                if j < 0 or (market_in and not is_deal and b < market):
                    if market_in:
                        leader = T.MARKET
                        price = market
                        if mechanism == T.MECHANISM_SECOND:
                            seek = SEEK_MARKET_PRICE
                            continue
                    break
            elif seek == SEEK_DEAL_PRICE:
                if j < 0 or not is_deal or b <= deal_floor[dd]:
                    price = deal_floor[dd]
                    break
            elif seek == SEEK_OPEN_PRICE:
                if j < 0 or b <= reserve:
                    price = reserve
                    break
            elif j < 0 or b <= floor:  # SEEK_MARKET_PRICE
                price = floor
                break
            # Can campaign j pay its whole bid, and are its caps open?
            reason = -1
            # The whole bid's worst cost, as a win at this bid would be charged (micros
            # <= 1e12 and fees <= 100 %, so no product overflows).
            micros = np.int64(b * T.MICROS_PER_CPM + 0.5)  # = cpm_to_micros(b)
            worst = micros + micros * fee_ppm[j] // T.PPM + data_micros[j]
            if worst > remaining_total[j] or worst > remaining_daily[j]:
                reason = T.LOSS_OUT_OF_BUDGET
            else:
                passed_worst[j] += worst
                if has_id and (counts[ur, cal_col[j]] >= calendar_limit[j]
                               or adv_counts[ur, adv_col[advertiser[j]]] >= adv_limit[advertiser[j]]):
                    reason = T.LOSS_FREQUENCY_CAPPED
                elif has_id and cap_kind[j] == T.CAP_ROLLING:
                    # Capped when even the oldest of the last `limit` impressions is in the window.
                    first = ring_start[j]
                    oldest = read_split(ring_low, ring_high, ur, first)
                    for r in range(first + 1, first + cap_limit[j]):
                        oldest = min(oldest, read_split(ring_low, ring_high, ur, r))
                    if ring_time_s(oldest) > t - cap_window_s[j]:
                        reason = T.LOSS_FREQUENCY_CAPPED
            keys[j] = NO_KEY
            if reason >= 0:
                if seek == SEEK_WINNER:
                    outcomes[j, reason] += 1
                elif seek == SEEK_MARKET_PRICE:
                    lost_to_market[j] += 1
                continue
            if seek != SEEK_WINNER:
                price = b
                if seek == SEEK_MARKET_PRICE:
                    lost_to_market[j] += 1
                break
            leader = j
            deal_won[ii] = is_deal
            if is_deal and deal_fixed[dd]:
                price = deal_floor[dd]
                seek = FOUND
            elif mechanism == T.MECHANISM_FIRST:
                price = b
                seek = FOUND
            else:
                seek = SEEK_DEAL_PRICE if is_deal else SEEK_OPEN_PRICE
        if leader == T.MARKET:
            for c in range(nc):
                lost_to_market[c] += keys[c] != NO_KEY

        winner[ii] = leader
        price_cpm[ii] = price
        in_play = (not private) and (not deal_won[ii])
        open_auction[ii] = in_play
        if leader == T.UNSOLD:
            # Unsold: did bids come, all below the floor? Only these requests pay for
            # a second look at the targeted campaigns' bids.
            hit = in_play
            if hit:
                top_bid = market if market >= 0.0 else -1.0  # NaN compares false
                for c in range(nc):  # branch-free: bids are random
                    b = bids[i, c]
                    targeted = (targets[c] != 0) & (t >= flight_start_s[c]) & (t < flight_end_s[c])
                    b = b if targeted else -1.0
                    top_bid = b if b > top_bid else top_bid  # NaN compares false
                hit = 0.0 <= top_bid < floor
            floor_hit[ii] = hit
        else:
            floor_hit[ii] = in_play and mechanism == T.MECHANISM_SECOND and price == floor
        if leader < 0:
            continue

        c = leader
        outcomes[c, T.WON] += 1
        media = np.int64(price * T.MICROS_PER_CPM + 0.5)
        fee = media * fee_ppm[c] // T.PPM
        cost = media + fee + data_micros[c]
        remaining_total[c] -= cost
        remaining_daily[c] -= cost
        media_micros[c] += media
        seller_wins[p, c] += 1
        seller_media[p, c] += media
        fee_micros[c] += fee
        data_cost_micros[c] += data_micros[c]
        a = advertiser[c]
        if not has_id:
            # No id: one more id reached, never seen before, no touch to attribute to.
            prior_exposures[ii] = 0
            reach[c] += 1
            prior_touch[ii] = NO_TOUCH
            continue
        if cap_kind[c] == T.CAP_CALENDAR:
            counts[ur, cal_col[c]] += 1
        elif cap_kind[c] == T.CAP_ROLLING:
            # Overwrite the oldest of the pair's last `limit` impression times.
            first = ring_start[c]
            oldest = first
            oldest_value = read_split(ring_low, ring_high, ur, first)
            for r in range(first + 1, first + cap_limit[c]):
                value = read_split(ring_low, ring_high, ur, r)
                if value < oldest_value:
                    oldest, oldest_value = r, value
            replaced_slot[ii] = oldest
            replaced_value[ii] = oldest_value
            write_split(ring_low, ring_high, ur, oldest, ring_value(t))
        if adv_kind[a] == T.CAP_CALENDAR:
            adv_counts[ur, adv_col[a]] += 1
        seen = exposures[ur, c]
        prior_exposures[ii] = seen
        reach[c] += seen == 0
        exposures[ur, c] = seen + (seen < 255)
        prior_touch[ii] = wide_touch(read_split(touch_low, touch_high, ur, a), a, touch_bits,
                                     touch_campaign)
        write_split(touch_low, touch_high, ur, a, book_touch(t, c, touch_bits, touch_rank))

    if bid_book is not None:
        for p in range(book_bids.shape[0]):
            k = tick_row[p]
            if k >= 0:
                for c in range(nc):
                    n_paced_in[c] += paced_in_by[k, c]
                    book_bids[p, c] += paced_in_by[k, c]
                    book_bid_sum[p, c] += bid_sum_by[k, c]
    # Each bid's outcome: the pre-auction tests' from the nested counts; candidates
    # not checked out, not won and not lost to the market lost to a higher bid.
    decided = (outcomes[:, T.LOSS_OUT_OF_BUDGET] + outcomes[:, T.LOSS_FREQUENCY_CAPPED]
               + outcomes[:, T.WON]) - decided_before
    outcomes[:, T.OUTCOME_NOT_TARGETED] += n_bids - n_targeted - n_blocked
    outcomes[:, T.OUTCOME_BLOCKED] += n_blocked
    outcomes[:, T.OUTCOME_PACED] += n_targeted - n_paced_in
    outcomes[:, T.LOSS_BELOW_DEAL_FLOOR] += n_below_deal
    outcomes[:, T.LOSS_BELOW_FLOOR] += n_paced_in - n_below_deal - n_candidates
    outcomes[:, T.LOSS_LOST_TO_MARKET] += lost_to_market
    outcomes[:, T.LOSS_LOST_TO_BID] += n_candidates - decided - lost_to_market
