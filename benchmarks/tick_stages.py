"""Where a tick's time goes on `large` cut to a day (3.1 million requests): ns per
request of each stage of rtb.exchange.Exchange, and the glue after the kernel alone.

Run (from the repository root; a plain script, not collected by pytest):

    PYTHONPATH=. python benchmarks/tick_stages.py [DAYS] [RUNS] [--threads=N]  # the stages
    PYTHONPATH=. python benchmarks/tick_stages.py --glue           # the glue alone

Stages are timed by wrapping the Exchange's methods, in wall time and in the calling
thread's CPU time (time.thread_time): on a shared VM the CPU time moves far less with
other processes' load. The minimum over RUNS runs after an untimed one (JIT cache
loaded, memory faulted in). POST_KERNEL is run_tick less its inputs, bids and
clear_tick: everything after the kernel. _prepare and _requests run in the look-ahead
thread.

--glue times, on 40 captured ticks, the numpy formulation the tick used before
rtb.tick_passes (tests/test_tick_passes._settle_py, plus the gathers of the tick's wins
attribution then made) against settle_tick, in thread CPU time, best of 7.
"""

from __future__ import annotations

import copy
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

import rtb.exchange as ex
from rtb.shards import Clearing
from rtb import load_scenario, simulate

LARGE = Path(__file__).resolve().parents[1] / "scenarios" / "large.toml"
STAGES = ("run_tick", "_inputs", "_floors_in_force", "_bids", "_prepare", "_requests",
          "_outcomes", "_settle_money", "_settle", "_settle_conversions", "_feedback", "_tally")


def _large(days: float):
    s = load_scenario(LARGE)
    return s.model_copy(update={"simulation": s.simulation.model_copy(update={"duration": days * 86_400})})


def stages(days: float, runs: int, threads: int | None) -> None:
    wall, cpu, lock, count = defaultdict(float), defaultdict(float), threading.Lock(), [0]

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t, c = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                dt, dc = time.perf_counter() - t, time.thread_time() - c
                with lock:
                    wall[name] += dt
                    cpu[name] += dc
        return wrapper

    for name in STAGES:
        if hasattr(ex.Exchange, name):
            setattr(ex.Exchange, name, timed(name, getattr(ex.Exchange, name)))
    # The kernel on its threads (rtb.shards): cpu is the clearing thread's share only.
    Clearing.clear = timed("clear_tick", Clearing.clear)
    run_tick = ex.Exchange.run_tick

    def counted(self, *args, **kwargs):
        n = run_tick(self, *args, **kwargs)
        count[0] += n
        return n

    ex.Exchange.run_tick = counted
    scenario = _large(days)
    simulate(scenario, threads=threads)
    best: dict[str, float] = {}
    for _ in range(runs):
        wall.clear(), cpu.clear()
        count[0] = 0
        t = time.perf_counter()
        simulate(scenario, threads=threads)
        row = {"wall_s": (time.perf_counter() - t) * 1e9 / count[0]}
        for clock, tag in ((wall, "wall"), (cpu, "cpu")):
            clock["POST_KERNEL"] = (clock["run_tick"] - clock["_inputs"] - clock["_floors_in_force"]
                                    - clock["_bids"] - clock["clear_tick"])
            row.update({f"{k} {tag}": v * 1e9 / count[0] for k, v in clock.items()})
        best = {k: min(v, best.get(k, v)) for k, v in row.items()}
    print(f"{count[0]:,} requests; ns per request, min of {runs} runs; whole run {best.pop('wall_s') * count[0] / 1e9:.2f} s")
    for name in sorted({k.rsplit(' ', 1)[0] for k in best}):
        print(f"  {name:22s} wall {best.get(name + ' wall', 0):6.0f}   cpu {best.get(name + ' cpu', 0):6.0f}")


def glue() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from rtb.attribution import TickWins
    from tests.test_tick_passes import _settle_py

    captured, settle = [], ex.settle_tick

    def capture(*args):
        if len(captured) < 40 and args[0].time_s.size > 8_000:
            captured.append(args[:-1] + (copy.deepcopy(args[-1]),))
        return settle(*args)

    ex.settle_tick = capture
    simulate(_large(1.0))
    ex.settle_tick = settle
    n = sum(c[0].time_s.size for c in captured)

    def before():
        for rq, rs, beh, odds, anon, fee, pub_fee, tally in captured:
            won, _ = _settle_py(rq, rs, beh, odds, anon, fee, pub_fee, np.arange(pub_fee.size), tally)
            camp = rs.winner[won]
            TickWins(rq.time_s[won], rq.user[won], odds.advertiser[camp], camp, rs.prior_touch[won])

    def after():
        for args in captured:
            settle(*args)

    best = {}
    for _ in range(7):
        for name, f in (("numpy (before)", before), ("settle_tick (after)", after)):
            c = time.thread_time()
            f()
            best[name] = min(best.get(name, 1e9), time.thread_time() - c)
    print(f"{len(captured)} ticks of large, {n:,} requests; the glue after the kernel:")
    for name, v in best.items():
        print(f"  {name:22s} {v / n * 1e9:6.1f} ns per request")


if __name__ == "__main__":
    if "--glue" in sys.argv:
        glue()
    else:
        args = [a for a in sys.argv[1:] if not a.startswith("-")]
        threads = next((int(a.split("=")[1]) for a in sys.argv if a.startswith("--threads=")), None)
        stages(float(args[0].rstrip("d")) if args else 1.0, int(args[1]) if len(args) > 1 else 3,
               threads)
