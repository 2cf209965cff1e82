"""Sweeps on both cores: a 4-scale x 2-seed sweep of the quickstart, one worker against
two, in the same run, the worker pool kept from one sweep to the next.

Run: pytest benchmarks/bench_sweep_workers.py --benchmark-only -s
Each timed sweep is a whole rtb.sweep.sweep() into a fresh folder, 8 runs of about a
second. With one worker they run in this process alone; with two, in this process and
the pool's worker process (rtb.worker_pool). The kernels are compiled and loaded here
by an untimed warm-up first, so the one-worker sweep pays no compile either. Three
sweeps are timed alternately, ROUNDS times each, so a busy neighbour slows all alike:
one worker; two with a fresh pool (its worker's start and kernel loading included, as
in the one sweep of `rtb sweep --workers 2`); two with the pool the previous sweep
left, kernels loaded (a session's or a search's later sweeps). The ratio of the
medians is the speed-up; the target is the kept pool's.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from rtb import load_scenario, simulate, worker_pool
from rtb.sweep import plan, sweep

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.toml"
SCALES = [0.8, 1.0, 1.2, 1.4]
SEEDS = [1, 2]
ROUNDS = 3
TARGET = 1.7
ONE, FRESH, KEPT = "one worker", "two, fresh pool", "two, kept pool"


def _timed_sweeps(tmp: Path) -> dict[str, list[float]]:
    scenario = load_scenario(SCENARIO)
    runs = plan(SCALES, SEEDS)
    simulate(scenario, 0)  # compile and load the kernels in this process, untimed
    seconds: dict[str, list[float]] = {ONE: [], FRESH: [], KEPT: []}
    for k in range(ROUNDS):
        for kind in (ONE, FRESH, KEPT):  # KEPT right after FRESH: the pool it started
            if kind == FRESH:
                worker_pool.shutdown()
            start = time.perf_counter()
            sweep(scenario, runs, tmp / f"{k}-{kind}", workers=1 if kind == ONE else 2)
            seconds[kind].append(time.perf_counter() - start)
    return seconds


def test_sweep_two_workers_vs_one(benchmark, tmp_path):
    seconds = benchmark.pedantic(_timed_sweeps, args=(tmp_path,), rounds=1, iterations=1)
    medians = {kind: statistics.median(values) for kind, values in seconds.items()}
    speedups = {kind: medians[ONE] / medians[kind] for kind in (FRESH, KEPT)}
    benchmark.extra_info.update({"seconds": seconds, "speedups": speedups})
    print("\nsweep 4 scales x 2 seeds (medians, then each round):")
    for kind, values in seconds.items():
        rounds = ", ".join(f"{v:.2f}" for v in values)
        ratio = f", speed-up {speedups[kind]:.2f}x" if kind in speedups else ""
        print(f"  {kind}: {medians[kind]:.2f} s ({rounds}){ratio}")
    print(f"  target for the kept pool: >= {TARGET}x")
    assert speedups[KEPT] >= TARGET
