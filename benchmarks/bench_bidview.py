"""Benchmark of what a Python strategy costs a tick: building its view vs its own bid().

Run (from the repository root): python -m pytest benchmarks/bench_bidview.py --benchmark-only -s

One campaign of the quickstart (gadgets-cpc: no segments, about two thirds of every
tick's requests) bids with a Python strategy; every tick of two hours is captured
once, then each benchmark replays the same ticks:

- view (typical): the rows it may bid on (dsp.bidding.eligible_rows) and the view,
  reading only pCTR, as the built-in formulas' numpy twins do;
- view (every field): the same, reading every field of BidView;
- bid(): LinearBid's numpy bid() on a view whose fields are already read: the
  strategy's own cost, which the issue's number compares the view building with.

Numbers are per tick (the best round, divided by the ticks).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dsp.bidding import CampaignView, eligible_rows
from dsp.strategies import LinearBid
from rtb import simulate
from rtb.scenario import load_scenario

REPO = Path(__file__).resolve().parents[1]
CAMPAIGN = "gadgets-cpc"
FIELDS = ("pctr", "pcvr", "floor_cpm", "uniform", "time_s", "publisher", "slot", "format",
          "device", "geo", "segments", "deal", "deal_floor_cpm", "paced_in")
ROUNDS = 20
RESULTS: dict[str, float] = {}


class Capture:
    """Bids like LinearBid and keeps each tick's view (its inputs, for rebuilding)."""

    def __init__(self):
        self.inner, self.views = LinearBid(2.0, 0.002), []

    def bid(self, view):
        self.views.append(view)
        return self.inner.bid(view)

    def observe(self, feedback):
        return None


@pytest.fixture(scope="module")
def ticks(tmp_path_factory):
    text = (REPO / "scenarios" / "quickstart.toml").read_text()
    # The two-hour quickstart of the tests (tests/test_cli.py): the video flight moved in.
    for old, new in [('duration = "1d"', 'duration = "2h"'),
                     ('"2026-11-27T16:00:00Z"', '"2026-11-27T00:30:00Z"'),
                     ('"2026-11-27T23:00:00Z"', '"2026-11-27T01:30:00Z"')]:
        text = text.replace(old, new)
    path = tmp_path_factory.mktemp("bidview") / "quickstart-2h.toml"
    path.write_text(text)
    capture = Capture()
    simulate(load_scenario(path), strategies={CAMPAIGN: capture})
    return capture.views


def _rebuild(view) -> CampaignView:
    tick, c = view._tick, view._c
    return CampaignView(view._predicted_ctr, view._ctr_multiplier, view._base_cvr,
                        view._cvr_multiplier, view._floor_cpm, view._rng,
                        eligible_rows(c, tick), tick, c)


def _per_tick(benchmark, ticks, name: str) -> None:
    RESULTS[name] = benchmark.stats.stats.min / len(ticks)
    print(f"\n{name}: {RESULTS[name] * 1e6:.1f} us per tick"
          f" ({sum(v.pctr.size for v in ticks) / len(ticks):.0f} requests in the view,"
          f" {sum(v._base_cvr.size for v in ticks) / len(ticks):.0f} in the tick)")


def test_view_typical(benchmark, ticks):
    def run():
        for view in ticks:
            _rebuild(view).pctr
    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1)
    _per_tick(benchmark, ticks, "view (typical: rows, pctr)")


def test_view_every_field(benchmark, ticks):
    def run():
        for view in ticks:
            v = _rebuild(view)
            for name in FIELDS:
                getattr(v, name)
    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1)
    _per_tick(benchmark, ticks, "view (every field)")


def test_bid_call(benchmark, ticks):
    strategy = LinearBid(2.0, 0.002)
    ready = [_rebuild(v) for v in ticks]
    for v in ready:
        v.pctr

    def run():
        for view in ready:
            strategy.bid(view)
    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1)
    _per_tick(benchmark, ticks, "bid() (LinearBid, fields read)")


def test_whole_run_builtin_vs_python(benchmark, ticks, tmp_path_factory):
    """End to end: the two hours with gadgets-cpc's own built-in (numba pass) and with the
    same formula as a Python strategy (simulate(strategies=...): view, checks, bid())."""
    import time

    spec = load_scenario(next(tmp_path_factory.getbasetemp().glob("bidview*/quickstart-2h.toml")))
    simulate(spec)
    times = {}
    for name, strategies in (("built-in", None), ("python", {CAMPAIGN: LinearBid(2.0, 0.002)})):
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            simulate(spec, strategies=strategies)
            best = min(best, time.perf_counter() - t)
        times[name] = best
    benchmark.pedantic(lambda: simulate(spec, strategies={CAMPAIGN: LinearBid(2.0, 0.002)}),
                       rounds=1)
    extra = (times["python"] - times["built-in"]) / len(ticks)
    print(f"\nwhole run, best of 5: built-in {times['built-in']:.3f} s, python {times['python']:.3f} s:"
          f" {extra * 1e6:.1f} us more per tick ({len(ticks)} ticks)")
