"""The kernel's touch book, stated on its own for the kernel tests.

A touch is (time in clock units << 16) | campaign, -1 = none; every event time of a
run is on the simulation clock (whole 1/65536 s).
"""

from __future__ import annotations

import math

import numpy as np

from rtb import types as T


def pack_touch(t: float, c: int) -> int:
    units = t * T.CLOCK_UNITS_PER_S
    assert units == int(units), f"{t} is not on the clock"
    return (int(units) << 16) | int(c)


def touch_times(packed) -> list[float]:
    return [-math.inf if p < 0 else (p >> 16) / T.CLOCK_UNITS_PER_S for p in np.ravel(packed).tolist()]


def touch_campaigns(packed) -> list[int]:
    return [-1 if p < 0 else p & 0xFFFF for p in np.ravel(packed).tolist()]


def book_value(users, t: float, c: int) -> int:
    """What a UserBook's touch book stores for (t, c): pack_touch's in a wide (i8) book;
    in a narrow (u4) one ((clock units + 1) << touch_bits) | c's rank among its
    advertiser's campaigns."""
    if users.last_touch.dtype.itemsize == 8:
        return pack_touch(t, c)
    return ((pack_touch(t, 0) >> 16) + 1) << users.touch_bits | int(users.touch_rank[c])


def wide_value(users, value, a: int) -> int:
    """A UserBook's stored touch of advertiser a as pack_touch's (-1 = none)."""
    v = int(value)
    if users.last_touch.dtype.itemsize == 8:
        return v
    if v == 0:
        return -1
    bits = users.touch_bits
    return (((v >> bits) - 1) << 16) | int(users.touch_campaign[a, v & ((1 << bits) - 1)])


def narrow_tables(advertiser, n_adv: int):
    """(touch_bits, touch_rank i4[nc], touch_campaign i4[n_adv, 2**bits]) of a narrow book:
    each campaign's rank among its advertiser's campaigns."""
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
