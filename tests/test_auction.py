"""Tests of rtb.auction.clear: its plain-Python twin, the floor rules, and auction theory."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rtb import types as T
from rtb.auction import clear, clear_nb


def clear_py(bids, floor_cpm, mechanism="second", soft_floor_cpm=None):
    """The rules of clear(), written out one auction at a time with Python lists."""
    n_req = bids.shape[0]
    winner = np.full(n_req, T.UNSOLD, dtype=np.int32)
    price = np.zeros(n_req)
    for i in range(n_req):
        floor = float(floor_cpm[i])
        soft = floor if soft_floor_cpm is None else float(soft_floor_cpm[i])
        offers = [(float(b), j) for j, b in enumerate(bids[i]) if not math.isnan(b)]
        if not offers:
            continue
        top = max(b for b, _ in offers)
        if top < floor:
            continue
        w = min(j for b, j in offers if b == top)  # tie rule: lowest column
        second = max((b for b, j in offers if j != w), default=-math.inf)
        if mechanism == "first" or top < soft:
            price[i] = top
        else:
            price[i] = max(second, soft)
        winner[i] = w
    return winner, price


# ---------------------------------------------------------------------------
# Random batches. Values come from a small grid, so that ties between bids and between
# bids and floors are common, or from a mix of the grid and continuous floats
# (negative bids included: they must never win). NaN holes are one more element value.

GRID = st.sampled_from([0.0, 1.0, 2.0, 3.0, 4.0])
MIXED_FLOORS = st.one_of(GRID, st.floats(0.0, 10.0))
MIXED_BIDS = st.one_of(GRID, st.floats(-1.0, 10.0))
NO_BID = st.just(math.nan)


@st.composite
def batches(draw):
    """(bids, floor, soft floor or None, mechanism), bids with NaN holes."""
    n_req = draw(st.integers(0, 12))
    n_bidders = draw(st.integers(0, 9))
    bid_values, floors = draw(st.sampled_from([(GRID, GRID), (MIXED_BIDS, MIXED_FLOORS)]))
    bids = draw(hnp.arrays(np.float64, (n_req, n_bidders), elements=NO_BID | bid_values))
    floor = draw(hnp.arrays(np.float64, n_req, elements=floors))
    soft = None
    if draw(st.booleans()):
        soft = floor + draw(hnp.arrays(np.float64, n_req, elements=floors))
    mechanism = draw(st.sampled_from(sorted(T.MECHANISMS)))
    return bids, floor, soft, mechanism


def assert_rules_hold(bids, floor, soft, mechanism, winner, price):
    """The rules of the issue, stated row by row without reference to the twin."""
    for i in range(bids.shape[0]):
        row = bids[i]
        offered = row[~np.isnan(row)]
        if offered.size == 0 or offered.max() < floor[i]:
            assert winner[i] == T.UNSOLD and price[i] == 0.0
            continue
        w = winner[i]
        top = offered.max()
        # The winner holds the top bid and is the first column to hold it.
        assert row[w] == top and w == np.flatnonzero(row == top)[0]
        assert floor[i] <= price[i] <= row[w]
        if mechanism == "first" or (soft is not None and row[w] < soft[i]):
            assert price[i] == row[w]
        else:
            assert price[i] >= (floor[i] if soft is None else soft[i])


# Generating the arrays dominates the run time (a few ms a batch), so one property
# test both compares with the twin and checks the rules on the same batches.
@settings(max_examples=2500, deadline=None)
@given(batches())
def test_clear_matches_python_twin_and_rules(batch):
    bids, floor, soft, mechanism = batch
    winner, price = clear(bids, floor, mechanism=mechanism, soft_floor_cpm=soft)
    assert winner.dtype == np.int32 and price.dtype == np.float64
    assert winner.shape == price.shape == (bids.shape[0],)
    winner_py, price_py = clear_py(bids, floor, mechanism, soft)
    np.testing.assert_array_equal(winner, winner_py)
    np.testing.assert_array_equal(price, price_py)
    assert_rules_hold(bids, floor, soft, mechanism, winner, price)


def test_ties_lowest_column_wins_and_pays_its_bid():
    bids = np.array([[1.0, 3.0, 3.0, 2.0], [np.nan, 2.0, 1.0, 2.0]])
    winner, price = clear(bids, np.zeros(2))
    np.testing.assert_array_equal(winner, [1, 1])
    np.testing.assert_array_equal(price, [3.0, 2.0])


def test_floor_rules_by_hand():
    nan = np.nan
    bids = np.array(
        [
            [1.0, 0.9, nan],  # top bid on the hard floor: sells, pays the floor
            [0.99, 0.5, nan],  # below the floor: unsold
            [nan, nan, nan],  # nobody bid: unsold
            [1.5, 1.2, nan],  # between hard and soft floor: pays its own bid
            [3.0, 1.2, nan],  # above the soft floor: pays the soft floor
            [3.0, 2.5, nan],  # above the soft floor: pays the second bid
            [-1.0, nan, nan],  # a negative bid never clears a floor
        ]
    )
    hard = np.array([1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    soft = np.array([1.0, 1.0, 0.0, 2.0, 2.0, 2.0, 0.0])
    winner, price = clear(bids, hard, soft_floor_cpm=soft)
    np.testing.assert_array_equal(winner, [0, -1, -1, 0, 0, 0, -1])
    np.testing.assert_array_equal(price, [1.0, 0.0, 0.0, 1.5, 2.0, 2.5, 0.0])
    _, first = clear(bids, hard, mechanism="first", soft_floor_cpm=soft)
    np.testing.assert_array_equal(first, [1.0, 0.0, 0.0, 1.5, 3.0, 3.0, 0.0])


def test_scalar_floors_and_any_layout_match_the_array_form():
    rng = np.random.default_rng(7)
    bids = rng.uniform(0.0, 4.0, (50, 6))
    bids[rng.random(bids.shape) < 0.2] = np.nan
    expected = clear(bids, np.full(50, 1.5), soft_floor_cpm=np.full(50, 2.5))
    for variant in (bids, np.asfortranarray(bids), bids.tolist()):
        got = clear(variant, 1.5, soft_floor_cpm=2.5)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    # A strided view (every other column) is cleared as the bidders it shows.
    got = clear(bids[:, ::2], 1.5)
    want = clear_py(np.ascontiguousarray(bids[:, ::2]), np.full(50, 1.5))
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_kernel_accepts_the_hard_floor_as_its_soft_floor():
    bids = np.array([[2.0, 1.0], [0.5, np.nan]])
    floor = np.array([0.8, 0.8])
    winner = np.empty(2, np.int32)
    price = np.empty(2)
    clear_nb(bids, floor, floor, T.MECHANISM_SECOND, winner, price)
    np.testing.assert_array_equal(winner, [0, -1])
    np.testing.assert_array_equal(price, [1.0, 0.0])


BIDS = np.ones((3, 2))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bids": np.ones(3), "floor_cpm": 0.0}, "bids must be 2-D"),
        ({"bids": np.ones((2, 3, 2)), "floor_cpm": 0.0}, "bids must be 2-D"),
        ({"bids": BIDS, "floor_cpm": np.zeros(2)}, r"floor_cpm must .* shape \(3,\)"),
        ({"bids": BIDS, "floor_cpm": np.zeros((3, 1))}, r"floor_cpm must .* shape \(3,\)"),
        ({"bids": BIDS, "floor_cpm": np.array([0.0, -0.5, 0.0])}, r"floor_cpm\[1\] = -0.5"),
        ({"bids": BIDS, "floor_cpm": np.array([0.0, 0.0, np.nan])}, r"floor_cpm\[2\] = nan"),
        ({"bids": BIDS, "floor_cpm": np.inf}, r"floor_cpm\[0\] = inf"),
        ({"bids": BIDS, "floor_cpm": 0.0, "mechanism": "vickrey"}, "unknown mechanism"),
        ({"bids": BIDS, "floor_cpm": 0.0, "mechanism": T.MECHANISM_FIRST}, "unknown mechanism"),
        (
            {"bids": BIDS, "floor_cpm": 1.0, "soft_floor_cpm": np.array([1.0, 0.5, 2.0])},
            r"soft_floor_cpm\[1\] = 0.5 is below floor_cpm\[1\] = 1.0",
        ),
        ({"bids": BIDS, "floor_cpm": 1.0, "soft_floor_cpm": np.ones(4)}, "soft_floor_cpm must"),
        ({"bids": BIDS, "floor_cpm": 1.0, "soft_floor_cpm": np.nan}, "soft_floor_cpm"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        clear(**kwargs)


# ---------------------------------------------------------------------------
# Auction theory. n bidders with values i.i.d. uniform on [0, 1] and a reserve r:
# second price with truthful bids earns (n-1)/(n+1) + r^n - 2n r^(n+1)/(n+1) per
# auction, and first price with the symmetric equilibrium bids earns the same
# (revenue equivalence). Simulated means must land within 5 standard errors.

N_AUCTIONS = 200_000
Z = 5.0


def expected_revenue(n: int, r: float) -> float:
    return (n - 1) / (n + 1) + r**n - 2 * n * r ** (n + 1) / (n + 1)


def equilibrium_first_price_bids(values: np.ndarray, r: float) -> np.ndarray:
    """b(v) = v - (v^n - r^n) / (n v^(n-1)) for v >= r; no bid (NaN) below the reserve."""
    n = values.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):  # v = 0 exactly: a NaN, no bid
        bids = values - (values**n - r**n) / (n * values ** (n - 1))
    return np.where(values >= r, bids, np.nan)


def assert_mean_near(revenue: np.ndarray, expected: float) -> None:
    se = revenue.std(ddof=1) / math.sqrt(revenue.size)
    assert abs(revenue.mean() - expected) <= Z * se, (revenue.mean(), expected, se)


@pytest.mark.parametrize("n", [2, 3, 5])
@pytest.mark.parametrize("r", [0.0, 0.3, 0.5])
def test_second_price_revenue_matches_theory(n, r):
    values = np.random.default_rng([n, int(r * 10), 2]).random((N_AUCTIONS, n))
    _, price = clear(values, r, mechanism="second")
    assert_mean_near(price, expected_revenue(n, r))


@pytest.mark.parametrize("n", [2, 3, 5])
@pytest.mark.parametrize("r", [0.0, 0.3, 0.5])
def test_first_price_equilibrium_revenue_matches_theory(n, r):
    values = np.random.default_rng([n, int(r * 10), 1]).random((N_AUCTIONS, n))
    winner, price = clear(equilibrium_first_price_bids(values, r), r, mechanism="first")
    assert_mean_near(price, expected_revenue(n, r))
    # b(v) is increasing, so the highest value still wins wherever it reaches the reserve.
    top = values.max(axis=1)
    sold = winner >= 0
    np.testing.assert_array_equal(sold, top >= r)
    np.testing.assert_array_equal(winner[sold], values[sold].argmax(axis=1))


@pytest.mark.parametrize("n", [2, 3])
def test_reserve_one_half_maximises_revenue(n):
    """For uniform values the optimal reserve is 1/2 whatever n (Myerson)."""
    values = np.random.default_rng([n, 3]).random((N_AUCTIONS, n))
    grid = np.round(np.arange(0.0, 1.0, 0.1), 1)
    # The same values at every reserve (common random numbers), so that the small
    # revenue differences between neighbouring reserves are not drowned by noise.
    revenue = np.array([clear(values, r)[1].mean() for r in grid])
    assert grid[revenue.argmax()] == 0.5
    np.testing.assert_allclose(revenue, [expected_revenue(n, r) for r in grid], atol=0.005)
