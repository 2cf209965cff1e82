"""`rtb plan` on both cores: a 4-variant x 5-seed plan of the quickstart, one worker
against two, in the same run.

Run: pytest benchmarks/bench_plan.py --benchmark-only -s
Each timed plan is a whole run_plan() into a fresh folder, as the command does it: with
two workers, one worker process (its start and numba's cached kernels included: each
timed plan starts a fresh pool, as `rtb plan` does) and this process; with one, this
process alone. The kernels are compiled and loaded here by an untimed warm-up first,
so the one-worker plan pays no compile either. The two are timed alternately, ROUNDS
times each, so a busy neighbour slows both alike; the ratio of the medians is the
speed-up.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from rtb import load_scenario, simulate, worker_pool
from rtb.changes import variant_from_options
from rtb.plan import run_plan

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.toml"
SEEDS = [1, 2, 3, 4, 5]
ROUNDS = 2
TARGET = 1.7


def _variants():
    return [variant_from_options("more-retargeting", [], [], ["prospecting:retargeting=30%"], []),
            variant_from_options("half-cpc", ["gadgets-cpc=x0.5"], [], [], []),
            variant_from_options("consent-60", [], [], [], ["dmp.consent_rate=0.6"])]


def _timed_plans(tmp: Path) -> dict[int, list[float]]:
    scenario = load_scenario(SCENARIO)
    simulate(scenario, 0)  # compile and load the kernels in this process, untimed
    seconds: dict[int, list[float]] = {1: [], 2: []}
    for k in range(ROUNDS):
        for workers in (1, 2):
            worker_pool.shutdown()  # not the pool the previous plan left
            start = time.perf_counter()
            run_plan(scenario, _variants(), SEEDS, tmp / f"w{workers}-{k}", workers=workers)
            seconds[workers].append(time.perf_counter() - start)
    return seconds


def test_plan_two_workers_vs_one(benchmark, tmp_path):
    seconds = benchmark.pedantic(_timed_plans, args=(tmp_path,), rounds=1, iterations=1)
    one, two = statistics.median(seconds[1]), statistics.median(seconds[2])
    benchmark.extra_info.update({"one_worker_s": seconds[1], "two_workers_s": seconds[2],
                                 "speedup": one / two})
    print(f"\nplan 4 variants x 5 seeds: one worker {one:.1f} s, two {two:.1f} s,"
          f" speed-up {one / two:.2f}x (target >= {TARGET}x)")
    assert one / two >= TARGET
