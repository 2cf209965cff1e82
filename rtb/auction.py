"""Auction clearing: the public clear() and the numba kernels (*_nb) beside it."""

from __future__ import annotations

import numpy as np
from numba import njit

from rtb import types as T

# ---- public clear() and its kernels (issue 3) go above this line ----

# ---- simulation tick kernel ----
