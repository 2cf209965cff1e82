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
