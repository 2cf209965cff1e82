"""The learning strategies' cost end to end: scenarios/large.toml with every campaign on
`shaded` or on `budget_ortb`, against the scenario as written (built-in formulas).

Run (from the repository root):
    python -m pytest benchmarks/bench_learning.py --benchmark-only -s
    PYTHONPATH=. python benchmarks/bench_learning.py [ROUNDS]
The variants are measured together, alternating (as written, shaded, budget_ortb, as
written, ...), so drift in the machine's speed falls on all of them alike; each round is
a whole simulate(). The issue's bound: an adaptive built-in costs at most 15 % of the
end-to-end throughput. Both strategies bid in Python (their own bid() and observe() on
the view), not in the numba pass; large.toml is a second-price exchange, so shaded bids
its value there (it learns, it does not shade).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from rtb import load_scenario, simulate

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
VARIANTS = ("as written", "shaded", "budget_ortb")


def every_campaign(scenario, kind: str):
    from pydantic import TypeAdapter

    from rtb.strategy_spec import StrategySpec
    spec = TypeAdapter(StrategySpec).validate_python({"kind": kind})
    camps = [c.model_copy(update={"strategy": spec}) for c in scenario.campaigns]
    return scenario.model_copy(update={"campaigns": camps})


def measure(rounds: int = 2) -> dict[str, list[float]]:
    base = load_scenario(SCENARIOS / "large.toml")
    variants = {"as written": base, **{k: every_campaign(base, k) for k in VARIANTS[1:]}}
    short = base.simulation.model_copy(update={"duration": 3600.0})
    for scenario in variants.values():  # compile the kernels once, untimed
        simulate(scenario.model_copy(update={"simulation": short}))
    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        for name, scenario in variants.items():
            start = time.perf_counter()
            report = simulate(scenario).to_dict()
            seconds[name].append(time.perf_counter() - start)
            print(f"{name:11s} {seconds[name][-1]:6.2f} s  requests {report['exchange']['requests']:,}"
                  f"  spend {report['totals']['spend']:,.0f}", flush=True)
    return seconds


def summary(seconds: dict[str, list[float]]) -> dict[str, float]:
    """Each variant's median seconds, and its throughput's loss against the scenario as written."""
    median = {name: statistics.median(s) for name, s in seconds.items()}
    out = {f"{name} s": m for name, m in median.items()}
    for name in VARIANTS[1:]:
        out[f"{name} throughput loss"] = 1 - median["as written"] / median[name]
        print(f"{name}: {median[name]:.2f} s against {median['as written']:.2f} s as written"
              f" (median of {len(seconds[name])}): throughput {-out[f'{name} throughput loss']:+.1%}")
    return out


def test_learning_strategies_cost(benchmark):
    result = {}
    benchmark.pedantic(lambda: result.update(measure(2)), rounds=1, iterations=1)
    benchmark.extra_info.update(summary(result))


if __name__ == "__main__":
    summary(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 2))
