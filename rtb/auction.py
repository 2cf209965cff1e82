"""Auction clearing: the public clear() and the numba kernels (*_nb) beside it."""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from rtb import types as T

Mechanism = Literal["first", "second"]


def clear(
    bids: np.ndarray,
    floor_cpm: np.ndarray | float,
    *,
    mechanism: Mechanism = "second",
    soft_floor_cpm: np.ndarray | float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Clear a batch of independent sealed-bid auctions, one per row of `bids`.

    Args:
        bids: f8[n_req, n_bidders] CPM bids, NaN = no bid. Other values are not
            scanned (that would cost as much as the auction): every non-NaN value
            is a bid, and one below the floor, e.g. a negative one, cannot win.
        floor_cpm: f8[n_req] hard floors, or one float for every row; finite and
            >= 0. A bid below the hard floor cannot win; a bid equal to it can.
        mechanism: "second" (the winner pays max(second-highest bid, floor),
            never more than its own bid) or "first" (the winner pays its bid).
        soft_floor_cpm: f8[n_req] soft floors, or one float, finite and >=
            floor_cpm; None means none (the same as soft = hard). A top bid in
            [hard, soft) wins and pays its own bid; a top bid >= soft clears by
            `mechanism` with the soft floor as the reserve.

    Returns:
        (winner, price_cpm): i4[n_req] column of the winning bidder, UNSOLD (-1)
        when no bid reaches the floor; f8[n_req] price paid, 0.0 when unsold.

    Ties: columns are scanned in index order and the leader changes only on a
    strictly greater bid, so among equal top bids the lowest column wins. The
    second-highest bid then equals the top bid, so in second price the winner
    pays its own bid.

    Raises:
        ValueError: bids not 2-D; a floor of the wrong shape; a NaN, negative or
            infinite floor; a soft floor below the hard floor; unknown mechanism.
    """
    bids = np.asarray(bids, dtype=T.F8)
    if bids.ndim != 2:
        raise ValueError(
            f"bids must be 2-D [n_req, n_bidders], got {bids.ndim}-D shape {bids.shape}"
        )
    # The kernel is compiled for C-contiguous rows; a copy only when they are not.
    bids = np.ascontiguousarray(bids)
    n_req = bids.shape[0]
    if not isinstance(mechanism, str) or mechanism not in T.MECHANISMS:
        raise ValueError(
            f"unknown mechanism {mechanism!r}; expected one of {sorted(T.MECHANISMS)}"
        )
    floor = _floor_array("floor_cpm", floor_cpm, n_req)
    if soft_floor_cpm is None:
        soft = floor
    else:
        soft = _floor_array("soft_floor_cpm", soft_floor_cpm, n_req)
        below = np.less(soft, floor)
        if below.any():
            i = int(np.argmax(below))
            raise ValueError(
                f"soft_floor_cpm[{i}] = {float(soft[i])} is below"
                f" floor_cpm[{i}] = {float(floor[i])}"
            )
    winner = np.empty(n_req, dtype=T.I4)
    price_cpm = np.empty(n_req, dtype=T.F8)
    clear_nb(bids, floor, soft, T.MECHANISMS[mechanism], winner, price_cpm)
    return winner, price_cpm


def _floor_array(name: str, value: np.ndarray | float, n_req: int) -> np.ndarray:
    """`value` as a contiguous f8[n_req] (a scalar repeated); ValueError unless finite, >= 0."""
    floor = np.asarray(value, dtype=T.F8)
    if floor.ndim == 0:
        floor = np.full(n_req, floor, dtype=T.F8)
    elif floor.shape != (n_req,):
        raise ValueError(
            f"{name} must be a float or have shape ({n_req},) to match bids,"
            f" got shape {floor.shape}"
        )
    floor = np.ascontiguousarray(floor)
    # min and max propagate NaN, so two reductions (no temporaries) catch every bad
    # floor; the slower search for the first culprit runs only to word the error.
    if n_req and not (floor.min() >= 0.0 and floor.max() < np.inf):
        i = int(np.argmax(~((floor >= 0.0) & (floor < np.inf))))
        raise ValueError(f"{name}[{i}] = {float(floor[i])}: floors must be finite and >= 0")
    return floor


@njit(cache=True)
def clear_nb(bids, floor_cpm, soft_floor_cpm, mechanism_code, winner_out, price_out):
    """Kernel of clear() on validated arrays: fills winner_out i4[n] and price_out f8[n].

    soft_floor_cpm may be floor_cpm itself (no soft floor); mechanism_code is a
    value of types.MECHANISMS.
    """
    n_req, n_bidders = bids.shape
    for i in range(n_req):
        best = -np.inf
        second = -np.inf
        leader = T.UNSOLD
        for j in range(n_bidders):
            b = bids[i, j]
            # Selects on one comparison, which LLVM compiles without branches: an
            # if/elif scan mispredicts on random bids and ran 2-7x slower at 8-128
            # bidders (docs/auction.md). Strictly greater: among equal bids the lower
            # column stays the leader, and the tie makes `second` equal to `best`.
            # NaN compares false, so a NaN bid leaves `best` and `leader` alone and
            # its `lo` (NaN) fails `lo > second`: no separate NaN test needed.
            gt = b > best
            lo = best if gt else b  # the lower of (best, b)
            second = lo if lo > second else second
            leader = j if gt else leader
            best = b if gt else best
        if mechanism_code == T.MECHANISM_FIRST:
            price = best
        else:
            # min(best, max(second, soft)) is the soft-floor rule in one branch-free
            # expression: a top bid below the soft floor pays itself, any other pays
            # max(second, soft), which is then <= best.
            reserve = soft_floor_cpm[i]
            cap = second if second > reserve else reserve
            price = best if best < cap else cap
        # best is -inf when nobody bid and floors are >= 0: `sold` implies a bidder.
        sold = best >= floor_cpm[i]
        winner_out[i] = leader if sold else T.UNSOLD
        # A 0/1 multiply instead of a select, which LLVM compiled to a mispredicting
        # branch; the max(, 0) keeps an unsold row's price (maybe -inf) finite.
        price_out[i] = (price if price > 0.0 else 0.0) * sold


# ---- public clear() and its kernels (issue 3) go above this line ----

# ---- simulation tick kernel ----
#
# One call per tick clears a whole batch of requests in time order, so a budget or a
# frequency cap that runs out inside the tick is exact. State lives in plain arrays
# grouped in NamedTuples (numba reads them as tuples of arrays); the kernel updates
# them in place and never draws random numbers.


class TickRequests(NamedTuple):
    """One tick's requests, sorted by time (all arrays [n])."""

    time_s: np.ndarray  # f8: seconds since the simulation start
    user: np.ndarray  # i8
    slot: np.ndarray  # i8
    floor_cpm: np.ndarray  # f8: the open auction's floor
    market_cpm: np.ndarray  # f8: the rest of the market's best bid, NaN = none
    u_pace: np.ndarray  # f8: uniform for pacing throttles
    deal: np.ndarray  # i4: private-marketplace deal on offer, -1 = none


class Targeting(NamedTuple):
    """Who may bid on what, as campaign bitsets: bit c of word c // 64 is campaign c.

    A request's eligible campaigns are slot_words[slot] & user_words[user], a few word
    operations per request instead of several lookups per (request, campaign).
    """

    slot_words: np.ndarray  # u8[n_slot, n_words]: format, device, category, brand safety
    user_words: np.ndarray  # u8[n_users, n_words]: geo and segments (matched, consented)
    flight_start_s: np.ndarray  # f8[nc]
    flight_end_s: np.ndarray  # f8[nc]
    pace_share: np.ndarray  # f8[nc]: share of eligible requests the campaign bids on
    pace_offset: np.ndarray  # f8[nc]: fixed per campaign: rotates the shared pacing uniform


def campaign_words(ok: np.ndarray) -> np.ndarray:
    """Pack bool[rows, nc] into u8[rows, ceil(nc / 64)] campaign bitsets."""
    rows, nc = ok.shape
    words = np.zeros((rows, max(1, -(-nc // 64))), dtype=np.uint64)
    for c in range(nc):
        words[:, c // 64] |= ok[:, c].astype(np.uint64) << np.uint64(c % 64)
    return words


class Deals(NamedTuple):
    """Private-marketplace deals (index = deal id in TickRequests.deal).

    A deal bid is a bid by an allowed campaign at or above the deal's floor (for a
    fixed-price deal, the fixed price). Deal bids are cleared first, among themselves;
    the winner pays the fixed price, or in second price max(second deal bid, deal
    floor). A private deal admits only deal bids; an open one falls back to the open
    auction (other campaigns and the market) when no deal bid comes.
    """

    floor_cpm: np.ndarray  # f8[nd]: deal floor, or the fixed price
    fixed: np.ndarray  # bool[nd]: the winner pays floor_cpm exactly
    private: np.ndarray  # bool[nd]
    allowed: np.ndarray  # bool[nd, nc]: campaigns (their DSPs/advertisers) admitted


def no_deals(nc: int) -> Deals:
    return Deals(np.zeros(1), np.zeros(1, np.bool_), np.zeros(1, np.bool_),
                 np.zeros((1, nc), np.bool_))


class CampaignBook(NamedTuple):
    """Per-campaign parameters and running money state (index = campaign)."""

    advertiser: np.ndarray  # i4[nc]
    dsp_fee_ppm: np.ndarray  # i8[nc]: DSP fee on media cost, parts per million
    data_micros: np.ndarray  # i8[nc]: data cost of one impression
    remaining_total: np.ndarray  # i8[nc]: micros the campaign may still spend
    remaining_daily: np.ndarray  # i8[nc]: micros it may still spend today
    daily_budget: np.ndarray  # i8[nc]: restored at each UTC midnight
    day_end_s: np.ndarray  # f8[nc]: the next UTC midnight, seconds since the start
    media_micros: np.ndarray  # i8[nc]: accumulated clearing prices paid
    fee_micros: np.ndarray  # i8[nc]: accumulated DSP fees
    data_cost_micros: np.ndarray  # i8[nc]: accumulated data costs
    outcomes: np.ndarray  # i8[nc, N_OUTCOMES]: what became of each bid (types.OUTCOME_NAMES)
    reach: np.ndarray  # i8[nc]: distinct users reached


class CapBook(NamedTuple):
    """Frequency caps per (user, campaign) and per (user, advertiser).

    Calendar caps count impressions per window in u1 counters, one row per user (one
    byte per pair: 10 million users x 100 campaigns is 1 GB), so a request's checks
    touch one row. Windows are aligned to UTC epoch time: caps with the same window
    length share boundaries and are cleared together in one pass. Rolling caps keep
    each pair's last `limit` impression times.
    """

    kind: np.ndarray  # i1[nc]: CAP_NONE / CAP_CALENDAR / CAP_ROLLING
    limit: np.ndarray  # i4[nc]: impressions allowed per window
    window_s: np.ndarray  # f8[nc]
    calendar_limit: np.ndarray  # i4[nc]: `limit` for calendar caps, 256 (never reached) otherwise
    window_end_s: np.ndarray  # f8[nc]: when the calendar window's counts expire; inf if none
    ring_start: np.ndarray  # i4[nc]: rolling caps: first column of the campaign's ring in `times`
    counts: np.ndarray  # u1[n_users, nc]: impressions in the current calendar window
    times: np.ndarray  # f8[n_users, n_ring]: the `limit` latest impression times per pair
    adv_kind: np.ndarray  # i1[n_adv]: CAP_NONE / CAP_CALENDAR (advertiser caps are calendar)
    adv_limit: np.ndarray  # i4[n_adv]: 256 where none
    adv_window_s: np.ndarray  # f8[n_adv]
    adv_window_end_s: np.ndarray  # f8[n_adv]; inf if none
    adv_counts: np.ndarray  # u1[n_users, n_adv]


class UserBook(NamedTuple):
    """Per-user state the kernel updates: exposures (reach, fatigue) and last touches."""

    exposures: np.ndarray  # u1[n_users, nc], saturating at 255
    last_touch: np.ndarray  # i8[n_users, n_adv]: encode_touch(time, campaign) of the last
    # impression of each advertiser, -1 = none; one array so a win costs one cache miss


TOUCH_CAMPAIGN_BITS = 16  # campaigns per scenario < 65536


@njit(cache=True, inline="always")
def encode_touch(time_s, campaign):
    """Pack (time in whole milliseconds, campaign) in one int64; ordered by time."""
    return (np.int64(time_s * 1000.0) << TOUCH_CAMPAIGN_BITS) | campaign


class TickResult(NamedTuple):
    winner: np.ndarray  # i4[n]: campaign index, MARKET or UNSOLD
    price_cpm: np.ndarray  # f8[n]: 0 when unsold
    prior_exposures: np.ndarray  # u1[n]: for campaign wins, the user's earlier exposures
    deal_won: np.ndarray  # bool[n]: the impression went through its deal


@intrinsic
def _cttz_u8(typingctx, word):
    """LLVM's count-trailing-zeros on a uint64 (one instruction)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

    return sig, codegen


@njit(cache=True, inline="always")
def _lowest_bit_nb(word):
    """Index of the lowest set bit of a non-zero uint64."""
    return np.int64(_cttz_u8(word))


@njit(cache=True)
def _next_calendar_window_nb(kind, window_s, window_end_s, counts, c, t):
    """Start the window containing t for every calendar cap with c's window length."""
    end = window_end_s[c]
    while t >= end:
        end += window_s[c]
    members = np.flatnonzero((kind == T.CAP_CALENDAR) & (window_s == window_s[c]))
    for u in range(counts.shape[0]):
        for col in members:
            counts[u, col] = 0
    for col in members:
        window_end_s[col] = end


@njit(cache=True, inline="always")
def _rolling_capped_nb(times, first, limit, window_s, u, t):
    """Capped when even the oldest of the last `limit` impressions is inside the window."""
    oldest = times[u, first]
    for k in range(first + 1, first + limit):
        oldest = min(oldest, times[u, k])
    return oldest > t - window_s


@njit(cache=True, inline="always")
def _record_rolling_nb(times, first, limit, u, t):
    oldest = first
    for k in range(first + 1, first + limit):
        if times[u, k] < times[u, oldest]:
            oldest = k
    times[u, oldest] = t


@njit(cache=True)
def _budget_threshold_nb(remaining_total, remaining_daily, fee_ppm, data_micros):
    """One more than the largest bid (micros) whose worst-case cost the budgets cover.

    cost(x) = x + x * fee // PPM + data grows with x, so "the campaign can pay its
    whole bid" is micros(bid) < threshold. It is compared as a float with the same
    operations that round a bid to micros, so the test is exact.
    """
    # 2**43 micros is more than any bid can cost (MAX_BID_CPM is 1e12 micros) and keeps
    # x * fee_ppm below 2**63.
    budget = min(remaining_total, remaining_daily, np.int64(1) << 43) - data_micros
    if budget < 0:
        return 0.0
    x = np.int64(budget / (1.0 + fee_ppm / T.PPM))
    while x + 1 + (x + 1) * fee_ppm // T.PPM <= budget:
        x += 1
    while x >= 0 and x + x * fee_ppm // T.PPM > budget:
        x -= 1
    return float(x + 1)


@njit(cache=True, inline="always")
def _top_two_nb(values, count, best, second, leader, market_leads):
    """Fold the first `count` (candidate, value) pairs into a running top two.

    Ties: the earlier candidate (lower campaign index) keeps the lead, except over
    the market, which any campaign bid equal to it displaces.
    """
    for j in range(count):
        v = values[j]
        take = (v > best) | ((v == best) & market_leads)
        second = best if take else max(second, v)
        best = v if take else best
        market_leads = market_leads & (not take)
        leader = j if take else leader
    return best, second, leader, market_leads


@njit(cache=True)
def clear_tick_nb(req, bids, mechanism, targeting, deals, book, caps, users, result):
    """Clear n requests in time order against nc campaigns and the rest of the market.

    bids f8[nc, n]: each campaign's strategy's bid per request (NaN = none), one row
    per campaign. A bid takes part if the campaign targets the request (slot, user,
    flight; deals may restrict it), pacing lets it through, it meets the floor (the
    deal floor for a deal bid), the campaign can pay its whole bid plus fees and data
    from both its total and daily budget, and neither the campaign's nor the
    advertiser's cap is reached; the first test that fails is the bid's outcome.
    Deal bids clear first (see Deals). Ties: campaigns beat the market on equal bids
    (as in the iPinYou protocol, where bid >= market price wins); among campaigns the
    lowest index wins. Budgets reset at UTC midnight and calendar caps at their
    window boundary at the exact request time, even inside a tick.
    """
    # Unpack once: an array read out of a tuple inside the loop may cost a
    # reference-count update each time.
    time_s, user, slot, floor_cpm, market_cpm, u_pace, deal = req
    slot_words, user_words, flight_start_s, flight_end_s, pace_share, pace_offset = targeting
    deal_floor, deal_fixed, deal_private, deal_allowed = deals
    remaining_total, remaining_daily = book.remaining_total, book.remaining_daily
    daily_budget, day_end_s = book.daily_budget, book.day_end_s
    fee_ppm, data_micros, outcomes = book.dsp_fee_ppm, book.data_micros, book.outcomes
    media_micros, fee_micros, data_cost_micros = book.media_micros, book.fee_micros, book.data_cost_micros
    reach, advertiser = book.reach, book.advertiser
    cap_kind, cap_limit, cap_window_s = caps.kind, caps.limit, caps.window_s
    calendar_limit, window_end_s, ring_start = caps.calendar_limit, caps.window_end_s, caps.ring_start
    counts, times = caps.counts, caps.times
    adv_kind, adv_limit, adv_window_s = caps.adv_kind, caps.adv_limit, caps.adv_window_s
    adv_window_end_s, adv_counts = caps.adv_window_end_s, caps.adv_counts
    exposures, last_touch = users.exposures, users.last_touch
    winner, price_cpm, prior_exposures, deal_won = result

    nc, n = bids.shape
    n_adv = adv_limit.size
    n_words = slot_words.shape[1]
    threshold = np.empty(nc)
    for c in range(nc):
        threshold[c] = _budget_threshold_nb(remaining_total[c], remaining_daily[c], fee_ppm[c],
                                            data_micros[c])
    # Per-request candidate lists: open-auction and deal candidates, values in index order.
    open_c = np.empty(nc, np.int64)
    open_v = np.empty(nc)
    deal_c = np.empty(nc, np.int64)
    deal_v = np.empty(nc)
    # Outcomes decided during the scan, counted with spare columns for "took part"
    # and "no bid" so that every visited pair adds without a branch.
    TOOK_PART = T.LOSS_FREQUENCY_CAPPED + 1
    NO_BID = TOOK_PART + 1
    early = np.zeros((nc, NO_BID + 1), np.int64)
    next_boundary_s = -np.inf
    for i in range(n):
        u = user[i]
        t = time_s[i]
        if t >= next_boundary_s:
            # A new UTC day restores daily budgets; a new calendar window clears its
            # caps: exactly at the boundary, even inside a tick.
            for c in range(nc):
                if t >= day_end_s[c]:
                    remaining_daily[c] = daily_budget[c]
                    while t >= day_end_s[c]:
                        day_end_s[c] += T.SECONDS_PER_DAY
                    threshold[c] = _budget_threshold_nb(remaining_total[c], remaining_daily[c],
                                                        fee_ppm[c], data_micros[c])
                if t >= window_end_s[c]:
                    _next_calendar_window_nb(cap_kind, cap_window_s, window_end_s, counts, c, t)
            for a in range(n_adv):
                if t >= adv_window_end_s[a]:
                    _next_calendar_window_nb(adv_kind, adv_window_s, adv_window_end_s, adv_counts, a, t)
            next_boundary_s = min(day_end_s.min(), window_end_s.min())
            if n_adv:
                next_boundary_s = min(next_boundary_s, adv_window_end_s.min())

        floor = floor_cpm[i]
        d = deal[i]
        has_deal = d >= 0
        dd = d if has_deal else 0
        private = has_deal and deal_private[dd]
        dfloor = deal_floor[dd] if has_deal else np.inf
        n_open = 0
        n_deal = 0
        # Visit only the campaigns that target the slot and the user (set bits, in
        # increasing index order). Their tests' results are unpredictable, so they
        # are computed together and combined with selects, not branches.
        for w in range(n_words):
            word = slot_words[slot[i], w] & user_words[u, w]
            while word != 0:
                c = w * 64 + _lowest_bit_nb(word)
                word &= word - np.uint64(1)
                b = bids[c, i]
                has_bid = b >= 0.0  # NaN compares false
                b = min(b, T.MAX_BID_CPM) if has_bid else 0.0
                allowed = has_deal & deal_allowed[dd, c]
                targeted = (t >= flight_start_s[c]) & (t < flight_end_s[c]) & (allowed | (not private))
                x = u_pace[i] + pace_offset[c]
                x = x - 1.0 if x >= 1.0 else x
                paced_in = x < pace_share[c]
                in_deal = allowed & (b >= dfloor)
                above_floor = in_deal | ((not private) & (b >= floor))
                affordable = b * T.MICROS_PER_CPM + 0.5 < threshold[c]  # = cpm_to_micros(b) < ...
                a = advertiser[c]
                capped = (counts[u, c] >= calendar_limit[c]) | (adv_counts[u, a] >= adv_limit[a])
                if cap_kind[c] == T.CAP_ROLLING:  # the same for every request: predictable
                    capped |= _rolling_capped_nb(times, ring_start[c], cap_limit[c], cap_window_s[c], u, t)
                ok = has_bid & targeted & paced_in & above_floor & affordable & (not capped)
                outcome = TOOK_PART if ok else T.LOSS_FREQUENCY_CAPPED
                outcome = T.LOSS_OUT_OF_BUDGET if not affordable else outcome
                below = T.LOSS_BELOW_DEAL_FLOOR if private else T.LOSS_BELOW_FLOOR
                outcome = below if not above_floor else outcome
                outcome = T.OUTCOME_PACED if not paced_in else outcome
                outcome = T.OUTCOME_NOT_TARGETED if not targeted else outcome
                early[c, outcome if has_bid else NO_BID] += 1
                open_c[n_open] = c
                open_v[n_open] = b
                n_open += ok & (not in_deal)
                deal_c[n_deal] = c
                deal_v[n_deal] = b
                n_deal += ok & in_deal

        deal_won[i] = False
        if n_deal > 0:
            best, second, j, _ = _top_two_nb(deal_v, n_deal, -1.0, -1.0, -1, False)
            leader = deal_c[j]
            if deal_fixed[dd]:
                price = dfloor
            elif mechanism == T.MECHANISM_FIRST:
                price = best
            else:
                price = max(second, dfloor)
            deal_won[i] = True
            lost = T.LOSS_LOST_TO_BID
        elif private:
            leader = T.UNSOLD
        else:
            market = market_cpm[i]
            market_leads = market >= floor  # NaN compares false: no market bid
            best = market if market_leads else -1.0
            best, second, j, market_leads = _top_two_nb(open_v, n_open, best, -1.0, -1, market_leads)
            if market_leads:
                leader = T.MARKET
            elif j >= 0:
                leader = open_c[j]
            else:
                leader = T.UNSOLD
            price = best if mechanism == T.MECHANISM_FIRST else max(second, floor)
            lost = T.LOSS_LOST_TO_MARKET if market_leads else T.LOSS_LOST_TO_BID

        if leader == T.UNSOLD:  # then there were no candidates
            winner[i] = T.UNSOLD
            price_cpm[i] = 0.0
            continue
        winner[i] = leader
        price_cpm[i] = price
        for j in range(n_open):
            outcomes[open_c[j], lost] += 1
        for j in range(n_deal):
            outcomes[deal_c[j], T.LOSS_LOST_TO_BID] += 1
        if leader == T.MARKET:
            continue

        c = leader
        outcomes[c, T.LOSS_LOST_TO_BID] -= 1
        outcomes[c, T.WON] += 1
        media = np.int64(price * T.MICROS_PER_CPM + 0.5)
        fee = media * fee_ppm[c] // T.PPM
        cost = media + fee + data_micros[c]
        remaining_total[c] -= cost
        remaining_daily[c] -= cost
        threshold[c] = _budget_threshold_nb(remaining_total[c], remaining_daily[c], fee_ppm[c],
                                            data_micros[c])
        media_micros[c] += media
        fee_micros[c] += fee
        data_cost_micros[c] += data_micros[c]
        if cap_kind[c] == T.CAP_CALENDAR:
            counts[u, c] += 1
        elif cap_kind[c] == T.CAP_ROLLING:
            _record_rolling_nb(times, ring_start[c], cap_limit[c], u, t)
        a = advertiser[c]
        if adv_kind[a] == T.CAP_CALENDAR:
            adv_counts[u, a] += 1
        seen = exposures[u, c]
        prior_exposures[i] = seen
        reach[c] += seen == 0
        exposures[u, c] = seen + (seen < 255)
        last_touch[u, a] = encode_touch(t, c)

    outcomes[:, :TOOK_PART] += early[:, :TOOK_PART]
    # Bids on requests the campaign does not target were never visited: count them.
    for c in range(nc):
        bids_made = 0
        for i in range(n):
            bids_made += bids[c, i] >= 0.0
        outcomes[c, T.OUTCOME_NOT_TARGETED] += bids_made - early[c, :NO_BID].sum()
