"""Auction clearing: the public clear() and its numba kernel.

The simulation's tick kernel, which clears a whole tick under budgets, caps, deals
and targeting, is rtb/kernel.py."""

from __future__ import annotations

from typing import Literal

import numpy as np
from numba import njit

from rtb import types as T

Mechanism = Literal["first", "second"]


def clear(
    bids: np.ndarray,
    floor_cpm: np.ndarray | float,
    *,
    mechanism: Mechanism = "second",
    soft_floor_cpm: np.ndarray | float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Clear a batch of independent sealed-bid auctions, one per row of `bids`.

    Args:
        bids: f8[n_req, n_bidders] CPM bids, NaN = no bid. Other values are not
            scanned (that would cost as much as the auction): every non-NaN value
            is a bid, and one below the floor, e.g. a negative one, cannot win.
        floor_cpm: f8[n_req] hard floors, or one float for every row; finite and
            >= 0. A bid below the hard floor cannot win; a bid equal to it can.
        mechanism: "second" (the winner pays max(second-highest bid, floor),
            never more than its own bid) or "first" (the winner pays its bid).
        soft_floor_cpm: f8[n_req] soft floors, or one float, finite and >=
            floor_cpm; None means none (the same as soft = hard). A top bid in
            [hard, soft) wins and pays its own bid; a top bid >= soft clears by
            `mechanism` with the soft floor as the reserve.

    Returns:
        (winner, price_cpm): i4[n_req] column of the winning bidder, UNSOLD (-1)
        when no bid reaches the floor; f8[n_req] price paid, 0.0 when unsold.

    Ties: columns are scanned in index order and the leader changes only on a
    strictly greater bid, so among equal top bids the lowest column wins. The
    second-highest bid then equals the top bid, so in second price the winner
    pays its own bid.

    Raises:
        ValueError: bids not 2-D; a floor of the wrong shape; a NaN, negative or
            infinite floor; a soft floor below the hard floor; unknown mechanism.
    """
    bids = np.asarray(bids, dtype=T.F8)
    if bids.ndim != 2:
        raise ValueError(
            f"bids must be 2-D [n_req, n_bidders], got {bids.ndim}-D shape {bids.shape}"
        )
    # The kernel is compiled for C-contiguous rows; a copy only when they are not.
    bids = np.ascontiguousarray(bids)
    n_req = bids.shape[0]
    if not isinstance(mechanism, str) or mechanism not in T.MECHANISMS:
        raise ValueError(
            f"unknown mechanism {mechanism!r}; expected one of {sorted(T.MECHANISMS)}"
        )
    floor = _floor_array("floor_cpm", floor_cpm, n_req)
    if soft_floor_cpm is None:
        soft = floor
    else:
        soft = _floor_array("soft_floor_cpm", soft_floor_cpm, n_req)
        below = np.less(soft, floor)
        if below.any():
            i = int(np.argmax(below))
            raise ValueError(
                f"soft_floor_cpm[{i}] = {float(soft[i])} is below"
                f" floor_cpm[{i}] = {float(floor[i])}"
            )
    winner = np.empty(n_req, dtype=T.I4)
    price_cpm = np.empty(n_req, dtype=T.F8)
    clear_nb(bids, floor, soft, T.MECHANISMS[mechanism], winner, price_cpm)
    return winner, price_cpm


def _floor_array(name: str, value: np.ndarray | float, n_req: int) -> np.ndarray:
    """`value` as a contiguous f8[n_req] (a scalar repeated); ValueError unless finite, >= 0."""
    floor = np.asarray(value, dtype=T.F8)
    if floor.ndim == 0:
        floor = np.full(n_req, floor, dtype=T.F8)
    elif floor.shape != (n_req,):
        raise ValueError(
            f"{name} must be a float or have shape ({n_req},) to match bids,"
            f" got shape {floor.shape}"
        )
    floor = np.ascontiguousarray(floor)
    # min and max propagate NaN, so two reductions (no temporaries) catch every bad
    # floor; the slower search for the first culprit runs only to word the error.
    if n_req and not (floor.min() >= 0.0 and floor.max() < np.inf):
        i = int(np.argmax(~((floor >= 0.0) & (floor < np.inf))))
        raise ValueError(f"{name}[{i}] = {float(floor[i])}: floors must be finite and >= 0")
    return floor


@njit(cache=True)
def clear_nb(bids, floor_cpm, soft_floor_cpm, mechanism_code, winner_out, price_out):
    """Kernel of clear() on validated arrays: fills winner_out i4[n] and price_out f8[n].

    soft_floor_cpm may be floor_cpm itself (no soft floor); mechanism_code is a
    value of types.MECHANISMS.
    """
    n_req, n_bidders = bids.shape
    for i in range(n_req):
        best = -np.inf
        second = -np.inf
        leader = T.UNSOLD
        for j in range(n_bidders):
            b = bids[i, j]
            # Selects on one comparison, which LLVM compiles without branches: an
            # if/elif scan mispredicts on random bids and ran 2-7x slower at 8-128
            # bidders (docs/auction.md). Strictly greater: among equal bids the lower
            # column stays the leader, and the tie makes `second` equal to `best`.
            # NaN compares false, so a NaN bid leaves `best` and `leader` alone and
            # its `lo` (NaN) fails `lo > second`: no separate NaN test needed.
            gt = b > best
            lo = best if gt else b  # the lower of (best, b)
            second = lo if lo > second else second
            leader = j if gt else leader
            best = b if gt else best
        if mechanism_code == T.MECHANISM_FIRST:
            price = best
        else:
            # min(best, max(second, soft)) is the soft-floor rule in one branch-free
            # expression: a top bid below the soft floor pays itself, any other pays
            # max(second, soft), which is then <= best.
            reserve = soft_floor_cpm[i]
            cap = second if second > reserve else reserve
            price = best if best < cap else cap
        # best is -inf when nobody bid and floors are >= 0: `sold` implies a bidder.
        sold = best >= floor_cpm[i]
        winner_out[i] = leader if sold else T.UNSOLD
        # A 0/1 multiply instead of a select, which LLVM compiled to a mispredicting
        # branch; the max(, 0) keeps an unsold row's price (maybe -inf) finite.
        price_out[i] = (price if price > 0.0 else 0.0) * sold
