"""build_world(): a validated scenario becomes arrays, strategy objects and fresh state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from dmp.audience import Audience, build_audience
from dmp.behaviour import Behaviour, build_behaviour
from dsp.campaigns import CampaignTable, build_campaigns
from rtb.auction import CampaignBook, CapBook, UserBook
from rtb.scenario import Scenario
from rtb.seeding import stream
from rtb.types import (CAP_CALENDAR, CAP_NONE, CAP_ROLLING, MECHANISMS, N_OUTCOMES, PPM,
                       SECONDS_PER_DAY)
from ssp.deals import DealBook, build_deals
from ssp.floors import FloorBook, build_floors
from ssp.inventory import Inventory, build_inventory
from ssp.market import BackgroundMarket


@dataclass
class World:
    """Everything one run needs; after this the tick loop never reads the scenario."""

    scenario: Scenario
    seed: int
    start: datetime
    duration_s: float
    tick_s: float
    mechanism: int
    exchange_fee_ppm: int
    inventory: Inventory
    market: BackgroundMarket
    audience: Audience
    behaviour: Behaviour
    campaigns: CampaignTable
    deals: DealBook
    floors: FloorBook  # open-auction floor by (slot, user geo); dynamic floors update it in place
    user_factor: np.ndarray  # f4[n_users, n_dsp]: each DSP's estimate of click propensity
    advertiser_value: np.ndarray  # f8[n_adv]: revenue per conversion
    advertiser_margin: np.ndarray  # f8[n_adv]
    book: CampaignBook
    caps: CapBook
    users: UserBook

    @property
    def n_users(self) -> int:
        return self.audience.device.size


def _seconds_to_next_boundary(start: datetime, period_s: float) -> float:
    """Seconds from the start to the next multiple of `period_s` in UTC epoch time."""
    return period_s - (start.timestamp() % period_s)


def _dsp_user_factor(s: Scenario, audience: Audience, seed: int) -> np.ndarray:
    """Truth times a mean-one lognormal error per (user, DSP): a CTR model that is wrong."""
    n = audience.ctr_propensity.size
    factor = np.empty((n, len(s.dsps)), dtype=np.float32)
    for d, dsp in enumerate(s.dsps):
        sigma = dsp.ctr_model_error
        error = stream(seed, f"dsp/{dsp.id}/model-error").lognormal(-0.5 * sigma * sigma, sigma, n)
        factor[:, d] = audience.ctr_propensity * error
    return factor


def _cap_book(s: Scenario, table: CampaignTable, start: datetime, n_users: int) -> CapBook:
    calendar = table.cap_kind == CAP_CALENDAR
    rolling = np.flatnonzero(table.cap_kind == CAP_ROLLING)
    ring_start = np.zeros(table.cap_kind.size, dtype=np.int32)
    ring_bounds = np.concatenate([[0], np.cumsum(table.cap_limit[rolling])]).astype(np.int32)
    ring_start[rolling] = ring_bounds[:-1]
    caps = [a.frequency_cap for a in s.advertisers]
    adv_window = np.array([cap.window if cap else 1.0 for cap in caps])
    return CapBook(
        kind=table.cap_kind,
        limit=table.cap_limit,
        window_s=table.cap_window_s,
        # A u1 count never reaches 256: campaigns without a calendar cap are never capped by it.
        calendar_limit=np.where(calendar, table.cap_limit, 256).astype(np.int32),
        window_end_s=_window_ends(start, table.cap_window_s, calendar),
        ring_start=ring_start,
        counts=user_rows(n_users, table.cap_kind.size, np.uint8, 0),
        # -inf: "never shown", older than any window.
        times=user_rows(n_users, int(ring_bounds[-1]), np.float64, -np.inf),
        adv_kind=np.array([CAP_CALENDAR if cap else CAP_NONE for cap in caps], dtype=np.int8),
        adv_limit=np.array([cap.impressions if cap else 256 for cap in caps], dtype=np.int32),
        adv_window_s=adv_window,
        adv_window_end_s=_window_ends(start, adv_window, np.array([cap is not None for cap in caps])),
        adv_counts=user_rows(n_users, len(caps), np.uint8, 0),
    )


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


def _window_ends(start: datetime, window_s: np.ndarray, used: np.ndarray) -> np.ndarray:
    """End of the first UTC-aligned calendar window of each cap; inf where unused."""
    return np.array([_seconds_to_next_boundary(start, w) if on else np.inf
                     for w, on in zip(window_s, used)])


def build_world(s: Scenario, seed: int | None = None, budget_scale: float = 1.0) -> World:
    seed = s.simulation.seed if seed is None else seed
    start = s.simulation.start
    inventory = build_inventory(s.ssps, s.publishers)
    audience = build_audience(s.dmp, s.behaviour.user_ctr_sigma, seed)
    table = build_campaigns(s, inventory, audience, budget_scale)
    nc, n_users, n_adv = len(table.ids), audience.device.size, len(s.advertisers)
    first_midnight = _seconds_to_next_boundary(start, SECONDS_PER_DAY)
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
        exposures=user_rows(n_users, nc, np.uint8, 0),
        last_touch=user_rows(n_users, n_adv, np.int64, -1),
    )
    return World(
        scenario=s,
        seed=seed,
        start=start,
        duration_s=s.simulation.duration,
        tick_s=s.simulation.tick,
        mechanism=MECHANISMS[s.exchange.auction],
        exchange_fee_ppm=round(s.exchange.fee * PPM),
        inventory=inventory,
        market=BackgroundMarket(s.exchange.market),
        audience=audience,
        behaviour=build_behaviour(s),
        campaigns=table,
        deals=build_deals(s),
        floors=build_floors(s, audience.geo_names),
        user_factor=_dsp_user_factor(s, audience, seed),
        advertiser_value=np.array([a.value_per_conversion for a in s.advertisers]),
        advertiser_margin=np.array([a.margin for a in s.advertisers]),
        book=book,
        caps=_cap_book(s, table, start, n_users),
        users=users,
    )
