"""End-to-end throughput of `rtb run`: bid requests cleared per second of wall time.

Run: pytest benchmarks/bench_simulation.py --benchmark-only -s
The JIT is compiled (and cached) by a one-hour warm-up run before timing. Each timed
round is a whole simulate() call: building the world, generating traffic, bidding,
clearing, outcomes, conversions and the report.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from rtb import load_scenario, simulate

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def _with_duration(scenario, seconds: float):
    sim = scenario.simulation.model_copy(update={"duration": seconds})
    return scenario.model_copy(update={"simulation": sim})


def _throughput(benchmark, name: str, rounds: int) -> None:
    scenario = load_scenario(SCENARIOS / name)
    simulate(_with_duration(scenario, 3600.0))  # compile the kernels once, untimed
    requests = []

    def run():
        report = simulate(scenario)
        requests.append(report.to_dict()["exchange"]["requests"])

    start = time.perf_counter()
    benchmark.pedantic(run, rounds=rounds, iterations=1)
    elapsed = time.perf_counter() - start
    best = benchmark.stats.stats.min
    benchmark.extra_info.update({
        "requests": requests[0],
        "requests_per_s_best": requests[0] / best,
        "requests_per_s_mean": sum(requests) / elapsed,
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    })
    print(f"\n{name}: {requests[0]:,} requests, best {best:.2f} s "
          f"= {requests[0] / best:,.0f} requests/s")


@pytest.mark.benchmark(group="simulate")
def test_quickstart_throughput(benchmark):
    _throughput(benchmark, "quickstart.toml", rounds=3)


@pytest.mark.benchmark(group="simulate")
def test_large_throughput(benchmark):
    _throughput(benchmark, "large.toml", rounds=1)
