"""What the identity model costs end to end: scenarios/large.toml as it is against the
same market with cookie churn and two devices per person switched on.

Run (from the repository root): python -m pytest benchmarks/bench_identity.py --benchmark-only -s

The issue's number: identity costs at most 15 % of end-to-end throughput. Both variants
run in the same process, alternating (plain, identity, plain, identity, ...), so a
noisy shared machine slows both alike; the best round of each is compared. The kernels
are compiled by a one-hour warm-up of each variant first. Memory: the bytes the run's
per-id and per-person arrays hold (market audience, user factor, run state books, the
people book), per person, for each variant; and the process's peak RSS.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import numpy as np
import pytest

from rtb import load_scenario
from rtb.engine import Run

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
ROUNDS = 2  # per variant; a large run takes 20-30 s
IDENTITY = {"id_lifetime": 10 * 86_400.0, "devices_per_person": {"2": 1.0}}


def _variants():
    plain = load_scenario(SCENARIOS / "large.toml")
    dmp = plain.dmp.model_copy(update={"identity": type(plain.dmp).model_fields["identity"]
                                       .annotation.__args__[0].model_validate(IDENTITY)})
    return {"plain": plain, "identity": plain.model_copy(update={"dmp": dmp})}


def _shortened(scenario, seconds: float):
    sim = scenario.simulation.model_copy(update={"duration": seconds})
    return scenario.model_copy(update={"simulation": sim})


def _nbytes(value) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, tuple):
        return sum(_nbytes(v) for v in value)
    return 0


def _buffer(view: np.ndarray) -> np.ndarray:
    while isinstance(view.base, np.ndarray):
        view = view.base
    return view


def _identity_bytes(run: Run) -> dict:
    """Bytes of what grows with the audience: the market's per-user and per-id arrays, and
    the run state's per-id and per-person books."""
    m, s = run.market, run.state
    out = {"audience": _nbytes(tuple(m.audience)), "user_factor": m.user_factor.nbytes,
           "user_words": m.campaigns.user_words.nbytes,
           # The caps and users books: one row per id (rtb/layout.py), views of one buffer.
           "rows": _buffer(s.users.exposures).nbytes,
           "people_book": _nbytes(tuple(s.people)) if s.people is not None else 0}
    out["total"] = sum(out.values())
    return out


@pytest.mark.benchmark(group="identity")
def test_identity_cost_on_large(benchmark):
    variants = _variants()
    for scenario in variants.values():
        warm = Run(_shortened(scenario, 3600.0))
        warm.finish()
    times = {name: [] for name in variants}
    sizes, figures = {}, {}

    def one(name):
        start = time.perf_counter()
        run = Run(variants[name])
        report = run.finish().to_dict()
        times[name].append(time.perf_counter() - start)
        sizes[name] = _identity_bytes(run)
        figures[name] = (report["exchange"]["requests"], run.market.audience.n_people,
                         run.market.n_users)

    def rounds():
        for _ in range(ROUNDS):
            for name in variants:
                one(name)

    benchmark.pedantic(rounds, rounds=1, iterations=1)
    requests = figures["plain"][0]
    best = {name: min(t) for name, t in times.items()}
    # The measure: the share of end-to-end throughput (requests/s) identity costs.
    cost = 1.0 - best["plain"] / best["identity"]
    print(f"\nlarge: {requests:,} requests; best of {ROUNDS} alternating rounds each")
    for name in variants:
        n_req, people, rows = figures[name]
        b = sizes[name]
        print(f"  {name:8s}: {best[name]:6.2f} s = {n_req / best[name]:,.0f} requests/s"
              f" (rounds {', '.join(f'{t:.2f}' for t in times[name])});"
              f" {people:,} people, {rows:,} id rows; {b['total'] / 2**20:,.0f} MiB in per-user"
              f" arrays = {b['total'] / people:,.0f} bytes per person"
              f" ({', '.join(f'{k} {v / people:,.0f}' for k, v in b.items() if k != 'total')})")
    print(f"  identity costs {cost:.1%} of the end-to-end throughput (target at most 15 %;"
          f" {best['identity'] / best['plain'] - 1:+.1%} of the time);"
          f" peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
    benchmark.extra_info.update({"best_s": best, "cost": cost, "bytes": sizes})
