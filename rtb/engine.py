"""SimPy drives the run: a tick process, pacing updates, dynamic floors and delayed conversions."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Callable

import simpy

from dsp.pacing import Pacer
from rtb.exchange import Exchange
from rtb.memory import keep_freed_memory
from rtb.report import ImpressionLog, Report, build_report
from rtb.scenario import Scenario
from rtb.world import build_world

PACING_INTERVAL_S = 900.0  # pacing reacts every 15 simulated minutes (or every tick, if longer)


def simulate(scenario: Scenario, seed: int | None = None, *, budget_scale: float = 1.0,
             log_path: str | Path | None = None,
             progress: Callable[[float], None] | None = None) -> Report:
    """Run the scenario once and return its report.

    seed overrides the scenario's; budget_scale multiplies every budget; log_path, if
    given, receives one CSV row per campaign impression (written atomically).
    """
    if budget_scale <= 0:
        raise ValueError("budget_scale must be positive")
    keep_freed_memory()
    # A finished run's SimPy processes form reference cycles that keep its world (about
    # a gigabyte for `large`) alive until the garbage collector runs. Collect first, so
    # a sweep's next world reuses warm memory instead of faulting in fresh pages, which
    # on this VM cost about 1.5 s per 650 MB.
    gc.collect()
    world = build_world(scenario, seed, budget_scale)
    log = ImpressionLog(log_path, world) if log_path is not None else None
    exchange = None
    try:
        exchange = Exchange(world, log)
        _run(world, exchange, progress)
    except BaseException:
        if log is not None:
            log.abort()
        raise
    finally:
        if exchange is not None:
            exchange.close()
    if log is not None:
        log.close()
    return build_report(world, exchange.tally, budget_scale)


def _run(world, exchange: Exchange, progress) -> None:
    env = simpy.Environment()
    tick, duration = world.tick_s, world.duration_s
    pacer = Pacer(world.campaigns, exchange.pace_share)

    def ticks():
        t = 0.0
        while t < duration:
            t1 = min(t + tick, duration)
            upcoming = (t1, min(t1 + tick, duration)) if t1 < duration else None
            exchange.run_tick(t, t1, upcoming)
            if progress is not None:
                progress(t1 / duration)
            yield env.timeout(t1 - t)
            t = t1

    # Slow processes run half a tick after a tick boundary, so their order relative to
    # the ticks never rests on SimPy's same-time FIFO rule.
    def conversions():
        yield env.timeout(tick / 2)
        while True:
            exchange.settle_conversions(min(env.now + tick / 2, duration))
            yield env.timeout(tick)

    def pacing():
        every = max(1, round(PACING_INTERVAL_S / tick)) * tick
        yield env.timeout(every + tick / 2)
        while True:
            pacer.update(world.book, env.now - tick / 2)
            yield env.timeout(every)

    # Dynamic floors: each dynamic floors table updates its slots' floors every
    # `interval`, rounded to whole ticks. Half a tick before the boundary: the update
    # sees exactly the requests of [t - every, t) (a tick runs at its start time) and
    # the new floors hold from request time t on.
    def floor_updates(group: int, interval_s: float):
        every = max(1, round(interval_s / tick)) * tick
        yield env.timeout(every - tick / 2)
        while True:
            dynamic.update(group)
            yield env.timeout(every)

    env.process(ticks())
    env.process(conversions())
    env.process(pacing())
    dynamic = world.floors.dynamic
    if dynamic is not None:
        for group, spec in enumerate(dynamic.groups):
            env.process(floor_updates(group, spec.interval))
    env.run(until=duration)
    exchange.settle_conversions(duration)
