"""Memory stays flat over a long run: per-tick aggregates, nothing kept per request."""

from __future__ import annotations

import tracemalloc

from rtb.engine import simulate
from rtb.scenario import parse_scenario


def _scenario(days: int):
    return parse_scenario({
        "simulation": {"seed": 1, "start": "2026-01-05T00:00:00Z", "duration": f"{days}d",
                       "tick": "10m"},
        "exchange": {"market": {"kind": "lognormal", "median_cpm": 1.0}},
        "ssps": [{"id": "s"}],
        "publishers": [{"id": "p", "ssp": "s", "slots": [
            {"id": "a", "daily_requests": 40000, "floor_cpm": 0.2}]}],
        "dsps": [{"id": "d"}],
        "advertisers": [{"id": "x", "value_per_conversion": 50.0}],
        "campaigns": [{"id": "c", "advertiser": "x", "dsp": "d", "budget": 1e6,
                       "strategy": {"kind": "fixed", "bid_cpm": 1.5},
                       "frequency_cap": {"impressions": 3, "window": "1d"}}],
        "dmp": {"users": 20000, "devices": {"desktop": 1.0}},
        "behaviour": {"organic_conversion_rate": 0.01},
    }, "memory.toml")


def _peak_bytes(days: int) -> int:
    tracemalloc.start()
    try:
        simulate(_scenario(days))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_run_length():
    simulate(_scenario(1))  # compile outside the measurement
    one_day = _peak_bytes(1)
    eight_days = _peak_bytes(8)
    # Eight times the requests; the peak may differ by the conversion queue's
    # length and allocator noise, not in proportion to the run.
    assert eight_days < 1.3 * one_day, (one_day, eight_days)
