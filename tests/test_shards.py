"""The tick kernel on several threads (rtb.shards.Clearing) against one thread.

Random small markets (tests/test_kernel_twin.py's generator: budgets that run out
inside ticks, daily budgets and calendar windows whose boundaries fall inside them,
advertiser caps that couple campaigns, rolling caps, deals, no-id rows) must leave
identical results and identical books whatever the number of threads: every tick
either clears in shards with the one-thread answer, or is undone and cleared again
on one thread. Both paths must be taken. And whole runs give the same report bytes.
"""

from __future__ import annotations

import numpy as np
import pytest

import rtb.shards
from rtb.engine import Run
from rtb.scenario import parse_scenario
from rtb.shards import ROW_BLOCK_SHIFT, Clearing, shard_requests_nb
from rtb.state import assign_user_rows_nb
from tests.test_kernel_twin import assert_same, random_case

PER_WIN = ("prior_exposures", "prior_touch")  # written on campaign wins only


def _assert_same_result(got, want, where: str) -> None:
    won = want.winner >= 0
    for name in got._fields:
        if name.startswith("replaced"):
            continue  # written on rolling-cap wins only, to undo them; their effect is in the books
        x, y = getattr(got, name), getattr(want, name)
        if name in PER_WIN:
            x, y = x[won], y[won]
        np.testing.assert_array_equal(x, y, err_msg=f"{where}: {name}")


def _clear_all(case, market, threads: int):
    clearing = Clearing(threads)
    clearing.row_block_shift = 0  # the markets have a few user rows: one per block, spread over the shards
    try:
        results = [clearing.clear(req, bids, case.mechanism, *market) for req, bids in case.ticks]
    finally:
        clearing.close()
    return results, clearing


@pytest.mark.parametrize("block", range(4))
def test_threads_give_the_one_thread_answer_on_random_markets(block, monkeypatch):
    monkeypatch.setattr(rtb.shards, "MIN_SHARDED_REQUESTS", 1)  # shard even tiny ticks
    sharded = undone = 0
    for k in range(150):
        seed = (20_261_127, block, k)
        case = random_case(np.random.default_rng(seed))
        # The bid book keeps a tick on one thread: most cases go without it.
        if k % 4:
            case = case._replace(market=case.market._replace(bid_book=None))
        one = case.market.copy()
        want, _ = _clear_all(case, one, 1)
        for threads in (2, 3):
            many = case.market.copy()
            got, clearing = _clear_all(case, many, threads)
            for t, (g, w) in enumerate(zip(got, want)):
                _assert_same_result(g, w, f"seed {seed}, {threads} threads, tick {t}")
            assert_same(many[2:], one[2:], f"seed {seed}, {threads} threads")
            sharded += clearing.sharded_ticks
            undone += clearing.undone_ticks
    # Both ways of clearing a tick were taken.
    assert sharded >= 40 and undone >= 10, (sharded, undone)


def test_shards_split_user_rows_by_block_and_keep_time_order():
    rng = np.random.default_rng(7)
    user = rng.integers(0, 500, 2_000)
    no_id_row = 450  # users 450..499 are no-id rows: spread by request index
    # Rows handed out as the ids first appear (row 0: no id), as in a run.
    row_of, rows_in_use = np.zeros(500, np.int32), np.ones(1, np.int64)
    user_row = assign_user_rows_nb(row_of, rows_in_use, user, no_id_row)
    assert rows_in_use[0] > 2**ROW_BLOCK_SHIFT * 3  # rows in blocks of every shard
    shards = [shard_requests_nb(user, user_row, no_id_row, 3, ROW_BLOCK_SHIFT, k)
              for k in range(3)]
    assert sorted(np.concatenate(shards).tolist()) == list(range(user.size))
    shard_of_user = {}
    for k, mine in enumerate(shards):
        ids = user[mine] < no_id_row
        assert np.all(user_row[mine][ids] // 2**ROW_BLOCK_SHIFT % 3 == k)
        assert np.all(mine[~ids] % 3 == k)
        assert np.all(np.diff(mine) > 0)  # time order
        for u in user[mine][ids].tolist():
            assert shard_of_user.setdefault(u, k) == k  # a user's requests in one shard
    assert len(set(shard_of_user.values())) == 3


def _tight_scenario() -> dict:
    """Budgets that run out within ticks, daily budgets over midnights, hourly and
    daily calendar caps, a rolling cap and an advertiser cap over two campaigns."""
    return {
        "simulation": {"seed": 5, "start": "2026-03-01T22:00:00Z", "duration": "6h",
                       "tick": "90s"},
        "exchange": {"auction": "second", "market": {"kind": "lognormal", "median_cpm": 1.0}},
        "ssps": [{"id": "s"}],
        "publishers": [{"id": "p", "ssp": "s", "slots": [
            {"id": "a", "daily_requests": 6_000_000, "floor_cpm": 0.3}]}],
        "dsps": [{"id": "d"}],
        "advertisers": [{"id": "x", "value_per_conversion": 40.0,
                         "frequency_cap": {"impressions": 4, "window": "1h"}},
                        {"id": "y", "value_per_conversion": 60.0}],
        "campaigns": [
            {"id": "c1", "advertiser": "x", "dsp": "d", "budget": 60.0, "daily_budget": 25.0,
             "strategy": {"kind": "fixed", "bid_cpm": 2.0},
             "frequency_cap": {"impressions": 2, "window": "1h"}},
            {"id": "c2", "advertiser": "x", "dsp": "d", "budget": 400.0,
             "strategy": {"kind": "random", "max_cpm": 4.0},
             "frequency_cap": {"impressions": 3, "window": "2h", "kind": "rolling"}},
            {"id": "c3", "advertiser": "y", "dsp": "d", "budget": 90.0,
             "strategy": {"kind": "fixed", "bid_cpm": 1.4},
             "frequency_cap": {"impressions": 5, "window": "1d"}},
        ],
        "dmp": {"users": 30_000},
    }


def test_reports_are_byte_identical_whatever_the_thread_count():
    scenario = parse_scenario(_tight_scenario(), "tight.toml")
    reports, counts = [], []
    for threads in (1, 2, 3):
        run = Run(scenario, threads=threads)
        reports.append(run.finish().to_json())
        clearing = run.exchange.clearing
        counts.append((clearing.threads, clearing.sharded_ticks, clearing.undone_ticks))
    assert reports[1] == reports[0] and reports[2] == reports[0]
    # Its ticks (6,250 requests) are drawn ahead: that thread is one of the run's, and
    # the tick kernel gets the others.
    assert [threads for threads, _, _ in counts] == [1, 1, 2]
    assert counts[0][1:] == counts[1][1:] == (0, 0)
    assert counts[2][1] > 0 and counts[2][2] > 0, counts  # sharded ticks and undone ones


def test_without_a_look_ahead_thread_the_kernel_gets_every_thread():
    small_ticks = _tight_scenario()
    small_ticks["simulation"] |= {"tick": "60s", "duration": "2h"}  # 4,167 requests a tick
    scenario = parse_scenario(small_ticks, "tight.toml")
    reports, sharded = [], []
    for threads in (1, 2):
        run = Run(scenario, threads=threads)
        reports.append(run.finish().to_json())
        assert run.exchange.clearing.threads == threads
        sharded.append(run.exchange.clearing.sharded_ticks)
    assert reports[1] == reports[0]
    assert sharded[0] == 0 and sharded[1] > 0
