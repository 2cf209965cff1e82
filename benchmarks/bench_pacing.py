"""Adaptive pacing's cost end to end: scenarios/large.toml with every campaign on one mode.

Run: PYTHONPATH=. python benchmarks/bench_pacing.py [ROUNDS]   (or pytest ... -s)
The modes are measured together, alternating (even, pid, dual, even, pid, dual, ...),
so drift in the machine's speed falls on all of them alike; each round is a whole
simulate(). The issue's target: an adaptive mode costs at most 15 % of even's throughput.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rtb import load_scenario, simulate

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
MODES = ("even", "pid", "dual")


def every_campaign(scenario, pacing: str):
    camps = [c.model_copy(update={"pacing": _spec(pacing)}) for c in scenario.campaigns]
    return scenario.model_copy(update={"campaigns": camps})


def _spec(word: str):
    from pydantic import TypeAdapter

    from rtb.pacing_spec import PacingSpec
    return TypeAdapter(PacingSpec).validate_python(word)


def measure(rounds: int = 2) -> dict[str, list[float]]:
    base = load_scenario(SCENARIOS / "large.toml")
    variants = {mode: every_campaign(base, mode) for mode in MODES}
    short = base.simulation.model_copy(update={"duration": 3600.0})
    for scenario in variants.values():  # compile the kernels once, untimed
        simulate(scenario.model_copy(update={"simulation": short}))
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(rounds):
        for mode, scenario in variants.items():
            start = time.perf_counter()
            report = simulate(scenario).to_dict()
            seconds[mode].append(time.perf_counter() - start)
            print(f"{mode:5s} {seconds[mode][-1]:6.2f} s  requests {report['exchange']['requests']:,}"
                  f"  spend {report['totals']['spend']:,.0f}", flush=True)
    return seconds


def test_adaptive_pacing_cost(benchmark):
    # Through the benchmark fixture, so that --benchmark-only runs it too.
    seconds = {}
    benchmark.pedantic(lambda: seconds.update(measure(2)), rounds=1, iterations=1)
    best = {mode: min(s) for mode, s in seconds.items()}
    for mode in ("pid", "dual"):
        print(f"{mode}: {best[mode] / best['even'] - 1:+.1%} against even (best of 2)")
        benchmark.extra_info[f"{mode} against even"] = best[mode] / best["even"] - 1


if __name__ == "__main__":
    seconds = measure(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    best = {mode: min(s) for mode, s in seconds.items()}
    for mode in MODES:
        print(f"{mode:5s} best {best[mode]:.2f} s  ({best[mode] / best['even'] - 1:+.1%} against even)")
