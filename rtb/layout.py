"""The per-user row of a run: which counters, rings and touches it holds, how wide, where.

Arithmetic on plain numbers (no arrays), shared by rtb/state.py, which lays the row out,
and rtb/estimate.py, which prices it before a run. One row per user holds everything
the tick kernel writes about that user, so a request's reads share a few cache lines:

    [ ring times u4 | last touches u4 | their high parts u1/u2/u4 | cap counters u1
      | advertiser counters u1 | exposures u1 ]

Every column is the narrowest type that cannot change a result of the run at hand:

- A cap whose window never ends inside the run (a calendar cap whose first UTC window
  outlasts the run; a rolling cap whose window is at least the run's duration: t -
  window < 0 <= every impression time) counts every impression of the run: the
  campaign's exposures column is that count (exposures saturate at 255, past any
  limit), so it needs no column of its own.
- Calendar counters (u1) only for the other calendar caps; advertiser counters only for
  capped advertisers. The kernel finds a campaign's counter through a column map
  (rtb.books.CapBook.cal_col) into the row from the counters on.
- Ring times only for the other rolling caps: an impression's exact clock time as
  clock units + 1 (0 = never shown).
- Last touches per advertiser: ((clock units + 1) << bits) | k, k the campaign's rank
  among its advertiser's campaigns, 0 = none (rtb.books.book_touch).
- Ring times and touches are stored as a u4 low part and, when the run's touches do not
  fit 32 bits (value_bytes()), a high part of the fewest bytes that hold the rest: a
  week of clock units needs 36 bits, so a week's touch takes 5 bytes, not 8.
- Exposures u1 per campaign (saturating at 255, as fatigue reads them).

Every column is zero for a user never shown an ad: a row needs no filling, and a row
never written is never faulted in (rtb.state hands rows out to users as they appear).
Rows are padded to 4 bytes (the u4 columns stay aligned); a row of at most a cache line
is padded to a power of two that divides one, so no row straddles two lines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CLOCK_UNITS_PER_S = 65536  # as rtb.types.CLOCK_UNITS_PER_S (this module imports no numpy)
CACHE_LINE = 64


def touch_rank_bits(max_campaigns_per_advertiser: int) -> int:
    """Bits of a campaign's rank among its advertiser's campaigns (0 for one campaign)."""
    return max(0, max_campaigns_per_advertiser - 1).bit_length()


def value_bits(duration_s: float, rank_bits: int) -> int:
    """Bits of the largest touch of a run of duration_s: event times are on the clock
    and below the duration, so a touch's clock units are < duration units; ring times
    (units + 1) need no more."""
    units = math.ceil(duration_s * CLOCK_UNITS_PER_S)
    return (((units + 1) << rank_bits) | ((1 << rank_bits) - 1)).bit_length()


def high_bytes(duration_s: float, rank_bits: int, compact: bool = True) -> int:
    """Bytes of the high part of ring times and touches: 0 when they fit u4, else the
    fewest of 1, 2 or 4 that hold the rest (compact=False: at least 1)."""
    rest = max(0, value_bits(duration_s, rank_bits) - 32)
    need = next(width for width in (0, 1, 2, 4) if 8 * width >= rest)
    return need if compact else max(1, need)


# How a campaign's cap is kept (cap_columns()).
NO_COLUMN = "none"  # no cap
BY_EXPOSURES = "exposures"  # its window never ends in the run: the exposures column counts
COUNTER = "counter"  # a calendar counter u1
RING = "ring"  # `limit` ring times


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

    ring: int  # ring slots (rolling caps kept as times)
    high: int  # bytes of the high part of each ring time and touch (0, 1, 2 or 4)
    n_adv: int  # last-touch columns
    n_counts: int  # u1 calendar counters
    n_adv_counts: int  # u1 advertiser counters
    nc: int  # u1 exposures

    @property
    def touch_bytes(self) -> int:
        """Bytes of one touch (and of one ring time): the u4 low part and the high part."""
        return 4 + self.high

    @property
    def align(self) -> int:
        """Bytes a row's u4 columns need it aligned to."""
        return 4 if self.ring or self.n_adv else 1

    @property
    def touch_at(self) -> int:
        return 4 * self.ring

    @property
    def ring_high_at(self) -> int:
        return self.touch_at + 4 * self.n_adv

    @property
    def touch_high_at(self) -> int:
        return self.ring_high_at + self.high * self.ring

    @property
    def counts_at(self) -> int:
        return self.touch_high_at + self.high * self.n_adv

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
    cap, a ring per rolling cap, a high part for every time), which gives the same
    results."""
    columns = cap_columns(cap_kinds, cap_windows_s, start_epoch_s, duration_s, compact)
    counters = columns.count(COUNTER)
    ring = sum(limit for how, limit in zip(columns, cap_limits) if how == RING)
    high = high_bytes(duration_s, touch_rank_bits(max_campaigns_per_advertiser), compact)
    return RowLayout(ring=ring, high=high, n_adv=n_adv, n_counts=counters,
                     n_adv_counts=n_capped_advertisers, nc=nc)
