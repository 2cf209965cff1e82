"""The arrays the tick kernel reads and writes, grouped as numba reads them.

Targeting and Deals come from the market (read only); CampaignBook, CapBook and
UserBook are the run state's books, which the kernel updates in place; TickResult is
what it decides per request. The kernel itself is rtb/kernel.py.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from rtb import types as T
from rtb.types import BID_BIN_BASE, BID_BIN_SHIFT, N_BID_BINS


class Targeting(NamedTuple):
    """Who may bid on what, as campaign bitsets: bit c of word c // 64 is campaign c.

    A request's eligible campaigns are slot_words[row] & user_words[user] (row: the
    request's target_row), a few word operations per request instead of several
    lookups per (request, campaign). Rows are the slots', then anonymous rows: a slot's
    requests sold anonymously through a deal (dsp.campaigns.build_campaigns).
    """

    slot_words: np.ndarray  # u8[n_rows, n_words]: format, device, category, domain, and brand
    # safety allows
    slot_blocked_words: np.ndarray  # u8[n_rows, n_words]: targeted by format, device, category,
    # domain, but brand safety forbids the pair (counted as `blocked`, never visited further)
    slot_hidden_words: np.ndarray  # u8[n_rows, n_words]: on anonymous rows, campaigns whose
    # domain targeting the anonymity hides (counted per publisher as SellerBook.hidden_bids)
    user_words: np.ndarray  # u8[n_users, n_words]: geo and segments (matched, consented)
    flight_start_s: np.ndarray  # f8[nc]
    flight_end_s: np.ndarray  # f8[nc]
    pace_share: np.ndarray  # f8[nc]: share of eligible requests the campaign bids on (run state)
    pace_offset: np.ndarray  # f8[nc]: fixed per campaign: rotates the shared pacing uniform


def campaign_words(ok: np.ndarray) -> np.ndarray:
    """Pack bool[rows, nc] into u8[rows, ceil(nc / 64)] campaign bitsets."""
    rows, nc = ok.shape
    n_words = max(1, -(-nc // 64))
    # Little-endian bit order within bytes and bytes within words: bit c of the row's
    # bytes is bit c % 64 of word c // 64.
    packed = np.zeros((rows, n_words * 8), dtype=np.uint8)
    packed[:, :-(-nc // 8)] = np.packbits(ok, axis=1, bitorder="little")
    return packed.view("<u8").astype(np.uint64, copy=False)


class Deals(NamedTuple):
    """Private-marketplace deals (index = deal id in RequestBatch.deal).

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

    Calendar caps count impressions per window in u1 counters, one byte per (user,
    capped campaign) in the user's row (rtb/layout.py), so a request's checks touch one
    row; a campaign's counter is column cal_col[c] (an uncapped campaign's limit, 256,
    is never reached whatever counter it reads). Windows are aligned to UTC epoch time:
    caps with the same window length share boundaries and are cleared together in one
    pass. Rolling caps keep each pair's last `limit` impression times.
    """

    kind: np.ndarray  # i1[nc]: CAP_NONE / CAP_CALENDAR / CAP_ROLLING
    limit: np.ndarray  # i4[nc]: impressions allowed per window
    window_s: np.ndarray  # f8[nc]
    calendar_limit: np.ndarray  # i4[nc]: `limit` for calendar caps, 256 (never reached) otherwise
    window_end_s: np.ndarray  # f8[nc]: when the calendar window's counts expire; inf if none
    ring_start: np.ndarray  # i4[nc]: rolling caps: first column of the campaign's ring
    counts: np.ndarray  # u1[n_rows, >= 1]: impressions in the current calendar window, column
    # cal_col[c] for calendar-capped campaign c
    # The `limit` latest impression times per pair, as ring_value()s: a u4 low part and,
    # in runs whose times need more than 32 bits, a high part (else 0 columns).
    ring_low: np.ndarray  # u4[n_rows, n_ring]
    ring_high: np.ndarray  # u1, u2 or u4 [n_rows, n_ring or 0]
    adv_kind: np.ndarray  # i1[n_adv]: CAP_NONE / CAP_CALENDAR (advertiser caps are calendar)
    adv_limit: np.ndarray  # i4[n_adv]: 256 where none
    adv_window_s: np.ndarray  # f8[n_adv]
    adv_window_end_s: np.ndarray  # f8[n_adv]; inf if none
    adv_counts: np.ndarray  # u1[n_rows, >= 1]: column adv_col[a] for capped advertiser a
    cal_col: np.ndarray  # i4[nc]: each campaign's column in counts (0 if not calendar-capped)
    adv_col: np.ndarray  # i4[n_adv]: each advertiser's column in adv_counts (0 if not capped)
    rows_in_use: np.ndarray  # i8[1]: rows 0 .. rows_in_use[0] - 1 may be written; a new
    # calendar window clears only those (the others are zero, and stay unfaulted)


@njit(cache=True, inline="always")
def read_split(low, high, row, k):
    """A ring time's or touch's value from its low part and, if the book has one, its
    high part."""
    value = np.int64(low[row, k])
    if high.shape[1] != 0:
        value |= np.int64(high[row, k]) << 32
    return value


@njit(cache=True, inline="always")
def write_split(low, high, row, k, value):
    low[row, k] = value & 0xFFFFFFFF
    if high.shape[1] != 0:
        high[row, k] = value >> 32


@njit(cache=True, inline="always")
def ring_value(time_s):
    """A ring time as the ring holds it: clock units + 1 (0 = never shown)."""
    return np.int64(time_s * T.CLOCK_UNITS_PER_S) + 1


@njit(cache=True, inline="always")
def ring_time_s(value):
    """The time a ring value holds, exactly (-inf: never shown)."""
    return (value - 1) / T.CLOCK_UNITS_PER_S if value != 0 else -np.inf


NO_ID_NONE = (1 << 63) - 1  # UserBook.no_id_row of a run whose every request carries an id


class SellerBook(NamedTuple):
    """What each publisher sold each campaign over the run (index [publisher, campaign]);
    the kernel adds to it."""

    wins: np.ndarray  # i8[n_pub, nc]: impressions bought
    media_micros: np.ndarray  # i8[n_pub, nc]: clearing prices paid for them
    hidden_bids: np.ndarray  # i8[n_pub, nc]: bids on anonymous requests by campaigns whose
    # domain targeting names the publisher (slot_hidden_words): targeted in every other
    # way, in flight, admitted by a private deal; before pacing


def new_seller_book(n_pub: int, nc: int) -> SellerBook:
    return SellerBook(np.zeros((n_pub, nc), np.int64), np.zeros((n_pub, nc), np.int64),
                      np.zeros((n_pub, nc), np.int64))


def bid_bin_edges(k: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) CPM edges of bins k >= 1 (bin 0 is [0, 2**-20))."""
    k = np.asarray(k, dtype=np.int64)
    lower = ((BID_BIN_BASE + k - 1) << BID_BIN_SHIFT).view(np.float64)
    upper = ((BID_BIN_BASE + k) << BID_BIN_SHIFT).view(np.float64)
    return lower, upper


class BidBook(NamedTuple):
    """The bids each publisher received, for report.advertiser_bids (the kernel adds to it).

    A bid received is a bid the exchange took into the auction: the campaign targets the
    request (a private deal admitting it), brand safety allows the pair, it is in flight
    and pacing let it through, whether it then meets the floor or not: the bids the
    campaign's report counts (campaigns[].bids).
    """

    bids: np.ndarray  # i8[n_pub, nc]: bids received
    bid_sum_cpm: np.ndarray  # f8[n_pub, nc]: their sum, CPM as they compete (at most MAX_BID_CPM)
    bins: np.ndarray  # i8[n_pub * n_adv, N_BID_BINS]: their count per bin (row p * n_adv + advertiser)


def new_bid_book(n_pub: int, nc: int, n_adv: int) -> BidBook:
    return BidBook(np.zeros((n_pub, nc), np.int64), np.zeros((n_pub, nc)),
                   np.zeros((n_pub * n_adv, N_BID_BINS), np.int64))


class UserBook(NamedTuple):
    """Per-user state the kernel updates: exposures (reach, fatigue) and last touches.

    Rows are handed out to users as they first appear (rtb.state.assign_user_rows_nb):
    row_of maps a user to its row, 0 = none yet; row 0 is every such user's, and never
    written.

    A touch is one number: ((its exact time in clock units + 1) << touch_bits) | the
    campaign's rank among its advertiser's campaigns, 0 = none (book_touch). Every event
    time is on the simulation clock (types.on_clock), so attribution compares times
    exactly. It is stored as a u4 low part and, when the run's touches need more than
    32 bits, a high part (rtb/layout.py). Outside the book, in the kernel's result and
    in attribution, a touch is encode_touch's int64 (-1 = none): wide_touch() converts.
    """

    exposures: np.ndarray  # u1[n_rows, nc], saturating at 255
    touch_low: np.ndarray  # u4[n_rows, n_adv]: each advertiser's last impression
    touch_high: np.ndarray  # u1, u2 or u4 [n_rows, n_adv or 0]
    row_of: np.ndarray  # i4[n_users]: each user's row, 0 = none yet
    rows_in_use: np.ndarray  # i8[1]: rows handed out, with row 0 (CapBook's too)
    touch_bits: int  # bits of the campaign's rank
    touch_rank: np.ndarray  # i4[nc]: each campaign's rank among its advertiser's
    touch_campaign: np.ndarray  # i4[n_adv, 2**touch_bits]: the campaign of a rank
    # Rows from here on are no-id rows (a request without consent, dmp/identity.py): the
    # kernel skips their caps and never writes their rows (here or in the CapBook).
    no_id_row: int = NO_ID_NONE


TOUCH_CAMPAIGN_BITS = 16  # campaigns per scenario < 65536; times < 2**47 clock units (68 years)
NO_TOUCH = -1


@njit(cache=True, inline="always")
def encode_touch(time_s, campaign):
    """(time on the clock, campaign) as one int64, ordered by time; exact."""
    return (np.int64(time_s * T.CLOCK_UNITS_PER_S) << TOUCH_CAMPAIGN_BITS) | campaign


@njit(cache=True, inline="always")
def book_touch(time_s, campaign, bits, rank):
    """The value a touch book stores for (time on the clock, campaign)."""
    return ((np.int64(time_s * T.CLOCK_UNITS_PER_S) + 1) << bits) | rank[campaign]


@njit(cache=True, inline="always")
def wide_touch(value, advertiser, bits, campaign_of):
    """A touch book's value as encode_touch's (NO_TOUCH = none)."""
    if value == 0:
        return np.int64(NO_TOUCH)
    return (((value >> bits) - 1) << TOUCH_CAMPAIGN_BITS) | campaign_of[advertiser, value & ((1 << bits) - 1)]


@njit(cache=True, inline="always")
def touch_for_book(touch, bits, rank):
    """An encode_touch touch (NO_TOUCH = none) as the touch book stores it (book_touch)."""
    if touch < 0:
        return np.int64(0)
    mask = (1 << TOUCH_CAMPAIGN_BITS) - 1
    return (((touch >> TOUCH_CAMPAIGN_BITS) + 1) << bits) | rank[touch & mask]


def exposures_in_use(users: UserBook) -> np.ndarray:
    """u1[rows in use, nc]: the exposures of the rows handed out (every other user's are
    zero), without faulting in the rest."""
    return users.exposures[:users.rows_in_use[0]]


def book_touches(users: UserBook, user: np.ndarray, advertiser: np.ndarray) -> np.ndarray:
    """i8: the book's touches of (user, advertiser) pairs, as encode_touch's (-1 = none)."""
    rows = users.row_of[user]
    value = users.touch_low[rows, advertiser].astype(np.int64)
    if users.touch_high.shape[1]:
        value |= users.touch_high[rows, advertiser].astype(np.int64) << 32
    bits = users.touch_bits
    campaign = users.touch_campaign[advertiser, value & ((1 << bits) - 1)]
    return np.where(value == 0, NO_TOUCH, (((value >> bits) - 1) << TOUCH_CAMPAIGN_BITS) | campaign)


def all_touches(users: UserBook) -> np.ndarray:
    """i8[n_users, n_adv]: the whole book as encode_touch's touches (-1 = none)."""
    n, n_adv = users.row_of.size, users.touch_low.shape[1]
    user = np.repeat(np.arange(n), n_adv).reshape(n, n_adv)
    return book_touches(users, user, np.broadcast_to(np.arange(n_adv), (n, n_adv)))


def touch_time_s(touch: np.ndarray) -> np.ndarray:
    """The times of packed touches; -inf where none."""
    touch = np.asarray(touch, dtype=np.int64)
    return np.where(touch >= 0, (touch >> TOUCH_CAMPAIGN_BITS) / T.CLOCK_UNITS_PER_S, -np.inf)


def touch_campaign(touch: np.ndarray) -> np.ndarray:
    """The campaigns of packed touches; -1 where none."""
    touch = np.asarray(touch, dtype=np.int64)
    return np.where(touch >= 0, touch & ((1 << TOUCH_CAMPAIGN_BITS) - 1), -1).astype(np.int32)


class TickResult(NamedTuple):
    """What the kernel decided for each request of the tick (all arrays [n])."""

    winner: np.ndarray  # i4: campaign index, MARKET or UNSOLD
    price_cpm: np.ndarray  # f8: 0 when unsold
    prior_exposures: np.ndarray  # u1: for campaign wins, the user's earlier exposures
    deal_won: np.ndarray  # bool: the impression went through its deal
    open_auction: np.ndarray  # bool: the open-auction floor was in play (no private deal,
    # not sold through the deal)
    floor_hit: np.ndarray  # bool: the open-auction floor acted on the request (see clear_tick_nb)
    prior_touch: np.ndarray  # i8: for campaign wins, the advertiser's touch the win replaced
    # (encode_touch; NO_TOUCH = none)
    replaced_slot: np.ndarray  # i4: for campaign wins under a rolling cap, the ring column
    # the win wrote, and replaced_value (i8) the ring_value it held: with prior_exposures
    # and prior_touch, what undoes the win's per-user writes (rtb/shards.py)
    replaced_value: np.ndarray


def new_result(n: int) -> TickResult:
    """Output arrays for a tick of n requests (every field is written for every row
    that needs it: prior_* only on campaign wins)."""
    return TickResult(np.empty(n, dtype=np.int32), np.empty(n), np.zeros(n, dtype=np.uint8),
                      np.zeros(n, dtype=np.bool_), np.zeros(n, dtype=np.bool_),
                      np.zeros(n, dtype=np.bool_), np.full(n, NO_TOUCH, dtype=np.int64),
                      np.zeros(n, dtype=np.int32), np.zeros(n, dtype=np.int64))
