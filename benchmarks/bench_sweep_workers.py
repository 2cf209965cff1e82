"""Sweeps on both cores: a 4-scale x 2-seed sweep of the quickstart, one worker against
two, in the same run, the worker pool kept from one sweep to the next.

Run: pytest benchmarks/bench_sweep_workers.py --benchmark-only -s
Each timed sweep is a whole rtb.sweep.sweep() into a fresh folder, 8 runs of about a
second. With one worker they run in this process alone; with two, in this process and
the pool's worker process, which stays up between sweeps with its kernels loaded
(rtb.worker_pool). Untimed first: this process compiles and loads the kernels, then a
first two-worker sweep starts the pool, as the first sweep of a session does; its
time is printed (the cold start) but not part of the ratio. The two are then timed
alternately, ROUNDS times each, so a busy neighbour slows both alike; the ratio of the
medians is the speed-up.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from rtb import load_scenario, simulate
from rtb.sweep import plan, sweep

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.toml"
SCALES = [0.8, 1.0, 1.2, 1.4]
SEEDS = [1, 2]
ROUNDS = 3
TARGET = 1.7


def _timed_sweeps(tmp: Path) -> dict:
    scenario = load_scenario(SCENARIO)
    runs = plan(SCALES, SEEDS)
    simulate(scenario, 0)  # compile and load the kernels in this process, untimed
    start = time.perf_counter()
    sweep(scenario, runs, tmp / "first", workers=2)  # starts the pool: the cold start
    seconds: dict = {"first": time.perf_counter() - start, 1: [], 2: []}
    for k in range(ROUNDS):
        for workers in (1, 2):
            start = time.perf_counter()
            sweep(scenario, runs, tmp / f"w{workers}-{k}", workers=workers)
            seconds[workers].append(time.perf_counter() - start)
    return seconds


def test_sweep_two_workers_vs_one(benchmark, tmp_path):
    seconds = benchmark.pedantic(_timed_sweeps, args=(tmp_path,), rounds=1, iterations=1)
    one, two = statistics.median(seconds[1]), statistics.median(seconds[2])
    benchmark.extra_info.update({"one_worker_s": seconds[1], "two_workers_s": seconds[2],
                                 "first_two_workers_s": seconds["first"], "speedup": one / two})
    print(f"\nsweep 4 scales x 2 seeds: one worker {one:.2f} s {_list(seconds[1])},"
          f" two {two:.2f} s {_list(seconds[2])}, speed-up {one / two:.2f}x"
          f" (target >= {TARGET}x); the first two-worker sweep, starting the pool:"
          f" {seconds['first']:.2f} s")
    assert one / two >= TARGET


def _list(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in values) + ")"
