"""Peak memory per user: scenarios/large.toml's whole week at 1, 10 and 20 million
users, each run in a fresh process that reports its peak RSS (VmHWM).

Run (from the repository root):
    python -m pytest benchmarks/bench_memory.py --benchmark-only -s -p no:cacheprovider

The scenario is large with dmp.users overridden. Its traffic is large's at any number
of users (about 21.8 million requests over the week), so the more users, the smaller
the share a week reaches. A user's row in the run state (rtb/layout.py) is handed out
when the user first appears in a request (rtb.state.UserRows), so a user costs its
audience arrays (about 63 bytes in large) plus, if reached, its row (332 bytes for the
week). The issue's number: at most 200 bytes a user, large at 20 million users under
5 GB. Printed beside each measurement: rtb.estimate's figure (what `rtb validate`
says and `rtb run` checks before it starts).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LARGE = ROOT / "scenarios" / "large.toml"
WEEK_S = 7 * 86_400.0
USERS = (1_000_000, 10_000_000, 20_000_000)
TARGET_BYTES_PER_USER = 200
TARGET_PEAK_AT_20M = 5e9  # bytes


def large_like(users: int, duration_s: float = WEEK_S):
    """large with `users` users (dmp.users), run for duration_s."""
    from rtb import load_scenario

    s = load_scenario(LARGE)
    return s.model_copy(update={
        "simulation": s.simulation.model_copy(update={"duration": duration_s}),
        "dmp": s.dmp.model_copy(update={"users": users})})


def _measure(users: int) -> dict:
    """In this (fresh) process: build large_like(users) and run it; peak RSS and figures."""
    from rtb.engine import Run
    from rtb.estimate import estimate

    scenario = large_like(users)
    start = time.perf_counter()
    run = Run(scenario)
    built = time.perf_counter()
    requests = run.finish().to_dict()["exchange"]["requests"]
    done = time.perf_counter()
    return {"users": users, "peak_bytes": _peak_rss_bytes(),
            "estimated_bytes": estimate(scenario).memory_bytes,
            "rows": int(run.state.users.rows_in_use[0]) - 1, "requests": requests,
            "row_bytes": _row_bytes(run), "build_s": built - start, "run_s": done - built}


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


def measure_in_fresh_process(users: int) -> dict:
    """_measure() in a new interpreter that imports this module (as `rtb run` imports
    the package: run as a script instead, the process measured about 100 MiB more)."""
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r});"
            f" import bench_memory; print(json.dumps(bench_memory._measure({users})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.benchmark(group="memory")
def test_peak_memory_per_user_on_large(benchmark):
    measure_in_fresh_process(100_000)  # compile (and cache) the kernels, untimed
    results = {}

    def each():
        for users in USERS:
            results[users] = measure_in_fresh_process(users)

    benchmark.pedantic(each, rounds=1, iterations=1)
    print("\nlarge's week with dmp.users overridden; peak RSS of a fresh process each:")
    for r in results.values():
        print(f"  {r['users'] / 1e6:4.0f} M users: {r['rows'] / r['users']:4.0%} reached"
              f" ({r['row_bytes']} B rows), peak {r['peak_bytes'] / 2**20:,.0f} MiB ="
              f" {r['peak_bytes'] / r['users']:,.0f} bytes/user (estimated"
              f" {r['estimated_bytes'] / 2**20:,.0f} MiB); build {r['build_s']:.1f} s,"
              f" run {r['run_s']:.1f} s")
    sizes = sorted(results)
    for small, big in zip(sizes, sizes[1:]):
        a, b = results[small], results[big]
        marginal = (b["peak_bytes"] - a["peak_bytes"]) / (big - small)
        print(f"  {small / 1e6:g} M -> {big / 1e6:g} M users: {marginal:,.0f} bytes a user more")
    at_20m = results[20_000_000]
    per_user = at_20m["peak_bytes"] / at_20m["users"]
    print(f"  at 20 M users: {at_20m['peak_bytes'] / 1e9:.2f} GB ({per_user:,.0f} bytes/user);"
          f" targets < {TARGET_PEAK_AT_20M / 1e9:g} GB, <= {TARGET_BYTES_PER_USER} bytes/user")
    benchmark.extra_info.update({"results": results})
    assert at_20m["peak_bytes"] < TARGET_PEAK_AT_20M
