"""Walker's alias method: O(1) vectorised draws from a fixed discrete distribution."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit


class AliasTable(NamedTuple):
    threshold: np.ndarray  # f8[k]: keep index j when the second uniform is below this
    alias: np.ndarray  # i4[k]: otherwise take this index (k < 2**31: a table per device-user
    # of the audience, where i8 cost 4 bytes a user more)


def alias_table(weights: np.ndarray) -> AliasTable:
    """Build the table for weights (non-negative, positive sum)."""
    w = np.asarray(weights, dtype=np.float64)
    threshold, alias = _alias_build_nb(w * (w.size / w.sum()))
    return AliasTable(threshold, alias)


@njit(cache=True)
def _alias_build_nb(scaled):
    """Vose's pairing: each short column is topped up from one long column."""
    k = scaled.size
    threshold = np.ones(k)
    alias = np.empty(k, np.int32)
    small = np.empty(k, np.int32)
    large = np.empty(k, np.int32)
    for j in range(k):
        alias[j] = j
    n_small = 0
    n_large = 0
    for j in range(k):
        if scaled[j] < 1.0:
            small[n_small] = j
            n_small += 1
        else:
            large[n_large] = j
            n_large += 1
    while n_small > 0 and n_large > 0:
        n_small -= 1
        s = small[n_small]
        n_large -= 1
        g = large[n_large]
        threshold[s] = scaled[s]
        alias[s] = g
        scaled[g] -= 1.0 - scaled[s]
        if scaled[g] < 1.0:
            small[n_small] = g
            n_small += 1
        else:
            large[n_large] = g
            n_large += 1
    return threshold, alias


def alias_draw(table: AliasTable, u_index: np.ndarray, u_keep: np.ndarray) -> np.ndarray:
    """Indices for two arrays of uniforms in [0, 1) (one draw per pair)."""
    k = table.threshold.size
    j = np.minimum((u_index * k).astype(np.int64), k - 1)
    return np.where(u_keep < table.threshold[j], j, table.alias[j])
