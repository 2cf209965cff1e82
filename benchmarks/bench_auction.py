"""Benchmarks of rtb.auction.clear against a bare top-two numba loop on the same bids.

Run (from the repository root): python -m pytest benchmarks/bench_auction.py --benchmark-only
Every function is compiled (called once) before it is timed.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from numba import njit

from rtb import types as T
from rtb.auction import clear, clear_nb

N_REQ = 200_000
BIDDERS = (8, 32, 128)
NAN_SHARE = 0.10
RATIO_REPEATS = 15


@njit(cache=True)
def bare_top2_nb(bids, best_out, second_out):
    """The least work any clearing does: the highest and second-highest bid of each row.

    Written with the same selects on one comparison as clear_nb (the fastest form
    measured), so the ratio clear/bare is the cost of clear's extra work, not of a
    different scan.
    """
    n_req, n_bidders = bids.shape
    for i in range(n_req):
        best = -np.inf
        second = -np.inf
        for j in range(n_bidders):
            b = bids[i, j]
            gt = b > best
            lo = best if gt else b
            second = lo if lo > second else second
            best = b if gt else best
        best_out[i] = best
        second_out[i] = second


@njit(cache=True)
def branchy_top2_nb(bids, best_out, second_out):
    """The textbook if/elif top-two scan, timed to justify the selects in clear_nb."""
    n_req, n_bidders = bids.shape
    for i in range(n_req):
        best = -np.inf
        second = -np.inf
        for j in range(n_bidders):
            b = bids[i, j]
            if b > best:
                second = best
                best = b
            elif b > second:
                second = b
        best_out[i] = best
        second_out[i] = second


class Market:
    """One batch of bids, floors and preallocated outputs, with everything compiled."""

    def __init__(self, n_bidders: int) -> None:
        rng = np.random.default_rng([20_240_601, n_bidders])
        self.bids = rng.uniform(0.0, 5.0, (N_REQ, n_bidders))
        self.bids[rng.random((N_REQ, n_bidders)) < NAN_SHARE] = np.nan
        # Floors up to near the top of the bid range, so that some requests go unsold.
        self.floor = rng.uniform(0.0, 4.5, N_REQ)
        self.best = np.empty(N_REQ)
        self.second = np.empty(N_REQ)
        self.winner = np.empty(N_REQ, dtype=T.I4)
        self.price = np.empty(N_REQ)
        self.bare()
        self.branchy()
        self.kernel()
        self.clear()

    def bare(self) -> None:
        bare_top2_nb(self.bids, self.best, self.second)

    def branchy(self) -> None:
        branchy_top2_nb(self.bids, self.best, self.second)

    def kernel(self) -> None:
        clear_nb(self.bids, self.floor, self.floor, T.MECHANISM_SECOND, self.winner, self.price)

    def clear(self) -> tuple[np.ndarray, np.ndarray]:
        return clear(self.bids, self.floor, mechanism="second")


# Module scope: pytest groups the tests by bidder count, so each market (200 MB of
# bids at 128 bidders) is built once and dropped before the next one.
@pytest.fixture(scope="module", params=BIDDERS, ids=lambda n: f"{n}bidders")
def market(request) -> Market:
    return Market(request.param)


def _record_rate(benchmark, market: Market) -> None:
    benchmark.extra_info["n_req"] = N_REQ
    benchmark.extra_info["n_bidders"] = market.bids.shape[1]
    benchmark.extra_info["auctions_per_s"] = N_REQ / benchmark.stats.stats.median
    # The best round too: on a shared 2-core machine the median carries other jobs' noise.
    benchmark.extra_info["auctions_per_s_best"] = N_REQ / benchmark.stats.stats.min


def test_bare_top2(benchmark, market):
    benchmark(market.bare)
    _record_rate(benchmark, market)


def test_clear_nb(benchmark, market):
    benchmark(market.kernel)
    _record_rate(benchmark, market)


def test_clear(benchmark, market):
    winner, price = benchmark(market.clear)
    _record_rate(benchmark, market)
    # What was timed must be a real clearing of this batch.
    market.bare()
    sold = market.best >= market.floor
    np.testing.assert_array_equal(winner >= 0, sold)
    np.testing.assert_array_equal(price[sold], np.maximum(market.second, market.floor)[sold])


def _ratio_run(market: Market) -> dict[str, float]:
    """Best-of-N seconds for each contender, interleaved so drift hits all alike."""
    fns = {"bare": market.bare, "branchy": market.branchy, "clear": market.clear}
    best = dict.fromkeys(fns, np.inf)
    for _ in range(RATIO_REPEATS):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def test_clear_vs_bare_ratio(benchmark, market, capsys):
    """clear() throughput as a share of the bare loop's, both timed in this one run."""
    seconds = benchmark.pedantic(_ratio_run, args=(market,), rounds=1, iterations=1)
    rates = {name: N_REQ / s for name, s in seconds.items()}
    n_bidders = market.bids.shape[1]
    info = benchmark.extra_info
    info["n_bidders"] = n_bidders
    info["bare_auctions_per_s"] = rates["bare"]
    info["branchy_auctions_per_s"] = rates["branchy"]
    info["clear_auctions_per_s"] = rates["clear"]
    info["clear_over_bare"] = rates["clear"] / rates["bare"]
    with capsys.disabled():  # shown in the normal benchmark output, not only with -s
        print(
            f"\n{n_bidders:4d} bidders: bare {rates['bare'] / 1e6:7.1f} M/s,"
            f" if/elif {rates['branchy'] / 1e6:7.1f} M/s,"
            f" clear() {rates['clear'] / 1e6:7.1f} M/s,"
            f" clear/bare {info['clear_over_bare']:.0%}"
        )
