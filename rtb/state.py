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

import numpy as np

from dsp.adaptive import Learners
from dsp.campaigns import CampaignTable
from rtb.books import (
    NO_ID_NONE,
    NO_TOUCH,
    BidBook,
    CampaignBook,
    CapBook,
    SellerBook,
    UserBook,
    new_bid_book,
    new_seller_book,
)
from rtb.ledger import Ledger
from rtb.market import Market
from rtb.openrtb_wire import BidderTally
from rtb.people import PeopleBook, new_people_book
from rtb.types import CAP_CALENDAR, CAP_NONE, CAP_ROLLING, N_OUTCOMES, SECONDS_PER_DAY
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


def _cap_book(m: Market, table: CampaignTable) -> CapBook:
    calendar = table.cap_kind == CAP_CALENDAR
    rolling = np.flatnonzero(table.cap_kind == CAP_ROLLING)
    ring_start = np.zeros(table.cap_kind.size, dtype=np.int32)
    ring_bounds = np.concatenate([[0], np.cumsum(table.cap_limit[rolling])]).astype(np.int32)
    ring_start[rolling] = ring_bounds[:-1]
    adv_capped = m.advertiser_cap_impressions > 0
    n_users, n_adv = m.n_users, adv_capped.size
    return CapBook(
        kind=table.cap_kind,
        limit=table.cap_limit,
        window_s=table.cap_window_s,
        # A u1 count never reaches 256: campaigns without a calendar cap are never capped by it.
        calendar_limit=np.where(calendar, table.cap_limit, 256).astype(np.int32),
        window_end_s=_window_ends(m.start, table.cap_window_s, calendar),
        ring_start=ring_start,
        counts=user_rows(n_users, table.cap_kind.size, np.uint8, 0),
        # -inf: "never shown", older than any window.
        times=user_rows(n_users, int(ring_bounds[-1]), np.float64, -np.inf),
        adv_kind=np.where(adv_capped, CAP_CALENDAR, CAP_NONE).astype(np.int8),
        adv_limit=np.where(adv_capped, m.advertiser_cap_impressions, 256).astype(np.int32),
        adv_window_s=m.advertiser_cap_window_s.copy(),
        adv_window_end_s=_window_ends(m.start, m.advertiser_cap_window_s, adv_capped),
        adv_counts=user_rows(n_users, n_adv, np.uint8, 0),
    )


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
    users = UserBook(
        exposures=user_rows(m.n_users, nc, np.uint8, 0),
        last_touch=user_rows(m.n_users, n_adv, np.int64, NO_TOUCH),
        # No-id rows (dmp/identity.py) are never written; without any, no row is one.
        no_id_row=(m.audience.identity.no_id_row if m.audience.identity.no_id_row < m.n_users
                   else NO_ID_NONE),
    )
    dynamic = m.floors.start_dynamic()
    return RunState(
        book=book,
        caps=_cap_book(m, table),
        users=users,
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
