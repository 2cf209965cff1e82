"""`rtb optimize` on the quickstart: the wall time of the best split with its defaults.

Run: pytest benchmarks/bench_optimize.py --benchmark-only -s
One round (a few minutes on 2 cores): optimize_split with the default seeds, curve
scales and iterations, 2 workers, into a fresh folder, so every run is simulated. The
requirement is under 10 minutes on this machine; the runs, the split and the gain on
the confirmation seeds are printed and kept in the benchmark's extra_info.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rtb import load_scenario
from rtb.optimize import optimize_split
from rtb.sweep import Runner

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


@pytest.mark.benchmark(group="optimize")
def test_quickstart_best_split(benchmark, tmp_path):
    scenario = load_scenario(SCENARIOS / "quickstart.toml")
    total = sum(c.budget for c in scenario.campaigns)
    results = []

    def run():
        out = tmp_path / f"round-{len(results)}"
        with Runner(workers=2) as runner:
            results.append(optimize_split(scenario, total, out_dir=out, runner=runner))

    benchmark.pedantic(run, rounds=1, iterations=1)
    result = results[0]
    gain = result["gain"]
    benchmark.extra_info.update({"runs": result["evaluations"], "gain": gain,
                                 "split": result["split"], "found_better": result["found_better"]})
    print(f"\nquickstart: {benchmark.stats.stats.min:.0f} s, {result['evaluations']} runs;"
          f" profit gain {gain['mean']:+.2f} ({gain['low']:+.2f} to {gain['high']:+.2f})"
          f" {result['currency']} on seeds {result['confirm_seeds']}")
    for cid, budget in result["split"].items():
        print(f"  {cid:24s} {result['current_split'][cid]:10,.2f} -> {budget:10,.2f}")
    assert benchmark.stats.stats.min < 600
