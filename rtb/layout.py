"""The per-user row of a run: which counters, rings and touches it holds, how wide, where.

Arithmetic on plain numbers (no arrays), shared by rtb/state.py, which lays the row out,
and rtb/estimate.py, which prices it before a run. One row per user holds everything
the tick kernel writes about that user, so a request's reads share a few cache lines:

    [ rolling-cap times f8 | last touches u4/i8 | cap counters u1 | advertiser counters u1
      | exposures u1 ]

Every column is the narrowest type that cannot change a result of the run at hand:

- A cap whose window never ends inside the run (a calendar cap whose first UTC window
  outlasts the run; a rolling cap whose window is at least the run's duration: t -
  window < 0 <= every impression time) counts every impression of the run: the
  campaign's exposures column is that count (exposures saturate at 255, past any
  limit), so it needs no column of its own.
- Calendar counters (u1) only for the other calendar caps; advertiser counters only for
  capped advertisers. The kernel finds a campaign's counter through a column map
  (rtb.books.CapBook.cal_col) into the row from the counters on.
- Ring times (f8 seconds, exact clock times) only for the other rolling caps.
- Last touches per advertiser in u4 when the run's every touch fits, else the wide i8
  encoding (rtb.books.encode_touch). The u4 touch is ((clock units + 1) << bits) | k,
  k the campaign's rank among its advertiser's campaigns, 0 = none: exact when
  ((duration units + 1) << bits) | (2**bits - 1) < 2**32 (narrow_touch_fits()).
- Exposures u1 per campaign (saturating at 255, as fatigue reads them).

Rows are padded to 8 bytes (the f8/i8 columns stay aligned); a row of at most a cache
line is padded to a power of two that divides one, so no row straddles two lines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CLOCK_UNITS_PER_S = 65536  # as rtb.types.CLOCK_UNITS_PER_S (this module imports no numpy)
CACHE_LINE = 64


def touch_rank_bits(max_campaigns_per_advertiser: int) -> int:
    """Bits of a campaign's rank among its advertiser's campaigns (0 for one campaign)."""
    return max(0, max_campaigns_per_advertiser - 1).bit_length()


def narrow_touch_fits(duration_s: float, rank_bits: int) -> bool:
    """Whether every touch of a run of duration_s fits the u4 encoding: event times are
    on the clock and below the duration, so a touch's clock units are < duration units."""
    units = math.ceil(duration_s * CLOCK_UNITS_PER_S)
    return ((units + 1) << rank_bits) | ((1 << rank_bits) - 1) < 2**32


# How a campaign's cap is kept (cap_columns()).
NO_COLUMN = "none"  # no cap
BY_EXPOSURES = "exposures"  # its window never ends in the run: the exposures column counts
COUNTER = "counter"  # a calendar counter u1
RING = "ring"  # `limit` ring times f8


def first_window_end_s(start_epoch_s: float, window_s: float) -> float:
    """Seconds from the start to the first UTC-aligned calendar window boundary."""
    return window_s - (start_epoch_s % window_s)


def cap_columns(cap_kinds: list[str | None], cap_windows_s: list[float], start_epoch_s: float,
                duration_s: float, compact: bool = True) -> list[str]:
    """How each campaign's cap is kept in the row (NO_COLUMN, BY_EXPOSURES, COUNTER,
    RING); compact=False: every cap its own counter or ring (the wide layout)."""
    out = []
    for kind, window in zip(cap_kinds, cap_windows_s):
        if kind is None:
            out.append(NO_COLUMN)
        elif kind == "calendar":
            never_ends = first_window_end_s(start_epoch_s, window) >= duration_s
            out.append(BY_EXPOSURES if compact and never_ends else COUNTER)
        else:
            out.append(BY_EXPOSURES if compact and window >= duration_s else RING)
    return out


@dataclass(frozen=True)
class RowLayout:
    """Byte offsets and widths of one user's row (see the module docstring)."""

    ring: int  # f8 ring slots (rolling caps kept as times)
    touch_bytes: int  # 4 (narrow) or 8 (wide) per advertiser
    n_adv: int  # last-touch columns
    n_counts: int  # u1 calendar counters
    n_adv_counts: int  # u1 advertiser counters
    nc: int  # u1 exposures

    @property
    def align(self) -> int:
        """Bytes a row's wide columns need it aligned to."""
        return 8 if self.ring or self.touch_bytes == 8 else self.touch_bytes if self.n_adv else 1

    @property
    def touch_at(self) -> int:
        return 8 * self.ring

    @property
    def counts_at(self) -> int:
        return self.touch_at + self.touch_bytes * self.n_adv

    @property
    def adv_counts_at(self) -> int:
        return self.counts_at + self.n_counts

    @property
    def exposures_at(self) -> int:
        return self.adv_counts_at + self.n_adv_counts

    @property
    def used_bytes(self) -> int:
        return self.exposures_at + self.nc

    @property
    def row_bytes(self) -> int:
        """used_bytes padded: to its alignment, or to a power of two that divides a
        cache line."""
        used = self.used_bytes
        if used <= CACHE_LINE:
            return 1 << max(0, used - 1).bit_length() if used else 0
        return -(-used // self.align) * self.align


def row_layout(nc: int, n_adv: int, start_epoch_s: float, duration_s: float,
               cap_kinds: list[str | None], cap_limits: list[int], cap_windows_s: list[float],
               n_capped_advertisers: int, max_campaigns_per_advertiser: int,
               compact: bool = True) -> RowLayout:
    """The row of a run: cap_kinds per campaign ("calendar", "rolling" or None), their
    limits and windows (seconds); compact=False: the wide layout (a counter per calendar
    cap, a ring per rolling cap, i8 touches), which gives the same results."""
    columns = cap_columns(cap_kinds, cap_windows_s, start_epoch_s, duration_s, compact)
    counters = columns.count(COUNTER)
    ring = sum(limit for how, limit in zip(columns, cap_limits) if how == RING)
    narrow = compact and narrow_touch_fits(duration_s,
                                           touch_rank_bits(max_campaigns_per_advertiser))
    return RowLayout(ring=ring, touch_bytes=4 if narrow else 8, n_adv=n_adv, n_counts=counters,
                     n_adv_counts=n_capped_advertisers, nc=nc)
