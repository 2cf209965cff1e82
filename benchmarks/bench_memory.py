"""Peak memory per user: scenarios/large.toml at 1 and 10 million users, each run in a
fresh process that reports its peak RSS (VmHWM).

Run (from the repository root):
    python -m pytest benchmarks/bench_memory.py --benchmark-only -s -p no:cacheprovider

The scenario is large with dmp.users overridden, run for SHORT_S (two hours) so that ten
million users take well under a minute. Its traffic is large's at any number of users
(the per-request arrays of a tick do not grow with the users), so two hours write only
some users' rows: the measuring process then writes every page of the rows, as a run
of the whole week does (zeroed pages are resident only once written). The marginal
cost, (peak at 10 M - peak at 1 M) / 9 M, is what each user adds; the process's own
(Python, numpy, numba's compiled kernels, a tick's arrays) is in the intercept. Projected 20 M peak =
peak at 10 M + 10 M x marginal. The issue's number: at most 200 bytes a user (large at
20 million users under 5 GB).

A run's per-user row depends on its duration (rtb/layout.py): in these two hours every
cap's window outlasts the run (counted by the exposures column) and touches fit u4.
The row a run of large's whole week needs (ring times and i8 touches) is printed
beside it, from rtb.estimate (the same arithmetic as rtb.state), and measured: built for
the week, run for its first two hours (the ring times and wide touches are filled at
the start, so they are resident), at 1 and 10 million users.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
LARGE = ROOT / "scenarios" / "large.toml"
SHORT_S = 7200.0
WEEK_S = 7 * 86_400.0
USERS = (1_000_000, 10_000_000)
TARGET_BYTES_PER_USER = 200


def large_like(users: int, duration_s: float = SHORT_S):
    """large with `users` users (dmp.users), run for duration_s."""
    from rtb import load_scenario

    s = load_scenario(LARGE)
    return s.model_copy(update={
        "simulation": s.simulation.model_copy(update={"duration": duration_s}),
        "dmp": s.dmp.model_copy(update={"users": users})})


def _measure(users: int, duration_s: float = SHORT_S) -> dict:
    """In this (fresh) process: build large_like(users, duration_s) and run its first
    SHORT_S (all of it, with the report, if that is the duration); peak RSS and figures."""
    from rtb.engine import Run

    start = time.perf_counter()
    run = Run(large_like(users, duration_s))
    built = time.perf_counter()
    built_peak = _peak_rss_bytes()
    if duration_s == SHORT_S:
        requests = run.finish().to_dict()["exchange"]["requests"]
    else:
        run.advance(SHORT_S)
        requests = run.state.tally.requests
    done = time.perf_counter()
    # Two hours write only some users' rows: write every page of them, as a run of the
    # whole week does (zeroed pages come from calloc, resident once written; numpy asks
    # for huge pages, so a few writes already fault in most of them).
    rows = run.state.users.exposures
    while isinstance(rows.base, np.ndarray):
        rows = rows.base
    rows.reshape(-1)[::4096] += np.uint8(0)
    return {"users": users, "peak_bytes": _peak_rss_bytes(),
            "built_peak_bytes": built_peak,
            "requests": requests, "row_bytes": _row_bytes(run),
            "build_s": built - start, "run_s": done - built}


def _peak_rss_bytes() -> int:
    """This process's peak resident memory. Not getrusage's ru_maxrss: Linux keeps it
    across execve, so a child of a large process (the benchmark suite's, after `large`)
    would report its parent's peak. /proc's VmHWM is the new program's own."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # not Linux


def _row_bytes(run) -> int:
    """Bytes of one user's row in the run state (rtb/layout.py)."""
    from rtb.state import user_layout

    return user_layout(run.market).row_bytes


def measure_in_fresh_process(users: int, duration_s: float = SHORT_S) -> dict:
    """_measure() in a new interpreter that imports this module (as `rtb run` imports
    the package: run as a script instead, the process measured about 100 MiB more)."""
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r});"
            f" import bench_memory; print(json.dumps(bench_memory._measure({users}, {duration_s})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _week_row_bytes() -> tuple[int, int]:
    """(row bytes, per-user bytes) rtb.estimate gives large over its whole week."""
    from rtb import load_scenario
    from rtb.estimate import per_user_bytes, user_row_layout

    s = load_scenario(LARGE)
    return user_row_layout(s).row_bytes, per_user_bytes(s)


def _marginal(results: dict) -> tuple[float, float]:
    """(bytes per user between the two sizes, projected peak at 20 M users)."""
    small, big = (results[n] for n in USERS)
    marginal = (big["peak_bytes"] - small["peak_bytes"]) / (big["users"] - small["users"])
    return marginal, big["peak_bytes"] + (20_000_000 - big["users"]) * marginal


@pytest.mark.benchmark(group="memory")
def test_peak_memory_per_user_on_large(benchmark):
    measure_in_fresh_process(100_000)  # compile (and cache) the kernels, untimed
    results = {}

    def both():
        for users in USERS:
            results[users] = measure_in_fresh_process(users)

    benchmark.pedantic(both, rounds=1, iterations=1)
    marginal, projected = _marginal(results)
    # The row of the whole week, measured: built for 7 days, run for its first SHORT_S.
    week = {users: measure_in_fresh_process(users, WEEK_S) for users in USERS}
    week_marginal, week_projected = _marginal(week)
    week_row, week_user = _week_row_bytes()
    print(f"\nlarge with dmp.users overridden, {SHORT_S / 3600:g} h, every row page written;"
          " peak RSS of a fresh process each:")
    for r in results.values():
        print(f"  {r['users'] / 1e6:4.0f} M users: {r['requests']:>9,} requests, peak"
              f" {r['peak_bytes'] / 2**20:,.0f} MiB = {r['peak_bytes'] / r['users']:,.0f} bytes/user"
              f" (row {r['row_bytes']} B; build {r['build_s']:.1f} s, run {r['run_s']:.1f} s)")
    print(f"  marginal: {marginal:,.0f} bytes/user (target <= {TARGET_BYTES_PER_USER});"
          f" projected peak at 20 M users: {projected / 2**30:.2f} GiB")
    week_peaks = ", ".join(f"{r['peak_bytes'] / 2**20:,.0f}" for r in week.values())
    print(f"  large's whole week (rtb.estimate): row {week_row} B, {week_user} bytes/user;"
          f" measured (built for the week, run {SHORT_S / 3600:g} h): peak {week_peaks} MiB,"
          f" marginal {week_marginal:,.0f} bytes/user, projected 20 M {week_projected / 2**30:.2f} GiB")
    benchmark.extra_info.update({"results": results, "marginal_bytes_per_user": marginal,
                                 "projected_20m_bytes": projected, "week_row_bytes": week_row,
                                 "week": week, "week_marginal_bytes_per_user": week_marginal})
    assert marginal <= TARGET_BYTES_PER_USER

