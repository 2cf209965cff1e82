"""The learning built-ins' cost end to end: scenarios/large.toml with every campaign on one.

Run (from the repository root):
    python -m pytest benchmarks/bench_adaptive.py --benchmark-only -s
    PYTHONPATH=. python benchmarks/bench_adaptive.py [ROUNDS]
Variants, measured together, alternating (so drift in the machine's speed falls on all
alike), each round a whole simulate(): the scenario as written, every campaign on
`budget_ortb`, on `shaded` (truthful: large is a second-price exchange), and the
same in a first-price exchange (as written, and `shaded`, which then learns).
The issue's target: an adaptive built-in costs at most 15 % of the throughput of the
scenario as written.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from rtb import load_scenario, simulate
from rtb.strategy_spec import parse_strategy

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
VARIANTS = (("as written", None, "second"), ("budget_ortb", "budget_ortb", "second"),
            ("shaded", "shaded", "second"), ("as written, 1st", None, "first"),
            ("shaded, 1st", "shaded", "first"))


def variant(scenario, strategy: str | None, auction: str):
    if strategy is not None:
        spec = parse_strategy(strategy, "strategy")
        camps = [c.model_copy(update={"strategy": spec}) for c in scenario.campaigns]
        scenario = scenario.model_copy(update={"campaigns": camps})
    exchange = scenario.exchange.model_copy(update={"auction": auction})
    return scenario.model_copy(update={"exchange": exchange})


def measure(rounds: int = 1) -> dict[str, list[float]]:
    base = load_scenario(SCENARIOS / "large.toml")
    variants = {name: variant(base, strategy, auction) for name, strategy, auction in VARIANTS}
    short = base.simulation.model_copy(update={"duration": 3600.0})
    for scenario in variants.values():  # compile the kernels once, untimed
        simulate(scenario.model_copy(update={"simulation": short}))
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, scenario in variants.items():
            start = time.perf_counter()
            report = simulate(scenario).to_dict()
            seconds[name].append(time.perf_counter() - start)
            print(f"{name:16s} {seconds[name][-1]:6.2f} s  requests {report['exchange']['requests']:,}"
                  f"  spend {report['totals']['spend']:,.0f}", flush=True)
    return seconds


def summary(seconds: dict[str, list[float]]) -> dict[str, float]:
    """Each variant's median seconds, and its ratio to the scenario as written (in the
    same auction)."""
    median = {name: statistics.median(s) for name, s in seconds.items()}
    out = {}
    for name, t in median.items():
        ref = median["as written, 1st" if name.endswith("1st") else "as written"]
        out[f"{name} s"], out[f"{name} ratio"] = t, t / ref
        print(f"{name:16s} median {t:6.2f} s of {len(seconds[name])}"
              f"  ({t / ref:.2f}x the scenario as written)")
    return out


def test_adaptive_strategies_cost(benchmark):
    result = {}
    benchmark.pedantic(lambda: result.update(measure(1)), rounds=1, iterations=1)
    benchmark.extra_info.update(summary(result))


if __name__ == "__main__":
    summary(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 1))
