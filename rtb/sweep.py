"""What-if sweeps: one scenario run at several budget scales and seeds, runs in parallel.

Every run is an independent simulate() in its own process. Its report is written,
atomically, into the sweep's folder as soon as it finishes, under a name made of its
parameters. An interrupted sweep therefore keeps every finished run, and the same
command run again does only the missing ones. The summary (sweep.json) is rebuilt
from the run reports on disk, so it never depends on which runs happened when.
"""

from __future__ import annotations

import multiprocessing
import statistics
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import orjson

from rtb.engine import simulate
from rtb.report import write_atomic
from rtb.scenario import load_scenario

SUMMARY_FILE = "sweep.json"
SUMMARY_VERSION = 1
# Per-campaign report fields the summary averages over a scale's seeds.
SUMMARY_FIELDS = ("budget", "spend", "impressions", "reach", "clicks", "conversions",
                  "revenue", "romi", "incremental_romi")


@dataclass(frozen=True)
class SweepRun:
    budget_scale: float
    seed: int

    @property
    def file_name(self) -> str:
        # repr() keeps every digit: two scales never share a file.
        return f"scale-{self.budget_scale!r}_seed-{self.seed}.json"


class SweepInterrupted(Exception):
    """Ctrl-C during a sweep; the finished runs' reports and the summary are saved."""

    def __init__(self, done: int, total: int):
        super().__init__(f"{done} of {total} runs done")
        self.done, self.total = done, total


def plan(budget_scales: list[float], seeds: list[int]) -> list[SweepRun]:
    """Every (scale, seed) pair, scales outermost, duplicates dropped, order kept."""
    return list(dict.fromkeys(SweepRun(float(s), int(seed))
                              for s in budget_scales for seed in seeds))


def run_one(scenario_path: str, run: SweepRun, out_dir: str) -> None:
    """One run, its report written atomically (a process pool's job: module level)."""
    spec = load_scenario(scenario_path)
    report = simulate(spec, run.seed, budget_scale=run.budget_scale)
    report.write(Path(out_dir) / run.file_name)


def sweep(scenario_path: str | Path, runs: list[SweepRun], out_dir: str | Path, *,
          workers: int = 1, progress: Callable[[float], None] | None = None) -> dict:
    """Run every run whose report is not yet in out_dir; return (and save) the summary.

    workers <= 1 runs them one after another in this process. More start a pool of
    fresh ("spawn") processes: a forked child would inherit the parent's threads'
    locks, and each run needs a core and its own memory anyway.

    Raises SweepInterrupted on Ctrl-C, after saving the summary of the runs done.
    """
    out_dir = Path(out_dir)
    todo = [r for r in runs if not (out_dir / r.file_name).exists()]
    finished = len(runs) - len(todo)

    def tick() -> None:
        nonlocal finished
        finished += 1
        if progress is not None:
            progress(finished / len(runs))

    try:
        if workers <= 1 or len(todo) <= 1:
            for run in todo:
                run_one(str(scenario_path), run, str(out_dir))
                tick()
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context) as pool:
                pending = {pool.submit(run_one, str(scenario_path), run, str(out_dir)) for run in todo}
                try:
                    while pending:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for future in done:
                            future.result()  # a run's error stops the sweep, with its traceback
                            tick()
                except BaseException:
                    for future in pending:
                        future.cancel()
                    raise
    except KeyboardInterrupt:
        summary = write_summary(runs, out_dir)
        raise SweepInterrupted(len(summary["runs"]), len(runs)) from None
    return write_summary(runs, out_dir)


def write_summary(runs: list[SweepRun], out_dir: Path) -> dict:
    """sweep.json from the run reports on disk: each run, and per scale the campaigns'
    figures averaged over its seeds (ratios over the runs where they are defined)."""
    reports = {}
    for run in runs:
        path = out_dir / run.file_name
        if path.exists():
            reports[run] = orjson.loads(path.read_bytes())
    scales = list(dict.fromkeys(run.budget_scale for run in reports))
    by_scale = []
    for scale in scales:
        group = [report for run, report in reports.items() if run.budget_scale == scale]
        rows = []
        for k, first in enumerate(group[0]["campaigns"]):
            rows.append({"id": first["id"], **{
                name: _mean([report["campaigns"][k][name] for report in group])
                for name in SUMMARY_FIELDS}})
        totals = {name: _mean([report["totals"][name] for report in group])
                  for name in SUMMARY_FIELDS}
        by_scale.append({"budget_scale": scale, "seeds": len(group),
                         "campaigns": rows, "totals": totals})
    summary = {
        "summary_version": SUMMARY_VERSION,
        "scenario": next(iter(reports.values()))["scenario"]["name"] if reports else None,
        "runs": [{"budget_scale": run.budget_scale, "seed": run.seed, "report": run.file_name}
                 for run in runs if run in reports],
        "missing": [run.file_name for run in runs if run not in reports],
        "by_scale": by_scale,
    }
    write_atomic(out_dir / SUMMARY_FILE, orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    return summary


def _mean(values: list) -> float | None:
    defined = [v for v in values if v is not None]
    return round(statistics.fmean(defined), 6) if defined else None
