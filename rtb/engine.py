"""SimPy drives the run: a tick process, pacing updates and dynamic floors."""

from __future__ import annotations

import dataclasses
import gc
import math
import numbers
from os import PathLike
from pathlib import Path
from typing import Callable, Mapping

import simpy

from dsp.custom import Checked, check_protocol
from dsp.pacing import ExpectedTraffic, Pacer
from rtb.exchange import Exchange
from rtb.impression_log import open_impression_log
from rtb.openrtb_log import OpenRtbLog
from rtb.memory import keep_freed_memory, release_freed_memory
from rtb.market import Market, build_market
from rtb.report import Report, build_report
from rtb.scenario import Scenario
from rtb.shards import default_threads
from rtb.spec_base import MAX_SCALED_BUDGET
from rtb.state import RunState, new_run_state


def simulate(scenario: Scenario, seed: int | None = None, *, budget_scale: float = 1.0,
             log_path: str | Path | None = None,
             progress: Callable[[float], None] | None = None,
             strategies: Mapping[str, object] | None = None,
             openrtb_log: str | Path | None = None, openrtb_sample: float = 0.01,
             allow_unreachable: bool = False, threads: int | None = None) -> Report:
    """Run the scenario once and return its report.

    seed overrides the scenario's; budget_scale multiplies every budget; log_path, if
    given, receives one row per campaign impression (rtb.impression_log: Parquet if it
    ends in .parquet, else CSV; written atomically).

    strategies: {campaign id: an object with bid(view) and observe(feedback)}
    (docs/strategies.md) replaces those campaigns' strategies. The objects are used as
    given: whatever state they keep carries over from one call to the next (make new
    ones per run for independent runs). A scenario's own classes (kind "python") are
    built anew for every run.

    openrtb_log: a JSONL file that receives, for a share openrtb_sample of the
    requests, the OpenRTB messages of each DSP and the outcome (docs/openrtb.md).
    allow_unreachable: run even if an external bidder does not answer at the start
    (its requests then fail, counted as faults); else InputError names it.
    threads: how many threads the run may use (default: the cores this process may
    use): 1 runs on one core. With more, one draws the next tick while the tick
    clears (when ticks are large enough for that to pay), and the tick's auctions
    clear on the others (rtb/shards.py). The report is the same bytes whatever the
    number.
    """
    _check_arguments(scenario, seed, budget_scale, log_path, progress, threads)
    _check_strategies(scenario, strategies)
    keep_freed_memory()
    # A finished run's SimPy processes form reference cycles that keep its state (about
    # a gigabyte for `large`) alive until the garbage collector runs. Collect first, so
    # a sweep's next run reuses warm memory instead of faulting in fresh pages, which
    # on this VM cost about 1.5 s per 650 MB.
    gc.collect()
    run = Run(scenario, seed, budget_scale=budget_scale, log_path=log_path, progress=progress,
              strategies=strategies, checked=True, openrtb_log=openrtb_log,
              openrtb_sample=openrtb_sample, allow_unreachable=allow_unreachable,
              threads=threads)
    return run.finish()


class Run:
    """One run that can be advanced a piece of simulated time at a time (rtb.gym).

    simulate() is Run(...).finish(); advance(until_s) runs every tick that starts before
    until_s (and the slow processes due before it), so a caller can look at the run's
    state between pieces and change what it may (Exchange.bid_scale) for the next ones.
    The results do not depend on how the run is cut: the same SimPy processes, in the
    same order, as one env.run(until=duration).
    """

    def __init__(self, scenario: Scenario, seed: int | None = None, *, budget_scale: float = 1.0,
                 log_path: str | Path | None = None,
                 progress: Callable[[float], None] | None = None,
                 strategies: Mapping[str, object] | None = None, checked: bool = False,
                 openrtb_log: str | Path | None = None, openrtb_sample: float = 0.01,
                 allow_unreachable: bool = False, threads: int | None = None):
        if not checked:
            _check_arguments(scenario, seed, budget_scale, log_path, progress, threads)
            _check_strategies(scenario, strategies)
            keep_freed_memory()
            gc.collect()
        market = build_market(scenario, seed, budget_scale)
        if strategies:
            market = _with_strategies(market, strategies)
        self.market = market
        self.state = state = new_run_state(market)
        release_freed_memory()  # the build's temporaries: not part of the run's peak
        self._log = log = open_impression_log(log_path, market.labels) if log_path is not None else None
        self.exchange = None
        self._openrtb_log = None
        try:
            if openrtb_log is not None:
                self._openrtb_log = OpenRtbLog(openrtb_log, market, openrtb_sample)
            self.exchange = Exchange(market, state, log, allow_unreachable=allow_unreachable,
                                     threads=default_threads() if threads is None else threads,
                                     openrtb_log=self._openrtb_log)
            self._env = _processes(market, state, self.exchange, progress)
        except BaseException:
            self._abort()
            raise

    @property
    def now_s(self) -> float:
        """Simulated seconds since the start: every tick before it has run."""
        return float(self._env.now)

    @property
    def done(self) -> bool:
        return self._env.now >= self.market.duration_s

    def advance(self, until_s: float) -> None:
        """Run the ticks that start before until_s (capped at the run's end)."""
        until_s = min(float(until_s), self.market.duration_s)
        if until_s <= self._env.now:
            return
        try:
            self._env.run(until=until_s)
        except BaseException:
            self._abort()
            raise

    def finish(self) -> Report:
        """Run to the end, close the log and the exchange, and return the report."""
        self.advance(self.market.duration_s)
        self.close()
        for log in (self._log, self._openrtb_log):
            if log is not None:
                log.close()
        self._log = self._openrtb_log = None
        return build_report(self.market, self.state)

    def close(self) -> None:
        """Stop the exchange's look-ahead thread (the run can no longer advance)."""
        if self.exchange is not None:
            self.exchange.close()

    def _abort(self) -> None:
        for log in (self._log, self._openrtb_log):
            if log is not None:
                log.abort()
        self._log = self._openrtb_log = None
        self.close()


def _check_arguments(scenario, seed, budget_scale, log_path, progress, threads) -> None:
    """simulate()'s arguments, each named when wrong: a Python caller gets a TypeError or
    ValueError, never an AttributeError from deep in the run."""
    if not isinstance(scenario, Scenario):
        raise TypeError(f"scenario must be an rtb.Scenario (rtb.load_scenario reads a file,"
                        f" rtb.parse_scenario takes a dict), not {type(scenario).__name__}")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"seed must be an int or None, not {type(seed).__name__}")
        if not 0 <= seed < 2**63:
            raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    if isinstance(budget_scale, bool) or not isinstance(budget_scale, numbers.Real):
        raise TypeError(f"budget_scale must be a number, not {type(budget_scale).__name__}")
    if not (math.isfinite(budget_scale) and budget_scale > 0):
        raise ValueError(f"budget_scale must be positive and finite, got {budget_scale}")
    budgets = sum(c.budget for c in scenario.campaigns) * budget_scale
    if budgets > MAX_SCALED_BUDGET:
        raise ValueError(f"budget_scale {budget_scale:g} makes the budgets total {budgets:.4g},"
                         f" at most {MAX_SCALED_BUDGET:.0e} (money is counted in int64 micros)")
    if log_path is not None and not isinstance(log_path, (str, PathLike)):
        raise TypeError(f"log_path must be a str or path, not {type(log_path).__name__}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable or None, not {type(progress).__name__}")
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, numbers.Integral):
            raise TypeError(f"threads must be an int or None, not {type(threads).__name__}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")


def _check_strategies(scenario: Scenario, strategies) -> None:
    """strategies=: a mapping of the scenario's campaign ids to objects that bid and observe."""
    if strategies is None:
        return
    if not isinstance(strategies, Mapping):
        raise TypeError(f"strategies must be a dict of campaign id to strategy, not"
                        f" {type(strategies).__name__}")
    ids = [c.id for c in scenario.campaigns]
    for cid, strategy in strategies.items():
        if cid not in ids:
            raise ValueError(f"strategies: no campaign {cid!r}; the scenario has {', '.join(ids)}")
        check_protocol(strategy, cid)


def _with_strategies(market: Market, strategies: Mapping[str, object]) -> Market:
    """The market with the given campaigns' strategies replaced (bids checked each tick)."""
    table = market.campaigns
    replaced = tuple(Checked(strategies[cid], f"strategies[{cid!r}] ({type(strategies[cid]).__name__})")
                     if cid in strategies else own for cid, own in zip(table.ids, table.strategies))
    return dataclasses.replace(market, campaigns=table._replace(strategies=replaced))


def _run(market: Market, state: RunState, exchange: Exchange, progress) -> None:
    """The whole run at once (tests drive a market they built themselves through here)."""
    _processes(market, state, exchange, progress).run(until=market.duration_s)


def _processes(market: Market, state: RunState, exchange: Exchange, progress) -> simpy.Environment:
    """The run's SimPy environment with its processes: every tick in order; between
    ticks the slow processes (pacing, moving floors). Run it until the run's duration.

    A tick settles the conversions that fall in it, so nothing waits for a process:
    conversions after the end of the run are never counted.
    """
    env = simpy.Environment()
    tick, duration = market.tick_s, market.duration_s
    table = market.campaigns
    traffic = ExpectedTraffic(market.inventory, market.start.timestamp(), duration, table.slot_words,
                              table.anonymous_row, market.deals.slot_anonymous_share)
    pacer = Pacer(table, traffic, state.pace_share, state.bid_multiplier)

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

    # Slow processes run half a tick off a tick boundary, so their order relative to
    # the ticks never rests on SimPy's same-time FIFO rule.
    # Pacing reacts after every tick (from the first: no tick runs unpaced), to the
    # ticks up to the next boundary; its averages make that independent of the tick.
    def pacing():
        yield env.timeout(tick / 2)
        while True:
            pacer.update(state.book, state.pace_share, state.bid_multiplier,
                         min(env.now + tick / 2, duration))
            yield env.timeout(tick)

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
    env.process(pacing())
    dynamic = state.dynamic_floors
    if dynamic is not None:
        for group, rule in enumerate(dynamic.groups):
            env.process(floor_updates(group, rule.interval))
    return env
