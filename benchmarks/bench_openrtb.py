"""External OpenRTB bidders: the exchange's requests per second to one bidder on loopback.

Run: pytest benchmarks/bench_openrtb.py --benchmark-only -s
The reference bidder (`rtb bidder`, the mcpc strategy) runs in its own process; the
exchange runs scenarios/openrtb.toml (the quickstart's market, beta-dsp external) for
one hour of simulated time, through libcurl with the scenario's 64 connections in
flight. A first untimed run compiles the kernels and opens the connections. Throughput
is bid requests sent over the whole run's wall time (market building, the auction and
the built-in campaigns included); the latency is each request's wall-clock time from
sending to its answer read, as the exchange measured it.
"""

from __future__ import annotations

import socket
import statistics
from contextlib import contextmanager
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rtb import load_scenario
from rtb.engine import Run

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "openrtb.toml"
STRATEGY = "mcpc:target_cpc=0.8"
TARGET = 5_000  # bid requests per second


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def bidder_process(strategy: str = STRATEGY):
    """`rtb bidder --strategy STRATEGY` in its own process on a free port: its URL."""
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "rtb", "bidder", "--strategy", strategy,
                                "--port", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/openrtb"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def bidder_url():
    with bidder_process() as url:
        yield url


def _scenario(url: str, duration_s: float):
    s = load_scenario(SCENARIO)
    dsps = [d.model_copy(update={"endpoint": url}) if d.external else d for d in s.dsps]
    return s.model_copy(update={"dsps": dsps, "simulation": s.simulation.model_copy(
        update={"duration": duration_s})})


def _run(scenario) -> tuple[float, int, np.ndarray]:
    start = time.perf_counter()
    run = Run(scenario)
    run.finish()
    seconds = time.perf_counter() - start
    tally = run.state.bidders
    return seconds, int(tally.requests[0]), np.concatenate(tally.latency_s[0])


def test_one_external_bidder_requests_per_second(benchmark, bidder_url):
    _run(_scenario(bidder_url, 600.0))  # compile, load, connect: untimed
    scenario = _scenario(bidder_url, 3600.0)
    runs = []
    benchmark.pedantic(lambda: runs.append(_run(scenario)), rounds=3, iterations=1)
    rates = [requests / seconds for seconds, requests, _ in runs]
    latency_ms = np.concatenate([lat for *_, lat in runs]) * 1000
    p50, p90, p99 = np.percentile(latency_ms, [50, 90, 99])
    rate = statistics.median(rates)
    benchmark.extra_info.update({"requests_per_s": rates, "requests": runs[0][1],
                                 "latency_ms_p50_p90_p99": [p50, p90, p99]})
    print(f"\none external bidder on loopback: {runs[0][1]:,} bid requests a run,"
          f" {', '.join(f'{r:,.0f}' for r in rates)} requests/s (median {rate:,.0f};"
          f" target >= {TARGET:,}); client libcurl, 64 connections in flight;"
          f" latency p50 {p50:.1f} ms, p90 {p90:.1f} ms, p99 {p99:.1f} ms")
    assert rate >= TARGET
