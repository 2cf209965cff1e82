"""What rtb optimize aims at, and the splits it runs on seeds: the machinery its searches share.

A split is a budget per campaign in integer micros (so a split sums exactly to its
total). A Goal says what counts in a run (the objective, attributed or incremental),
the per-campaign bounds and the seeds: the search seeds every candidate split is run
on, on common random numbers, and the fresh confirmation seeds the search never uses.

Evaluations runs splits on seeds. Every evaluated split is a sweep folder (rtb.sweep)
named by a short hash of its scenario: reports are written as they finish and found
again, so an interrupted optimisation resumes without redoing a run, and since every
decision is made from the reports on disk, the same inputs give the same result, byte
for byte.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import orjson

from rtb.changes import Change, apply_changes
from rtb.plan import gross_profit
from rtb.scenario import Scenario
from rtb.sweep import Runner, SweepRun, scenario_digest, sweep_many
from rtb.types import MICROS_PER_UNIT, units_to_micros

Split = tuple[int, ...]  # budget micros per campaign, in the scenario's order


def micros_to_units(micros: int) -> float:
    return round(micros / MICROS_PER_UNIT, 6)


def mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


class Goal:
    """What a search aims at: the scenario, what counts, the bounds and the seeds."""

    def __init__(self, scenario: Scenario, objective: str, incremental: bool, low: Split,
                 high: Split, search: list[int], confirm: list[int]):
        self.scenario, self.objective, self.incremental = scenario, objective, incremental
        self.ids = tuple(c.id for c in scenario.campaigns)
        self.base = tuple(units_to_micros(c.budget) for c in scenario.campaigns)
        self.low, self.high = low, high
        self.margins = {a.id: a.margin for a in scenario.advertisers}
        self.search = [SweepRun(1.0, s) for s in search]
        self.confirm = [SweepRun(1.0, s) for s in confirm]
        self.search_seeds, self.confirm_seeds = search, confirm
        self.conversions = "incremental_conversions" if incremental else "conversions"
        self.romi = "incremental_romi" if incremental else "romi"
        # budget_for_goal's: the conversions aimed at, the ROMI floor, the total allowed
        self.target: float | None = None
        self.min_romi: float | None = None
        self.limit: int | None = None

    def value(self, report: dict) -> float:
        """The objective of one run: the whole report's."""
        if self.objective == "profit":
            return gross_profit(report, self.margins, self.incremental)
        key = ("incremental_" if self.incremental else "") + self.objective
        return float(report["totals"][key])

    def contribution(self, row: dict) -> float:
        """One campaign's part of the objective in one run."""
        prefix = "incremental_" if self.incremental else ""
        if self.objective == "profit":
            return row[prefix + "revenue"] * self.margins[row["advertiser"]] - row["spend"]
        return float(row[prefix + self.objective])


class Evaluations:
    """Splits run on seeds: each split a sweep folder under `folder`, named by a short
    hash of its scenario, so a second call finds every run already done."""

    def __init__(self, scenario: Scenario, folder: Path, runner: Runner,
                 progress: Callable[[float], None] | None, planned: int):
        self.scenario, self.folder, self.runner = scenario, folder, runner
        self.ids = [c.id for c in scenario.campaigns]
        self.base = tuple(units_to_micros(c.budget) for c in scenario.campaigns)
        self._progress, self.planned, self.done, self._shown = progress, max(planned, 1), 0, 0.0
        self._scenarios: dict[Split, tuple[Scenario, Path]] = {}
        self._reports: dict[tuple[Split, SweepRun], dict] = {}
        self.used: set[tuple[Split, SweepRun]] = set()

    def scenario_of(self, split: Split) -> tuple[Scenario, Path]:
        if split not in self._scenarios:
            # Cuts first, then raises: no step passes the scenario's budget total limit.
            changes = [Change("budget", f"{cid}={m // MICROS_PER_UNIT}.{m % MICROS_PER_UNIT:06d}")
                       for cid, m, old in sorted(zip(self.ids, split, self.base),
                                                 key=lambda t: t[1] > t[2]) if m != old]
            changed = apply_changes(self.scenario, changes) if changes else self.scenario
            folder = self.folder / scenario_digest(changed)[:8]
            self._scenarios[split] = (changed, folder)
        return self._scenarios[split]

    def run(self, wanted: list[tuple[tuple[Split, float], list[SweepRun]]]) -> None:
        """Run (in one batch) every ((split, budget scale), runs) not yet on disk."""
        by_split: dict[Split, list[SweepRun]] = {}
        for (split, scale), runs in wanted:
            by_split.setdefault(split, [])
            by_split[split] += [SweepRun(scale, r.seed) for r in runs]
        folders = []
        for split, runs in by_split.items():
            runs = list(dict.fromkeys(runs))
            changed, folder = self.scenario_of(split)
            folders.append((changed, runs, folder))
            self.used.update((split, r) for r in runs)
        self.folder.mkdir(parents=True, exist_ok=True)
        todo = sum(not (folder / r.file_name).exists() for _, runs, folder in folders for r in runs)
        size = sum(len(runs) for _, runs, _ in folders)
        already = size - todo

        def progress(fraction: float) -> None:
            self._show(self.done + max(0.0, fraction * size - already))

        # Also when every report is on disk: sweep_many finds a damaged one and runs it again.
        sweep_many(folders, runner=self.runner, progress=progress if self._progress else None)
        self.done += todo
        self._show(self.done)

    def _show(self, done: float) -> None:
        if self._progress is None:
            return
        shown = min(0.99, done / self.planned)
        if shown > self._shown:
            self._shown = shown
            self._progress(shown)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress(1.0)

    def reports(self, split: Split, runs: list[SweepRun], scale: float = 1.0) -> list[dict]:
        out = []
        _, folder = self.scenario_of(split)
        for run in runs:
            run = SweepRun(scale, run.seed)
            key = (split, run)
            if key not in self._reports:
                self._reports[key] = orjson.loads((folder / run.file_name).read_bytes())
            self.used.add(key)
            out.append(self._reports[key])
        return out

    def values(self, goal: Goal, split: Split, runs: list[SweepRun]) -> list[float]:
        return [goal.value(r) for r in self.reports(split, runs)]
