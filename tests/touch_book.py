"""The kernel's per-user touch book and rolling-cap ring, stated on their own for the
kernel tests (plain Python ints, not rtb.books' helpers).

Outside the books a touch is (time in clock units << 16) | campaign, -1 = none
(pack_touch, rtb.books.encode_touch's form); every event time of a run is on the
simulation clock (whole 1/65536 s). The books hold one number per cell:

- a touch: ((clock units + 1) << touch_bits) | the campaign's rank among its
  advertiser's campaigns, 0 = none (book_value);
- a ring time: clock units + 1, 0 = never shown (ring_time).

Each is stored as a u4 low part (bits 0-31) and a high part (the bits from 32 on) of
0, 1, 2 or 4 bytes: a book without a high part has zero high columns [n_rows, 0], and
then holds only values below 2**32.
"""

from __future__ import annotations

import math

import numpy as np

from rtb import types as T

HIGH_DTYPES = {0: np.uint8, 1: np.uint8, 2: np.uint16, 4: np.uint32}  # as rtb/state.py lays them


def pack_touch(t: float, c: int) -> int:
    units = t * T.CLOCK_UNITS_PER_S
    assert units == int(units), f"{t} is not on the clock"
    return (int(units) << 16) | int(c)


def touch_times(packed) -> list[float]:
    return [-math.inf if p < 0 else (p >> 16) / T.CLOCK_UNITS_PER_S for p in np.ravel(packed).tolist()]


def touch_campaigns(packed) -> list[int]:
    return [-1 if p < 0 else p & 0xFFFF for p in np.ravel(packed).tolist()]


# ---- split values ---------------------------------------------------------------------

def split_columns(n_rows: int, n_cols: int, high: int) -> tuple[np.ndarray, np.ndarray]:
    """Zeroed (low u4[n_rows, n_cols], high part [n_rows, n_cols], or [n_rows, 0] when
    high is 0 bytes)."""
    return (np.zeros((n_rows, n_cols), np.uint32),
            np.zeros((n_rows, n_cols if high else 0), HIGH_DTYPES[high]))


def high_width(high: np.ndarray) -> int:
    """Bytes of a book's high part (0: none)."""
    return high.dtype.itemsize if high.shape[1] else 0


def read_value(low: np.ndarray, high: np.ndarray, row: int, k: int) -> int:
    value = int(low[row, k])
    if high.shape[1]:
        value |= int(high[row, k]) << 32
    return value


def write_value(low: np.ndarray, high: np.ndarray, row: int, k: int, value: int) -> None:
    """Store value, which must fit the book: below 2**32 without a high part."""
    value = int(value)
    assert 0 <= value < 2 ** (32 + 8 * high_width(high)), f"{value} does not fit the book"
    low[row, k] = value & 0xFFFF_FFFF
    if high.shape[1]:
        high[row, k] = value >> 32


def resplit(low: np.ndarray, high: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The same values in a book whose high part has `width` bytes (each must fit)."""
    value = low.astype(np.uint64)
    if high.shape[1]:
        value |= high.astype(np.uint64) << np.uint64(32)
    rest = value >> np.uint64(32)
    assert width == 4 or not (rest >> np.uint64(8 * width)).any(), "a value does not fit"
    new_low, new_high = split_columns(low.shape[0], low.shape[1], width)
    new_low[:] = value & np.uint64(0xFFFF_FFFF)
    if width:
        new_high[:] = rest
    return new_low, new_high


def width_for(value: int) -> int:
    """The narrowest high part (0, 1, 2 or 4 bytes) that holds value."""
    return next(w for w in (0, 1, 2, 4) if int(value) < 2 ** (32 + 8 * w))


# ---- ring times -----------------------------------------------------------------------

def ring_time(caps, row: int, k: int) -> float:
    """The time ring column k of a row holds, in seconds (-inf: never shown)."""
    value = read_value(caps.ring_low, caps.ring_high, row, k)
    return -math.inf if value == 0 else (value - 1) / T.CLOCK_UNITS_PER_S


def set_ring_time(caps, row: int, k: int, t: float) -> None:
    """Ring column k of a row holds an impression at t (on the clock; -inf: never shown)."""
    if t == -math.inf:
        write_value(caps.ring_low, caps.ring_high, row, k, 0)
        return
    units = t * T.CLOCK_UNITS_PER_S
    assert units == int(units) and units >= 0, f"{t} is not on the clock"
    write_value(caps.ring_low, caps.ring_high, row, k, int(units) + 1)


def ring_times(caps, row: int) -> list[float]:
    return [ring_time(caps, row, k) for k in range(caps.ring_low.shape[1])]


# ---- touches --------------------------------------------------------------------------

def book_value(users, t: float, c: int) -> int:
    """What a UserBook's touch book stores for (t, c): ((clock units + 1) << touch_bits)
    | c's rank among its advertiser's campaigns."""
    return ((pack_touch(t, 0) >> 16) + 1) << users.touch_bits | int(users.touch_rank[c])


def wide_value(users, value, a: int) -> int:
    """A UserBook's stored touch of advertiser a as pack_touch's (-1 = none)."""
    v = int(value)
    if v == 0:
        return -1
    bits = users.touch_bits
    return (((v >> bits) - 1) << 16) | int(users.touch_campaign[a, v & ((1 << bits) - 1)])


def touch_value(users, row: int, a: int) -> int:
    """The book value of a row's touch of advertiser a (0 = none)."""
    return read_value(users.touch_low, users.touch_high, row, a)


def set_touch_value(users, row: int, a: int, value: int) -> None:
    write_value(users.touch_low, users.touch_high, row, a, value)


def set_touch(users, row: int, a: int, t: float, c: int) -> None:
    """A row's touch of advertiser a is campaign c (one of a's) at t."""
    assert users.touch_campaign[a, users.touch_rank[c]] == c, f"campaign {c} is not advertiser {a}'s"
    set_touch_value(users, row, a, book_value(users, t, c))


def row_touches(users) -> np.ndarray:
    """i8[n_rows, n_adv]: every row's touches as pack_touch's (-1 = none)."""
    n_rows, n_adv = users.touch_low.shape
    return np.array([[wide_value(users, touch_value(users, row, a), a) for a in range(n_adv)]
                     for row in range(n_rows)], np.int64).reshape(n_rows, n_adv)


def rank_tables(advertiser, n_adv: int):
    """(touch_bits, touch_rank i4[nc], touch_campaign i4[n_adv, 2**bits]) of a touch
    book: each campaign's rank among its advertiser's campaigns, in index order."""
    rank = np.zeros(len(advertiser), np.int32)
    seen = [0] * n_adv
    for c, a in enumerate(advertiser):
        rank[c] = seen[a]
        seen[a] += 1
    bits = max(0, max(seen + [1]) - 1).bit_length()
    campaign = np.zeros((n_adv, 1 << bits), np.int32)
    for c, a in enumerate(advertiser):
        campaign[a, rank[c]] = c
    return bits, rank, campaign


def identity_rows(n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """(row_of, rows_in_use) of books whose row r is user r's, every row in use."""
    return np.arange(n_users, dtype=np.int32), np.array([n_users], np.int64)


def with_high(caps, users, width: int):
    """(caps, users) with their ring times and touches moved to books whose high part has
    `width` bytes (every value must fit)."""
    ring_low, ring_high = resplit(caps.ring_low, caps.ring_high, width)
    touch_low, touch_high = resplit(users.touch_low, users.touch_high, width)
    return (caps._replace(ring_low=ring_low, ring_high=ring_high),
            users._replace(touch_low=touch_low, touch_high=touch_high))


def random_width(rng, last_time_s: float, touch_bits: int) -> int:
    """A high part for a run whose times end by last_time_s: none (half the time) when
    its largest touch fits 32 bits, else the narrowest that holds it or a wider one."""
    units = int(last_time_s * T.CLOCK_UNITS_PER_S)
    need = width_for(((units + 1) << touch_bits) | ((1 << touch_bits) - 1))
    if need == 0 and rng.random() < 0.5:
        return 0
    return int(rng.choice([w for w in (1, 2, 4) if w >= need]))
