"""The run state: everything a run changes, in one place.

The market (rtb/market.py) is read-only; a run's budgets, caps, per-user books,
pacing shares, moving floors, tallies and pending conversions are here, so "who
changes what" is a type: the kernel writes book, caps, users, sellers and bid_book;
the pacer pace_share; dynamic floors their table; the tick's last stages tally and
pending.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import numpy as np
from numba import njit

from dsp.adaptive import Learners
from dsp.campaigns import CampaignTable
from rtb.books import (
    NO_ID_NONE,
    BidBook,
    CampaignBook,
    CapBook,
    SellerBook,
    UserBook,
    new_bid_book,
    new_seller_book,
)
from rtb.layout import (BY_EXPOSURES, COUNTER, RING, RowLayout, cap_columns, row_layout,
                        touch_rank_bits)
from rtb.ledger import Ledger
from rtb.market import Market
from rtb.openrtb_wire import BidderTally
from rtb.people import PeopleBook, new_people_book
from rtb.prefetch import GATHER_AHEAD, prefetch_item
from rtb.types import (CAP_CALENDAR, CAP_NONE, CAP_ROLLING, CLOCK_UNITS_PER_S, N_OUTCOMES,
                       SECONDS_PER_DAY)
from ssp.floors import DynamicFloors

CACHE_LINE = 64


def user_rows(n_users: int, width: int, dtype, fill) -> np.ndarray:
    """A C-contiguous [n_users, >= width] array whose rows never straddle cache lines.

    The tick kernel reads a few random users' rows per request; a row that straddles
    two cache lines costs two misses. Rows are padded (the columns past `width` are
    never used) to whole lines, or to a power of two that divides a line, and the
    array is aligned to a line.
    """
    itemsize = np.dtype(dtype).itemsize
    per_line = CACHE_LINE // itemsize
    row_bytes = width * itemsize
    if row_bytes > CACHE_LINE:
        padded = -(-width // per_line) * per_line  # whole lines
    else:
        # A power of two that divides a line: a few rows share a line, none straddles.
        padded = (1 << max(0, row_bytes - 1).bit_length()) // itemsize if width else 0
    size = n_users * padded + per_line
    # Zeros come from calloc: pages are only touched (and faulted in) when used.
    buffer = np.zeros(size, dtype=dtype) if fill == 0 else np.full(size, fill, dtype=dtype)
    skip = (-buffer.ctypes.data % CACHE_LINE) // itemsize
    return buffer[skip:skip + n_users * padded].reshape(n_users, padded)


@dataclass
class Tally:
    """Per-run aggregates, updated every tick; memory does not grow with the run."""

    n_campaigns: int
    n_publishers: int
    clicks: np.ndarray = None  # i8[nc]
    ad_conversions: np.ndarray = None  # i8[nc]: caused by the campaign's clicks (incremental)
    attributed_conversions: np.ndarray = None  # i8[nc]: last touch within the window
    pub_requests: np.ndarray = None  # i8[np]
    pub_anonymous_requests: np.ndarray = None  # i8[np]: sold anonymously
    pub_impressions: np.ndarray = None  # i8[np]
    pub_deal_impressions: np.ndarray = None  # i8[np]: sold through a deal
    pub_revenue_micros: np.ndarray = None  # i8[np]
    pub_floor_sum: np.ndarray = None  # f8[np]: sum of floors over requests
    pub_price_sum: np.ndarray = None  # f8[np]: sum of clearing prices over impressions
    pub_floor_hits: np.ndarray = None  # i8[np]: requests the open-auction floor acted on
    requests: int = 0
    impressions_to_campaigns: int = 0
    impressions_to_market: int = 0
    organic_conversions: int = 0
    ledger: Ledger = field(default_factory=Ledger)

    def __post_init__(self) -> None:
        for name in ("clicks", "ad_conversions", "attributed_conversions"):
            setattr(self, name, np.zeros(self.n_campaigns, dtype=np.int64))
        for name in ("pub_requests", "pub_anonymous_requests", "pub_impressions", "pub_deal_impressions", "pub_revenue_micros",
                     "pub_floor_hits"):
            setattr(self, name, np.zeros(self.n_publishers, dtype=np.int64))
        self.pub_floor_sum = np.zeros(self.n_publishers)
        self.pub_price_sum = np.zeros(self.n_publishers)


class PendingConversions:
    """Conversions waiting for their time: (time_s, user, advertiser, caused_by campaign
    or -1 for an organic one)."""

    def __init__(self) -> None:
        self._parts: list[tuple[np.ndarray, ...]] = []

    def add(self, time_s, user, advertiser, caused_by) -> None:
        if time_s.size:
            self._parts.append((time_s, user, advertiser, caused_by))

    def pop_due(self, until_s: float) -> tuple[np.ndarray, ...]:
        """Remove and return those with time < until_s, in time order."""
        if not self._parts:
            return tuple(np.empty(0, dtype=d) for d in (np.float64, np.int64, np.int32, np.int32))
        cols = [np.concatenate(c) for c in zip(*self._parts)]
        due = cols[0] < until_s
        self._parts = [tuple(c[~due] for c in cols)] if (~due).any() else []
        order = np.argsort(cols[0][due], kind="stable")
        return tuple(c[due][order] for c in cols)


@dataclass
class RunState:
    """Everything one run mutates (money in integer micros)."""

    book: CampaignBook  # budgets left, spend, outcome counts, reach (the kernel)
    caps: CapBook  # frequency-cap counters (the kernel)
    users: UserBook  # exposures and last touches (the kernel)
    sellers: SellerBook  # per (publisher, campaign): wins, media, bids anonymity hid (the kernel)
    bid_book: BidBook | None  # the bids each publisher received, if the report asks (the kernel)
    pace_share: np.ndarray  # f8[nc]: share of eligible requests each campaign bids on (the pacer)
    bid_multiplier: np.ndarray  # f8[nc]: what each campaign's bids are multiplied by (the pacer)
    floor_table: np.ndarray  # f8[n_slot, n_geo]: floors in force (the market's, or moving ones)
    dynamic_floors: DynamicFloors | None  # moves floor_table between ticks, if any floors move
    tally: Tally
    pending: PendingConversions
    learners: Learners | None = None  # the learning built-ins' state (dsp.adaptive; the exchange)
    # Per person: exposures and the person-level twin of the caps (rtb.people; the
    # exchange's tally). None without dmp.identity: every id is then its own person.
    people: PeopleBook | None = None
    bidders: BidderTally | None = None  # the external OpenRTB bidders' tallies (rtb.external)


def _seconds_to_next_boundary(start: datetime, period_s: float) -> float:
    """Seconds from the start to the next multiple of `period_s` in UTC epoch time."""
    return period_s - (start.timestamp() % period_s)


def _window_ends(start: datetime, window_s: np.ndarray, used: np.ndarray) -> np.ndarray:
    """End of the first UTC-aligned calendar window of each cap; inf where unused."""
    return np.array([_seconds_to_next_boundary(start, w) if on else np.inf
                     for w, on in zip(window_s, used)])


_KIND_NAMES = {CAP_CALENDAR: "calendar", CAP_ROLLING: "rolling"}
COMPACT_ROWS = True  # False: the wide layout (rtb.layout.row_layout), for tests of exactness


def _cap_columns(m: Market) -> list[str]:
    table = m.campaigns
    return cap_columns([_KIND_NAMES.get(int(k)) for k in table.cap_kind], table.cap_window_s.tolist(),
                       m.start.timestamp(), m.duration_s, COMPACT_ROWS)


def user_layout(m: Market) -> RowLayout:
    """The run's per-user row (rtb/layout.py): what its caps, advertisers and duration need."""
    table = m.campaigns
    per_advertiser = np.bincount(table.advertiser, minlength=m.advertiser_value.size)
    return row_layout(len(table.ids), m.advertiser_value.size, m.start.timestamp(), m.duration_s,
                      [_KIND_NAMES.get(int(k)) for k in table.cap_kind], table.cap_limit.tolist(),
                      table.cap_window_s.tolist(), int((m.advertiser_cap_impressions > 0).sum()),
                      int(per_advertiser.max(initial=1)), COMPACT_ROWS)


class UserRows(NamedTuple):
    """The run's user rows (rtb/layout.py) as typed column views of one buffer.

    A user gets a row when it first appears in a request (assign_user_rows_nb), in
    order of appearance; row 0 stands for every user without one and is never written.
    The buffer has a row for every user and comes from calloc, so only the pages of rows
    handed out are ever resident: a run's memory grows with the users it reaches, not
    with the audience.
    """

    buffer: np.ndarray  # u1[n_users + 1, row_bytes]: every row, aligned to a cache line
    row_of: np.ndarray  # i4[n_users]: each user's row, 0 = none yet
    rows_in_use: np.ndarray  # i8[1]: rows handed out, with row 0
    ring_low: np.ndarray  # u4[n_rows, ring]
    ring_high: np.ndarray  # u1, u2 or u4 [n_rows, ring or 0]
    touch_low: np.ndarray  # u4[n_rows, n_adv]
    touch_high: np.ndarray  # u1, u2 or u4 [n_rows, n_adv or 0]
    counts: np.ndarray  # u1[n_rows, n_counts + n_adv_counts + nc]: the row from the counters
    # on (a cap counted by exposures reads its exposures column through CapBook.cal_col)
    adv_counts: np.ndarray  # u1[n_rows, n_adv_counts + nc]: the row from the advertisers' on
    exposures: np.ndarray  # u1[n_rows, nc]


_HIGH_DTYPES = {0: np.uint8, 1: np.uint8, 2: np.uint16, 4: np.uint32}


def new_user_rows(n_users: int, layout: RowLayout) -> UserRows:
    """Zeroed rows, none handed out (calloc: a page is faulted in when first written)."""
    assert CLOCK_UNITS_PER_S == 65536  # rtb.layout's arithmetic
    width = layout.row_bytes  # padded by the layout itself: no whole-line padding here
    n_rows = n_users + 1
    flat = np.zeros(n_rows * width + CACHE_LINE, dtype=np.uint8)
    skip = -flat.ctypes.data % CACHE_LINE
    buffer = flat[skip:skip + n_rows * width].reshape(n_rows, width)

    def column(at: int, end: int, dtype) -> np.ndarray:
        return buffer[:, at:end].view(dtype)

    high = _HIGH_DTYPES[layout.high]
    end = layout.used_bytes
    return UserRows(
        buffer, np.zeros(n_users, dtype=np.int32), np.ones(1, dtype=np.int64),
        column(0, layout.touch_at, np.uint32),
        column(layout.ring_high_at, layout.touch_high_at, high),
        column(layout.touch_at, layout.ring_high_at, np.uint32),
        column(layout.touch_high_at, layout.counts_at, high),
        column(layout.counts_at, end, np.uint8), column(layout.adv_counts_at, end, np.uint8),
        column(layout.exposures_at, end, np.uint8))


@njit(cache=True, nogil=True)
def assign_user_rows_nb(row_of, rows_in_use, user, no_id_row):
    """i4[n]: each request's row in the user books, handing the next free row to a user
    seen for the first time (a request without an id: row 0, never written).

    Runs where the tick's requests are drawn (the look-ahead thread, when there is one):
    it alone writes row_of and rows_in_use. The rows it hands out are zero and belong to
    users the clearing tick does not have, so the kernel may read rows_in_use meanwhile.
    """
    out = np.empty(user.size, np.int32)
    next_row = rows_in_use[0]
    for i in range(user.size):
        if i + GATHER_AHEAD < user.size and user[i + GATHER_AHEAD] < no_id_row:
            prefetch_item(row_of, user[i + GATHER_AHEAD])
        u = user[i]
        if u >= no_id_row:
            out[i] = 0
            continue
        r = row_of[u]
        if r == 0:
            r = next_row
            next_row += 1
            row_of[u] = r
        out[i] = r
    rows_in_use[0] = next_row
    return out


def _cap_book(m: Market, table: CampaignTable, rows: UserRows, layout: RowLayout) -> CapBook:
    columns = np.array(_cap_columns(m))
    # A cap counted by exposures (its window never ends in the run, rtb/layout.py) is
    # checked against its exposures column and never counted or cleared by itself.
    by_exposures = columns == BY_EXPOSURES
    kind = np.where(by_exposures, CAP_NONE, table.cap_kind).astype(np.int8)
    calendar = columns == COUNTER
    rolling = np.flatnonzero(columns == RING)
    ring_start = np.zeros(kind.size, dtype=np.int32)
    ring_bounds = np.concatenate([[0], np.cumsum(table.cap_limit[rolling])]).astype(np.int32)
    ring_start[rolling] = ring_bounds[:-1]
    assert ring_bounds[-1] == rows.ring_low.shape[1]
    cal_col = np.zeros(kind.size, dtype=np.int32)
    cal_col[calendar] = np.arange(int(calendar.sum()))
    cal_col[by_exposures] = layout.exposures_at - layout.counts_at + np.flatnonzero(by_exposures)
    adv_capped = m.advertiser_cap_impressions > 0
    adv_col = np.zeros(adv_capped.size, dtype=np.int32)
    adv_col[adv_capped] = np.arange(int(adv_capped.sum()))
    return CapBook(
        kind=kind,
        limit=table.cap_limit,
        window_s=table.cap_window_s,
        # A u1 count never reaches 256: campaigns without a cap are never capped by it.
        calendar_limit=np.where(calendar | by_exposures, table.cap_limit, 256).astype(np.int32),
        window_end_s=_window_ends(m.start, table.cap_window_s, calendar),
        ring_start=ring_start,
        counts=rows.counts,
        ring_low=rows.ring_low,
        ring_high=rows.ring_high,
        adv_kind=np.where(adv_capped, CAP_CALENDAR, CAP_NONE).astype(np.int8),
        adv_limit=np.where(adv_capped, m.advertiser_cap_impressions, 256).astype(np.int32),
        adv_window_s=m.advertiser_cap_window_s.copy(),
        adv_window_end_s=_window_ends(m.start, m.advertiser_cap_window_s, adv_capped),
        adv_counts=rows.adv_counts,
        cal_col=cal_col,
        adv_col=adv_col,
        rows_in_use=rows.rows_in_use,
    )


def _user_book(m: Market, rows: UserRows) -> UserBook:
    table, n_adv = m.campaigns, m.advertiser_value.size
    # Each campaign's rank among its advertiser's campaigns (the narrow touch's campaign).
    rank = np.zeros(table.advertiser.size, dtype=np.int32)
    seen = np.zeros(n_adv, dtype=np.int64)
    for c, a in enumerate(table.advertiser.tolist()):
        rank[c] = seen[a]
        seen[a] += 1
    bits = touch_rank_bits(int(seen.max(initial=1)))
    campaign = np.zeros((n_adv, 1 << bits), dtype=np.int32)
    campaign[table.advertiser, rank] = np.arange(rank.size)
    return UserBook(
        exposures=rows.exposures,
        touch_low=rows.touch_low,
        touch_high=rows.touch_high,
        row_of=rows.row_of,
        rows_in_use=rows.rows_in_use,
        # No-id rows (dmp/identity.py) are never written; without any, no row is one.
        no_id_row=(m.audience.identity.no_id_row if m.audience.identity.no_id_row < m.n_users
                   else NO_ID_NONE),
        touch_bits=bits, touch_rank=rank, touch_campaign=campaign)


def new_run_state(m: Market) -> RunState:
    """A run's state at its start: full budgets, empty books, the rules' floors."""
    table = m.campaigns
    nc, n_adv = len(table.ids), m.advertiser_value.size
    first_midnight = _seconds_to_next_boundary(m.start, SECONDS_PER_DAY)
    book = CampaignBook(
        advertiser=table.advertiser,
        dsp_fee_ppm=table.dsp_fee_ppm,
        data_micros=table.data_micros,
        remaining_total=table.budget_micros.copy(),
        remaining_daily=table.daily_budget_micros.copy(),
        daily_budget=table.daily_budget_micros,
        day_end_s=np.full(nc, first_midnight),
        media_micros=np.zeros(nc, dtype=np.int64),
        fee_micros=np.zeros(nc, dtype=np.int64),
        data_cost_micros=np.zeros(nc, dtype=np.int64),
        outcomes=np.zeros((nc, N_OUTCOMES), dtype=np.int64),
        reach=np.zeros(nc, dtype=np.int64),
    )
    layout = user_layout(m)
    rows = new_user_rows(m.n_users, layout)
    dynamic = m.floors.start_dynamic()
    return RunState(
        book=book,
        caps=_cap_book(m, table, rows, layout),
        users=_user_book(m, rows),
        sellers=new_seller_book(m.inventory.hourly.shape[0], nc),
        bid_book=(new_bid_book(m.inventory.hourly.shape[0], nc, n_adv) if m.advertiser_bids
                  else None),
        pace_share=np.ones(nc),
        bid_multiplier=np.ones(nc),
        floor_table=m.floors.table if dynamic is None else dynamic.table,
        dynamic_floors=dynamic,
        tally=Tally(nc, m.inventory.hourly.shape[0]),
        pending=PendingConversions(),
        bidders=BidderTally(len(m.wire.bidders)) if m.wire.bidders else None,
        people=None if m.audience.identity.trivial else new_people_book(m),
    )
