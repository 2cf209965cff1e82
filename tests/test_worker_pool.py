"""The process's pool of local workers (rtb.worker_pool): kept from one sweep to the next,
the same bytes as a serial run, and gone with an interrupted block."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

import rtb.sweep as sw
from rtb import worker_pool
from rtb.engine import simulate
from rtb.scenario import load_scenario


@pytest.fixture(autouse=True)
def no_pool_before_or_after():
    worker_pool.shutdown()
    yield
    worker_pool.shutdown()


def _pids() -> set[int]:
    return set(worker_pool._shared._processes) if worker_pool._shared is not None else set()


def _gone(pids: set[int], within_s: float = 10.0) -> bool:
    """Every process of `pids` has ended (a zombie, not yet reaped, counts as ended)."""
    deadline = time.monotonic() + within_s
    while any(_running(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_same_worker_serves_two_sweeps_with_the_bytes_of_a_serial_run(two_hour_spec, tmp_path):
    # Two runs and two workers: the pool's one worker runs each sweep's first run,
    # this process the second.
    first, second = sw.plan([0.5], [3, 4]), sw.plan([2.0], [3, 5])
    sw.sweep(two_hour_spec, first, tmp_path / "a", workers=2)
    pids = _pids()
    assert len(pids) == 1 and os.getpid() not in pids
    sw.sweep(two_hour_spec, second, tmp_path / "b", workers=2)
    assert _pids() == pids
    for folder, runs in (("a", first), ("b", second)):
        for run in runs:
            expected = simulate(two_hour_spec, run.seed, budget_scale=run.budget_scale).to_json()
            assert (tmp_path / folder / run.file_name).read_bytes() == expected, run


def _nap(scenario, run, threads=None) -> bytes:
    """A worker's job that takes a second and says which process ran it."""
    time.sleep(1.0)
    return str(os.getpid()).encode()


def test_the_batch_is_shared_to_the_end_not_queued_behind_a_worker(tmp_path, monkeypatch):
    # A worker is handed a job only when it is free: with one job queued behind the
    # one it runs, it would run three of these four while this process ran one.
    monkeypatch.setattr(sw, "run_one", _nap)
    jobs = [sw.Job(None, sw.SweepRun(1.0, seed), tmp_path / f"{seed}") for seed in range(4)]
    with sw.Runner(workers=2) as runner:
        runner.run(jobs[:2])  # starts the worker
        for job in jobs[:2]:
            job.path.unlink()
        runner.run(jobs)
    ran_by = [int(job.path.read_bytes()) for job in jobs]
    assert ran_by[2:] == [os.getpid()] * 2 and os.getpid() not in ran_by[:2]


def test_ctrl_c_in_a_block_terminates_the_workers_and_the_next_block_starts_anew(
        two_hour_spec, tmp_path):
    runs = sw.plan([0.5, 1.0, 2.0], [3])
    jobs = [sw.Job(two_hour_spec, run, tmp_path / run.file_name) for run in runs]
    seen: set[int] = set()

    def interrupt(job) -> None:  # this process's own run ends while the worker runs
        seen.update(_pids())
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), sw.Runner(workers=2) as runner:
        runner.run(jobs, interrupt)
    assert len(seen) == 1 and _gone(seen)
    assert worker_pool._shared is None
    with sw.Runner(workers=2) as runner:
        runner.run(jobs)
    assert _pids() and not _pids() & seen
    assert all(job.path.exists() for job in jobs)


def test_a_killed_idle_worker_is_replaced_at_the_next_block():
    with worker_pool.lease(1) as pool:
        pid = pool.submit(os.getpid).result()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not worker_pool._broken(pool) and time.monotonic() < deadline:
        time.sleep(0.05)
    with worker_pool.lease(1) as fresh:
        assert fresh is not pool and fresh.submit(os.getpid).result() != pid


def test_another_size_replaces_an_idle_pool_but_not_one_in_use():
    with worker_pool.lease(1) as one:
        with worker_pool.lease(2) as own:  # the pool of 1 is in use: a pool of its own
            assert own is not one
        assert worker_pool._shared is one
    with worker_pool.lease(1) as again:
        assert again is one
    with worker_pool.lease(2) as two:  # idle now: replaced
        assert two is not one and worker_pool._shared is two


def test_a_strategy_file_edited_between_sweeps_is_read_again_by_the_same_worker(
        tmp_path, two_hour_scenario):
    from test_custom_strategies import BIDDERS, CAMPAIGN, constant, scenario_with

    path = scenario_with(tmp_path, two_hour_scenario, constant())
    runs = sw.plan([1.0], [1, 2])
    sw.sweep(load_scenario(path), runs, tmp_path / "before", workers=2)
    pids = _pids()
    doubled = BIDDERS.replace("np.full(len(view.floor_cpm), self.bid_cpm)",
                              "np.full(len(view.floor_cpm), 2 * self.bid_cpm)")
    assert doubled != BIDDERS
    (tmp_path / "my_bidders.py").write_text(doubled)
    edited = load_scenario(path)
    sw.sweep(edited, runs, tmp_path / "after", workers=2)
    assert _pids() == pids
    for run in runs:
        after = (tmp_path / "after" / run.file_name).read_bytes()
        assert after == simulate(edited, run.seed).to_json(), run
        spend = {c["id"]: c["spend"] for c in json.loads(after)["campaigns"]}
        before = {c["id"]: c["spend"] for c in
                  json.loads((tmp_path / "before" / run.file_name).read_bytes())["campaigns"]}
        assert spend[CAMPAIGN] > before[CAMPAIGN], run
