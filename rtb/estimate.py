"""What a run will cost before it starts: requests, peak memory, log size and wall time.

Arithmetic on a validated scenario only (no arrays, no numba), so `rtb validate` can
print it and `rtb run`, `sweep` and `compare` can refuse a run that cannot fit before
allocating anything. The memory model follows what a run allocates (rtb/market.py,
rtb/state.py and its user row, rtb/layout.py, rtb/exchange.py; with dmp.identity, dmp/identity.py's id rows and
rtb/people.py's people book, per expected id and person: expected_rows); its constants were measured on 2026-11-27 (2-core VM,
peak RSS of `rtb run --quiet`): quickstart 206 MiB, large 668 MiB; estimated 192 and 659 MiB;
`large`'s week at 1, 10 and 20 million users 598, 2,808 and 4,346 MiB, estimated 590, 2,808 and
4,344 (benchmarks/bench_memory.py).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from rtb.errors import InputError
from rtb.layout import RowLayout, row_layout
from rtb.scenario import Scenario
from rtb.supply_spec import DEFAULT_HOURLY_SHAPE
from rtb.types import N_BID_BINS, SECONDS_PER_DAY

CACHE_LINE = 64  # as rtb.state.CACHE_LINE: per-user rows are padded to it
# The process before any market: Python, numpy, numba and the compiled kernels, pydantic.
BASE_BYTES = 180 * 2**20
# Per user, besides the run's user row (rtb/layout.py): the audience (device, geo,
# consent u1; click propensity f4; the per-device id lists i4 and their alias tables
# f8 + i4). The segment words (true and visible, u4 each for at most 32 segments, else
# u8: dmp.audience.segment_dtype) are zeros from calloc, never touched when the DMP has
# no segments. Build temporaries (activity, random draws) are freed before the run's peak.
AUDIENCE_BYTES_PER_USER = 1 + 1 + 1 + 4 + 4 + 12
ROW_OF_BYTES = 4  # each id's row in the user rows, i4 (rtb.state.UserRows.row_of)
# Without dmp.identity the identity is one i4 index array (dmp.identity.trivial_identity).
TRIVIAL_IDENTITY_BYTES_PER_USER = 4
# With dmp.identity (dmp/identity.py, dmp/audience.py) the rows the run indexes by `user`
# are ids, not device-users. Per device-user: device and geo u1, click propensity f4,
# the id lists and alias tables (16), the true segments (touched only with segments),
# and the identity's device_person, first_id, login_id and no_id i8.
DEVICE_BYTES_WITH_IDENTITY = 1 + 1 + 4 + 16 + 4 * 8
# Per id row: the identity's person, id_device i8 and id_start_s f8; the audience's geo
# and consent u1, click propensity f4, and true and visible segments (written by per_id
# and np.where, so touched with or without segments: segment_bytes() more).
ID_BYTES = 3 * 8 + 1 + 1 + 4
# Per person: the login flag; the people book (rtb/people.py) is per_person_bytes().
PERSON_BYTES = 1
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


@dataclass(frozen=True)
class Rows:
    """Expected rows of a run's per-user arrays (dmp/identity.py)."""

    devices: int  # the DMP's users (dmp.users)
    ids: float  # id rows with an id: every id the devices show up under over the run
    people: float
    no_id: int  # no-id rows, one per geo (with dmp.identity only)

    @property
    def id_rows(self) -> float:
        """What the kernel's per-user books are sized by (market.n_users)."""
        return self.ids + self.no_id


def expected_rows(s: Scenario) -> Rows:
    """Devices, ids, people and no-id rows of a run of s: without dmp.identity one id and
    one person per device; with it, people are groups of devices (mean devices_per_person),
    a device of a person without a login has 1 + duration / id_lifetime ids over the run
    (exponential lifetimes: a Poisson number of changes, dmp.identity.churn_starts), a
    person with a login (login_share of them, so that share of the devices) one id."""
    n = s.dmp.users
    ident = s.dmp.identity
    if ident is None:
        return Rows(n, float(n), float(n), 0)
    weights = ident.device_weights()
    mean_devices = sum(k * w for k, w in enumerate(weights, start=1)) / sum(weights)
    people = n / mean_devices
    churn = 0.0 if ident.id_lifetime is None else s.simulation.duration / ident.id_lifetime
    login = ident.login_share
    ids = n * (1.0 - login) * (1.0 + churn) + people * login
    return Rows(n, ids, people, len(s.dmp.geos))


def user_row_layout(s: Scenario) -> RowLayout:
    """The run's per-user row (rtb/layout.py; rtb.state.user_layout from the market)."""
    caps = [c.frequency_cap for c in s.campaigns]
    per_advertiser: dict[str, int] = {}
    for c in s.campaigns:
        per_advertiser[c.advertiser] = per_advertiser.get(c.advertiser, 0) + 1
    return row_layout(len(s.campaigns), len(s.advertisers), s.simulation.start.timestamp(),
                      s.simulation.duration,
                      [None if cap is None else cap.kind for cap in caps],
                      [0 if cap is None else cap.impressions for cap in caps],
                      [1.0 if cap is None else cap.window for cap in caps],
                      sum(1 for a in s.advertisers if a.frequency_cap is not None),
                      max(per_advertiser.values(), default=1))


def segment_bytes(s: Scenario) -> int:
    """Bytes of one segment word (dmp.audience.segment_dtype: u4 up to 32 segments)."""
    return 4 if len(s.dmp.segments) <= 32 else 8


def per_id_bytes(s: Scenario) -> int:
    """Bytes every id row costs a run whether or not it is ever requested: the DSPs'
    estimates, the targeting words, its entry in the map to the user rows (and with
    dmp.identity, the id's own arrays: ID_BYTES). Its user row (rtb/layout.py) is handed
    out only when it first appears in a request: reached_share()."""
    nc, n_dsp = len(s.campaigns), len(s.dsps)
    market = (4 * n_dsp  # the DSPs' user factors f4
              + 8 * math.ceil(nc / 64))  # campaigns targeting the user, u8 words
    own = ID_BYTES + 2 * segment_bytes(s) if s.dmp.identity is not None else 0
    return ROW_OF_BYTES + market + own


def reached_share(requests: float, rows: float, activity_skew: float) -> float:
    """The expected share of `rows` ids that appear in at least one of `requests`
    requests, each drawn in proportion to activity (lognormal, sigma activity_skew, as
    dmp.audience draws it): E[1 - exp(-lambda)], lambda = requests / rows x activity /
    mean activity, integrated over the lognormal on a grid (no numpy here)."""
    if rows <= 0:
        return 0.0
    per_row, sigma = requests / rows, activity_skew
    steps, span = 400, 8.0
    dz = 2 * span / steps
    total = 0.0
    for k in range(steps):
        z = -span + (k + 0.5) * dz
        density = math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        total += -math.expm1(-per_row * math.exp(sigma * z - 0.5 * sigma * sigma)) * density * dz
    return min(1.0, total)


def per_person_bytes(s: Scenario) -> int:
    """Bytes every person costs a run with dmp.identity: the people book (rtb/people.py:
    u1 exposures per campaign and per advertiser, u1 counters per calendar-capped
    campaign and capped advertiser, f8 ring times per rolling cap impression; no
    padding) and the login flag. 0 without dmp.identity (no people book)."""
    if s.dmp.identity is None:
        return 0
    nc, n_adv = len(s.campaigns), len(s.advertisers)
    caps = [c.frequency_cap for c in s.campaigns if c.frequency_cap is not None]
    calendar = sum(1 for cap in caps if cap.kind != "rolling")
    ring = sum(cap.impressions for cap in caps if cap.kind == "rolling")
    adv_capped = sum(1 for a in s.advertisers if a.frequency_cap is not None)
    return nc + n_adv + calendar + 8 * ring + adv_capped + PERSON_BYTES


def per_device_bytes(s: Scenario) -> int:
    """Bytes every device-user costs by itself (the audience, the identity's lists)."""
    segments = bool(s.dmp.segments)
    if s.dmp.identity is None:  # the true and the visible words
        return (AUDIENCE_BYTES_PER_USER + TRIVIAL_IDENTITY_BYTES_PER_USER
                + (2 * segment_bytes(s) if segments else 0))
    return DEVICE_BYTES_WITH_IDENTITY + (segment_bytes(s) if segments else 0)


def per_user_bytes(s: Scenario) -> int:
    """Bytes every user (device-user, dmp.users) costs a run: its own arrays, its
    expected id rows' (their user rows as far as the run reaches them) and its share of
    a person's (the no-id rows are in tables)."""
    rows = expected_rows(s)
    requests = total_requests(s)
    row_bytes = user_row_layout(s).row_bytes * reached_share(requests, rows.ids,
                                                             s.dmp.activity_skew)
    return round(per_device_bytes(s) + rows.ids / rows.devices * (per_id_bytes(s) + row_bytes)
                 + rows.people / rows.devices * per_person_bytes(s))


def total_requests(s: Scenario) -> float:
    """The expected bid requests over the whole run."""
    daily = sum(slot.daily_requests for pub in s.publishers for slot in pub.slots)
    return daily * s.simulation.duration / SECONDS_PER_DAY  # the shapes have mean 1


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
    requests = total_requests(s)
    nc, n_dsp = len(s.campaigns), len(s.dsps)
    _, peak_tick = requests_per_tick(s)
    # A tick's bids twice (the formulas' and the finished ones, f8[n, nc]) and each
    # DSP's predicted CTR; with ticks large enough the next tick is prepared meanwhile.
    # With dmp.identity a request's id and person are arrays of their own (i8 each;
    # without it both are the device-user's array).
    per_request = (BYTES_PER_REQUEST + 8 * (2 * nc + n_dsp)
                   + (16 if s.dmp.identity is not None else 0))
    ticks_alive = 2 if peak_tick >= 5_000 else 1  # rtb.exchange.LOOK_AHEAD_MIN_REQUESTS
    n_slots = sum(len(pub.slots) for pub in s.publishers)
    rows = expected_rows(s)
    n_pub, n_adv = len(s.publishers), len(s.advertisers)
    tables = (n_slots * (len(s.dmp.geos) + 8 * math.ceil(nc / 64) * 3 + 64)
              + 2 * n_slots * 8 * math.ceil(nc / 64) * 3  # anonymous rows, at most one per slot
              + n_pub * nc * 3 * 8  # the sellers' book (rtb.books.SellerBook)
              + rows.no_id * per_id_bytes(s))  # the no-id rows (one per geo, dmp/identity.py)
    if s.report.advertiser_bids:  # rtb.books.BidBook: counts and sums, and the bid bins
        tables += n_pub * nc * 16 + n_pub * n_adv * N_BID_BINS * 8
    run_bytes = int(s.dmp.users * per_user_bytes(s) + tables + ticks_alive * peak_tick * per_request)
    n_ticks = math.ceil(sim.duration / min(sim.tick, sim.duration))
    slowdown = ADVERTISER_BIDS_SLOWDOWN if s.report.advertiser_bids else 1.0
    seconds = (START_S + requests * slowdown / REQUESTS_PER_S + n_ticks * SECONDS_PER_TICK
               + max(s.dmp.users, rows.id_rows) * (SECONDS_PER_USER + nc * SECONDS_PER_USER_CAMPAIGN))
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
            f" bytes each{_identity_text(s)} with {len(s.campaigns)} campaign{'s' if len(s.campaigns) > 1 else ''};"
            " use fewer users (dmp.users) or fewer campaigns"
            + (", or fewer --workers" if at_once > 1 else "")
            + (", or a shorter tick (its requests are many)" if e.run_bytes > 2 * s.dmp.users
               * per_user_bytes(s) else "") + (
                "; a shorter duration or a longer dmp.identity.id_lifetime makes fewer ids (each"
                " has its rows)" if _churns(s) else "; a shorter duration saves time, not memory")))
    seconds = e.seconds * math.ceil(runs / at_once)
    if seconds <= LONG_RUN_S:
        return None
    what = f"{runs} runs of {e.summary()} each" if runs > 1 else e.summary()
    return f"{file}: expected to take about {duration_text(seconds)} ({what})"


def _identity_text(s: Scenario) -> str:
    """' (under about N ids, N people)' with dmp.identity, else ''."""
    if s.dmp.identity is None:
        return ""
    rows = expected_rows(s)
    return f" (under about {count_text(rows.ids)} ids, {count_text(rows.people)} people)"


def _churns(s: Scenario) -> bool:
    """Whether ids churn (then the duration and the lifetime set how many there are)."""
    return s.dmp.identity is not None and s.dmp.identity.id_lifetime is not None


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
