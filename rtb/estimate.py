"""What a run will cost before it starts: requests, peak memory, log size and wall time.

Arithmetic on a validated scenario only (no arrays, no numba), so `rtb validate` can
print it and `rtb run`, `sweep` and `compare` can refuse a run that cannot fit before
allocating anything. The memory model follows what a run allocates (rtb/market.py,
rtb/state.py, rtb/exchange.py); its constants were measured on 2026-11-27 (2-core VM,
peak RSS of `rtb run --quiet`): quickstart 201 MiB, large 987 MiB; estimated 201 and 1,019 MiB.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from rtb.errors import InputError
from rtb.scenario import Scenario
from rtb.supply_spec import DEFAULT_HOURLY_SHAPE
from rtb.types import N_BID_BINS, SECONDS_PER_DAY

CACHE_LINE = 64  # as rtb.state.CACHE_LINE: per-user rows are padded to it
# The process before any market: Python, numpy, numba and the compiled kernels, pydantic.
BASE_BYTES = 180 * 2**20
# Per user, besides the rows user_rows() lays out: the audience (device, geo, consent u1;
# click propensity f4; the per-device id lists i8 and their alias tables f8 + i8). The
# segment words (true and visible, u8 each) are zeros from calloc, never touched when the
# DMP has no segments. Build temporaries (activity, random draws) are freed before the
# run's peak. Measured with 100 million users, 1 campaign, no segments: 59 bytes a user.
AUDIENCE_BYTES_PER_USER = 1 + 1 + 1 + 4 + 8 + 16
SEGMENT_BYTES_PER_USER = 8 + 8
# Per request of a tick: the request batch (about 100 bytes), the kernel's result (about
# 30), the outcomes' and the log's slices; bids are counted per campaign below.
BYTES_PER_REQUEST = 200
LOG_BYTES_PER_IMPRESSION = 80  # a CSV row of the impression log
# Throughput end to end (docs/performance.md): large ticks run at about 1.4-1.8 million
# requests/s; each tick costs a fixed quarter of a millisecond more (quickstart's 1,440
# ticks of 750 requests run at 0.7-1.0 million/s); building the market about 0.25 us
# per user and 8 ns per (user, campaign) (100 million users and 1 campaign: 30 s; large:
# 0.9 s); starting the process and loading the cached kernels about 2 s.
REQUESTS_PER_S = 1.7e6
SECONDS_PER_TICK = 2.5e-4
SECONDS_PER_USER = 2.5e-7
SECONDS_PER_USER_CAMPAIGN = 8e-9
START_S = 1.8
# report.advertiser_bids counts and bins every bid received: large ran 1.3-1.9x as long
# (docs/performance.md, Report options).
ADVERTISER_BIDS_SLOWDOWN = 1.5
LONG_RUN_S = 60.0  # a run expected to take longer says so before it starts


def padded_width(width: int, itemsize: int) -> int:
    """Columns of a rtb.state.user_rows() row of `width` items (the same arithmetic:
    whole cache lines, or a power of two that divides one)."""
    per_line = CACHE_LINE // itemsize
    row_bytes = width * itemsize
    if row_bytes > CACHE_LINE:
        return -(-width // per_line) * per_line
    return (1 << max(0, row_bytes - 1).bit_length()) // itemsize if width else 0


@dataclass(frozen=True)
class Estimate:
    """The expected size of one run of a scenario."""

    requests: float  # expected bid requests over the whole run
    memory_bytes: int  # expected peak memory (resident) of one run's process: BASE_BYTES + run_bytes
    run_bytes: int  # of which the run's own arrays (market, run state, a tick's batches)
    log_bytes: int  # the CSV impression log if every request became an impression (an upper bound)
    seconds: float  # expected wall time of `rtb run` from a fresh process

    def summary(self) -> str:
        """One line, e.g. '1.1 million requests, about 201 MiB of memory, about 3 s'."""
        noun = "request" if count_text(self.requests) == "1" else "requests"
        return (f"{count_text(self.requests)} {noun}, about {size_text(self.memory_bytes)} of"
                f" memory, about {duration_text(self.seconds)}")


def per_user_bytes(s: Scenario) -> int:
    """Bytes every user costs a run: the market's arrays and the run state's rows."""
    nc, n_adv, n_dsp = len(s.campaigns), len(s.advertisers), len(s.dsps)
    rolling = sum(c.frequency_cap.impressions for c in s.campaigns
                  if c.frequency_cap is not None and c.frequency_cap.kind == "rolling")
    rows = (padded_width(nc, 1)  # exposures u1
            + padded_width(nc, 1)  # calendar cap counters u1
            + 8 * padded_width(rolling, 8)  # rolling-cap times f8
            + padded_width(n_adv, 1)  # advertiser cap counters u1
            + 8 * padded_width(n_adv, 8))  # last touch i8
    market = (AUDIENCE_BYTES_PER_USER + (SEGMENT_BYTES_PER_USER if s.dmp.segments else 0)
              + 4 * n_dsp  # the DSPs' user factors f4
              + 8 * math.ceil(nc / 64))  # campaigns targeting the user, u8 words
    return rows + market


def requests_per_tick(s: Scenario) -> tuple[float, float]:
    """(mean, at the busiest hour) expected requests per tick."""
    # The default diurnal curve (ssp.inventory needs numpy only, not numba).

    tick = min(s.simulation.tick, s.simulation.duration)
    mean = peak = 0.0
    for pub in s.publishers:
        hourly = pub.hourly_shape or [float(x) for x in DEFAULT_HOURLY_SHAPE]
        weekly = pub.weekly_shape or [1.0]
        factor = (max(hourly) / (sum(hourly) / len(hourly))) * (max(weekly) / (sum(weekly) / len(weekly)))
        per_tick = sum(slot.daily_requests for slot in pub.slots) / SECONDS_PER_DAY * tick
        mean += per_tick
        peak += per_tick * factor
    return mean, peak


def estimate(s: Scenario) -> Estimate:
    """The expected requests, peak memory, log size and wall time of one run of s."""
    sim = s.simulation
    daily = sum(slot.daily_requests for pub in s.publishers for slot in pub.slots)
    requests = daily * sim.duration / SECONDS_PER_DAY  # the shapes have mean 1
    nc, n_dsp = len(s.campaigns), len(s.dsps)
    _, peak_tick = requests_per_tick(s)
    # A tick's bids twice (the formulas' and the finished ones, f8[n, nc]) and each
    # DSP's predicted CTR; with ticks large enough the next tick is prepared meanwhile.
    per_request = BYTES_PER_REQUEST + 8 * (2 * nc + n_dsp)
    ticks_alive = 2 if peak_tick >= 5_000 else 1  # rtb.exchange.LOOK_AHEAD_MIN_REQUESTS
    n_slots = sum(len(pub.slots) for pub in s.publishers)
    n_pub, n_adv = len(s.publishers), len(s.advertisers)
    tables = (n_slots * (len(s.dmp.geos) + 8 * math.ceil(nc / 64) * 3 + 64)
              + 2 * n_slots * 8 * math.ceil(nc / 64) * 3  # anonymous rows, at most one per slot
              + n_pub * nc * 3 * 8)  # the sellers' book (rtb.books.SellerBook)
    if s.report.advertiser_bids:  # rtb.books.BidBook: counts and sums, and the bid bins
        tables += n_pub * nc * 16 + n_pub * n_adv * N_BID_BINS * 8
    run_bytes = int(s.dmp.users * per_user_bytes(s) + tables + ticks_alive * peak_tick * per_request)
    n_ticks = math.ceil(sim.duration / min(sim.tick, sim.duration))
    slowdown = ADVERTISER_BIDS_SLOWDOWN if s.report.advertiser_bids else 1.0
    seconds = (START_S + requests * slowdown / REQUESTS_PER_S + n_ticks * SECONDS_PER_TICK
               + s.dmp.users * (SECONDS_PER_USER + nc * SECONDS_PER_USER_CAMPAIGN))
    return Estimate(requests=requests, memory_bytes=BASE_BYTES + run_bytes, run_bytes=run_bytes,
                    log_bytes=int(requests * LOG_BYTES_PER_IMPRESSION), seconds=seconds)


def available_memory() -> int | None:
    """Memory a run may use now: MemAvailable of /proc/meminfo, else the physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str) -> int:
    """'2G', '512M', '1.5g', '800MB', '2GiB', '1000000' (bytes) -> bytes, in binary units
    (G = 2**30, as free and ulimit count); ValueError if not a size."""
    t = text.strip().upper()
    if t.endswith("IB"):
        t = t[:-2]
    elif t.endswith("B") and len(t) > 1 and t[-2] in "KMGT":
        t = t[:-1]
    unit = t[-1:] if t[-1:] in _UNITS and t[-1:] != "" else ""
    number = t[:-1] if unit else t
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a size: a number with K, M or G, e.g. 2G") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{text!r} is not a size: it must be positive, e.g. 2G")
    return int(value * _UNITS[unit])


def memory_limit(max_memory: str | None, local: bool = True) -> tuple[int | None, str]:
    """(bytes, how to name it): --max-memory's if given, else what this machine has
    available now (none for runs elsewhere, local=False); InputError if not a size."""
    if max_memory is not None:
        try:
            return parse_size(max_memory), "--max-memory"
        except ValueError as exc:
            raise InputError.single("command line", "--max-memory", str(exc)) from None
    return (available_memory(), "the memory available now") if local else (None, "")


def check_resources(s: Scenario, file: str, max_memory: str | None = None, *, runs: int = 1,
                    at_once: int = 1, local: bool = True) -> str | None:
    """Refuse (InputError) `runs` runs of s, `at_once` at a time, if their memory estimate
    exceeds the limit (memory_limit()); else return a line announcing a long wait, if
    the runs are expected to take over LONG_RUN_S, or None."""
    limit, limit_name = memory_limit(max_memory, local)
    e = estimate(s)
    at_once = max(1, min(at_once, runs))
    need = at_once * e.memory_bytes
    if limit is not None and need > limit:
        each = f" ({at_once} runs at once, each about {size_text(e.memory_bytes)})" if at_once > 1 else ""
        raise InputError.single(file, "", (
            f"a run needs about {size_text(need)} of memory{each}, more than {limit_name}"
            f" allows ({size_text(limit)}): {s.dmp.users:,} users at about {per_user_bytes(s)}"
            f" bytes each with {len(s.campaigns)} campaign{'s' if len(s.campaigns) > 1 else ''}; use fewer users (dmp.users) or"
            " fewer campaigns" + (", or fewer --workers" if at_once > 1 else "")
            + (", or a shorter tick (its requests are many)" if e.run_bytes > 2 * s.dmp.users
               * per_user_bytes(s) else "") + "; a shorter duration saves time, not memory"))
    seconds = e.seconds * math.ceil(runs / at_once)
    if seconds <= LONG_RUN_S:
        return None
    what = f"{runs} runs of {e.summary()} each" if runs > 1 else e.summary()
    return f"{file}: expected to take about {duration_text(seconds)} ({what})"


def count_text(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.1f} billion"
    if n >= 1e6:
        return f"{n / 1e6:.1f} million"
    return f"{round(n):,}"


def size_text(n: float) -> str:
    """Bytes in binary units, as --max-memory reads them (2G = 2 GiB)."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:,.0f} {unit}"
    return f"{int(n)} bytes"


def duration_text(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    if seconds < 2 * SECONDS_PER_DAY:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / SECONDS_PER_DAY:.1f} days"
