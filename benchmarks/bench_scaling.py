"""Costs stay linear: a run's time against its requests, its campaigns and its users.

Run: pytest benchmarks/bench_scaling.py --benchmark-only -s

Each series changes one size of `large` (scenarios/large.toml) and keeps the others:
- requests: 1, 2 and 4 days (the same market, more ticks);
- campaigns: the first 15, 30 and 60 campaigns, 1 day;
- users: 0.6, 1.2 and 2.4 million, 1 day.
Each point is the best of two whole simulate() calls on one thread (world building
included; the kernels compiled, and the series' first size run once, untimed). On two
threads a run takes as long as the slower of them: the look-ahead thread's draws,
which do not grow with the campaigns, or the clearing thread, which does, so its time
is not a line in the campaigns although each thread's work is. A least-squares line is fitted to each series;
its slope is the cost of one more request, campaign or user, and the series is linear
when no point is further than LINEAR_TOLERANCE from the line.
"""

from __future__ import annotations

import time
import tomllib
from pathlib import Path

import numpy as np
import orjson
import pytest

from rtb import simulate
from rtb.scenario import parse_scenario

LARGE = Path(__file__).resolve().parents[1] / "scenarios" / "large.toml"
HOUR = 3600
LINEAR_TOLERANCE = 0.15  # a point's distance from the fitted line, as a share of its time
ROUNDS = 2


def _large(hours: float, campaigns: int | None = None, users: int | None = None):
    data = tomllib.loads(LARGE.read_text())
    data["simulation"]["duration"] = f"{hours}h"
    if campaigns is not None:
        data["campaigns"] = data["campaigns"][:campaigns]
    for campaign in data["campaigns"]:
        # Flights are dates inside large's week; here every campaign runs throughout,
        # so the work per request does not change with the duration.
        campaign.pop("start", None)
        campaign.pop("end", None)
    if users is not None:
        data["dmp"]["users"] = users
    return parse_scenario(data, str(LARGE), LARGE.parent)


def _seconds(scenario) -> tuple[float, int]:
    """Best-of-ROUNDS wall seconds of a whole run, and its requests."""
    best, requests = np.inf, 0
    for _ in range(ROUNDS):
        start = time.perf_counter()
        report = simulate(scenario, threads=1)
        best = min(best, time.perf_counter() - start)
        requests = orjson.loads(report.to_json())["exchange"]["requests"]
    return best, requests


def _fit(x: list[float], seconds: list[float]) -> tuple[float, float, float]:
    """(slope, intercept, largest relative distance of a point from the line)."""
    slope, intercept = np.polyfit(x, seconds, 1)
    fitted = slope * np.asarray(x) + intercept
    return slope, intercept, float(np.max(np.abs(fitted - seconds) / np.asarray(seconds)))


SERIES = {
    # name: (sizes, scenario for a size, what the slope is per)
    "requests": ([24, 48, 96], lambda h: _large(h), "request"),
    "campaigns": ([15, 30, 60], lambda k: _large(24, campaigns=k), "campaign"),
    "users": ([600_000, 1_200_000, 2_400_000], lambda u: _large(24, users=u), "user"),
}


@pytest.mark.parametrize("name", SERIES)
def test_cost_is_linear(benchmark, name):
    sizes, scenario_for, unit = SERIES[name]
    simulate(_large(1, campaigns=15, users=100_000))  # compile the kernels, untimed
    simulate(scenario_for(sizes[0]))  # and fault in a run's memory once

    def measure():
        return [_seconds(scenario_for(size)) for size in sizes]

    points = benchmark.pedantic(measure, rounds=1, iterations=1)
    seconds = [s for s, _ in points]
    x = [r for _, r in points] if name == "requests" else sizes
    slope, intercept, worst = _fit(x, seconds)
    per = {"request": 1e9, "campaign": 1e3, "user": 1e9}[unit]
    per_text = {"request": "ns per request", "campaign": "ms per campaign (a day)",
                "user": "ns per user"}[unit]
    benchmark.extra_info.update({"sizes": x, "seconds": seconds, "slope": slope,
                                 "intercept_s": intercept, "worst_distance": worst})
    print(f"\n{name}: " + ", ".join(f"{size:,} -> {s:.2f} s" for size, s in zip(x, seconds))
          + f"; slope {slope * per:,.1f} {per_text}, intercept {intercept:.2f} s,"
          f" furthest point {worst:.1%} from the line")
    assert slope > 0
    assert worst <= LINEAR_TOLERANCE
