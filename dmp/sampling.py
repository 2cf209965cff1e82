"""Walker's alias method: O(1) vectorised draws from a fixed discrete distribution."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from rtb.prefetch import GATHER_AHEAD, prefetch_item


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


@njit(cache=True, nogil=True)
def alias_draw_ids_nb(threshold, alias, ids, u_index, u_keep, rows, out):
    """out[rows[i]] = ids[alias_draw(...)[i]] for uniforms u_index[rows], u_keep[rows]:
    the same draws as alias_draw (its operations, in its order), with the table's and
    the ids' lines requested GATHER_AHEAD draws ahead (tables of millions of entries)."""
    m, k = rows.size, threshold.size
    picked = np.empty(m, dtype=np.int64)
    for i in range(m):
        if i + GATHER_AHEAD < m:
            j = min(np.int64(u_index[rows[i + GATHER_AHEAD]] * k), k - 1)
            prefetch_item(threshold, j)
            prefetch_item(alias, j)
        r = rows[i]
        j = min(np.int64(u_index[r] * k), k - 1)
        picked[i] = j if u_keep[r] < threshold[j] else alias[j]
    for i in range(m):
        if i + GATHER_AHEAD < m:
            prefetch_item(ids, picked[i + GATHER_AHEAD])
        out[rows[i]] = ids[picked[i]]
