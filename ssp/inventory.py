"""Publishers' inventory as arrays, and the bid requests it sends each tick."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import numpy as np
from numba import njit

from rtb.scenario import DEVICE_CODE, FORMAT_CODE
from rtb import supply_spec
from rtb.supply_spec import PublisherSpec, SspSpec
from rtb.types import CLOCK_UNITS_PER_S, PPM, SECONDS_PER_DAY, SECONDS_PER_HOUR

DEFAULT_HOURLY_SHAPE = np.array(supply_spec.DEFAULT_HOURLY_SHAPE)


class Inventory(NamedTuple):
    """One row per ad slot; publisher-level data indexed through slot_publisher."""

    slot_publisher: np.ndarray  # i4[ns]
    slot_format: np.ndarray  # u1[ns]
    slot_device: np.ndarray  # u1[ns]
    slot_rate: np.ndarray  # f8[ns]: average requests per second
    hourly: np.ndarray  # f8[np, 24]: traffic multiplier by UTC hour, mean 1
    weekly: np.ndarray  # f8[np, 7]: multiplier Monday..Sunday, mean 1
    publisher_ssp: np.ndarray  # i4[np]
    publisher_category: np.ndarray  # i4[np]: index into categories
    categories: tuple[str, ...]
    ssp_fee_ppm: np.ndarray  # i8[n_ssp]


def _mean_one(shape: list[float] | None, default: np.ndarray) -> np.ndarray:
    values = default if shape is None else np.asarray(shape, dtype=np.float64)
    return values / values.mean()


def build_inventory(ssps: list[SspSpec], publishers: list[PublisherSpec]) -> Inventory:
    ssp_index = {s.id: i for i, s in enumerate(ssps)}
    categories = tuple(sorted({p.category for p in publishers}))
    slot_pub, fmt, dev, rate = [], [], [], []
    for p, pub in enumerate(publishers):
        for slot in pub.slots:
            slot_pub.append(p)
            fmt.append(FORMAT_CODE[slot.format])
            dev.append(DEVICE_CODE[slot.device])
            rate.append(slot.daily_requests / SECONDS_PER_DAY)
    return Inventory(
        slot_publisher=np.array(slot_pub, dtype=np.int32),
        slot_format=np.array(fmt, dtype=np.uint8),
        slot_device=np.array(dev, dtype=np.uint8),
        slot_rate=np.array(rate, dtype=np.float64),
        hourly=np.stack([_mean_one(p.hourly_shape, DEFAULT_HOURLY_SHAPE) for p in publishers]),
        weekly=np.stack([_mean_one(p.weekly_shape, np.ones(7)) for p in publishers]),
        publisher_ssp=np.array([ssp_index[p.ssp] for p in publishers], dtype=np.int32),
        publisher_category=np.array([categories.index(p.category) for p in publishers], dtype=np.int32),
        categories=categories,
        ssp_fee_ppm=np.array([round(s.fee * PPM) for s in ssps], dtype=np.int64),
    )


def slot_rates(inv: Inventory, epoch_s: float) -> np.ndarray:
    """f8[ns]: each slot's request rate (per second) at a UTC epoch time: its average
    rate times its publisher's hourly and weekly shape. The request generator and the
    pacer's expected traffic (dsp/pacing.py) both read it."""
    hour = int(epoch_s // SECONDS_PER_HOUR) % 24
    weekday = int((epoch_s // SECONDS_PER_DAY + 3) % 7)  # 1970-01-01 was a Thursday
    pub = inv.slot_publisher
    return inv.slot_rate * inv.hourly[pub, hour] * inv.weekly[pub, weekday]


def generate_requests(inv: Inventory, start: datetime, t0: float, t1: float,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The tick's requests as (time_s f8[n], sorted; slot i8[n]): a Poisson process per
    slot, merged and sorted by time.

    Rates follow the publisher's hourly and weekly shape at the tick's start (ticks are
    meant to be much shorter than an hour). Drawn as one Poisson count for the whole
    inventory, then sorted arrival times and a slot per request, which is the same
    process in O(n) without a sort.
    """
    rates = slot_rates(inv, start.timestamp() + t0)
    dt = t1 - t0
    n = int(rng.poisson(rates.sum() * dt))
    gaps = rng.standard_exponential(n + 1)
    u_slot = rng.random(n)
    return _arrivals_nb(gaps, u_slot, float(t0), float(dt), np.cumsum(rates))


@njit(cache=True, nogil=True)
def _arrivals_nb(gaps, u_slot, t0, dt, cumulative):
    """(time_s, slot) from the draws, in one pass with the GIL released: what numpy did
    in eight (cumsum, the scaling, on_clock, searchsorted), with the same operations in
    the same order, so the same numbers to the bit (tests/test_ssp.py)."""
    n = u_slot.size
    arrivals = np.cumsum(gaps)  # sequential, as numpy's
    last = arrivals[n]
    time_s = np.empty(n)
    slot = np.empty(n, dtype=np.int64)
    total, top = cumulative[-1], cumulative.size - 1
    for i in range(n):
        # On the clock, t0 being on it: still in [t0, t1) and in time order.
        time_s[i] = np.floor((t0 + dt * (arrivals[i] / last)) * CLOCK_UNITS_PER_S) / CLOCK_UNITS_PER_S
        slot[i] = min(np.searchsorted(cumulative, u_slot[i] * total, side="right"), top)
    return time_s, slot
