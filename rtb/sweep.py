"""What-if sweeps: one scenario run at several budget scales and seeds, runs in parallel.

Every run is an independent simulate() in a worker process: a local process pool, or
the workers of a Dask cluster. The worker returns the report's bytes and this process
writes them, atomically, into the sweep's folder as soon as the run finishes, under a
name made of its parameters. An interrupted sweep therefore keeps every finished run,
and the same command run again does only the missing ones. The summary (sweep.json) is
rebuilt from the run reports on disk, so it never depends on which runs happened when.
A report that does not parse (damaged by hand or by a disk) is named in a DamagedFile
warning (rtb.files) and run again.

Local workers never outlive the sweep's process (rtb.worker_pool: they are kept, kernels
loaded, for the next sweep in the same process); an interrupted sweep terminates the
runs in progress.
"""

from __future__ import annotations

import hashlib
import statistics
import threading
import warnings
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import orjson

from rtb import worker_pool
from rtb.atomic import remove_leftovers, write_atomic
from rtb.engine import simulate
from rtb.files import DamagedFile
from rtb.scenario import Scenario
from rtb.shards import default_threads

SUMMARY_FILE = "sweep.json"
SUMMARY_VERSION = 2  # 2: the ranges over seeds
EXECUTORS = ("local", "dask")
# Per-campaign report fields the summary gives over a scale's seeds: mean and range.
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


class FolderOfAnotherSweep(ValueError):
    """The output folder holds runs of another scenario (or of this one before an edit)."""


class SweepInterrupted(Exception):
    """Ctrl-C during a sweep; the finished runs' reports and the summary are saved."""

    def __init__(self, done: int, total: int):
        super().__init__(f"{done} of {total} runs done")
        self.done, self.total = done, total


def plan(budget_scales: list[float], seeds: list[int]) -> list[SweepRun]:
    """Every (scale, seed) pair, scales outermost, duplicates dropped, order kept."""
    return list(dict.fromkeys(SweepRun(float(s), int(seed))
                              for s in budget_scales for seed in seeds))


def scenario_digest(scenario: Scenario) -> str:
    """SHA-256 of the validated scenario: what a folder's runs were made from.

    Every strategy and pacing setting is part of the scenario; a user's class (kind
    "python") is named with its params, and its module file's content is added, so a
    folder refuses runs made before the class's file was edited."""
    data = _without_later_defaults(scenario.model_dump(mode="json"))
    sources = strategy_sources(scenario)
    if sources:  # (absent otherwise: the digests of folders made before stay valid)
        data["strategy_sources"] = sources
    canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


# A DSP's fields that mean something only for an external bidder (rtb.scenario.DspSpec).
EXTERNAL_BIDDER_FIELDS = ("endpoint", "tmax", "latency", "latency_median", "latency_spread",
                          "notices", "connections")


def _without_later_defaults(data: dict) -> dict:
    """The dumped scenario without the fields added after folders were first made, where
    they hold their defaults (anonymity, domain targeting, report options, a DSP's
    external bidder settings without an endpoint, the identity model when absent), and a
    consent rate given as a table with one rate for every geo as that one number (the
    run is the same): the digests of the folders made before stay valid."""
    dmp = data.get("dmp") or {}
    if "identity" in dmp and dmp["identity"] is None:
        del dmp["identity"]
    rate = dmp.get("consent_rate")
    if isinstance(rate, dict) and len(set(rate.values())) == 1 and set(rate) == set(dmp.get("geos", {})):
        dmp["consent_rate"] = next(iter(rate.values()))
    for dsp in data.get("dsps", []):
        if dsp.get("endpoint") is None:
            for name in EXTERNAL_BIDDER_FIELDS:
                dsp.pop(name, None)
    if data.get("report") == {"advertiser_bids": False}:
        del data["report"]
    for pub in data.get("publishers", []):
        if pub.get("anonymous") is False:
            del pub["anonymous"]
        for deal in pub.get("deals", []):
            if deal.get("anonymous") is False:
                del deal["anonymous"]
    for camp in data.get("campaigns", []):
        targeting = camp.get("targeting") or {}
        for name in ("domains", "exclude_domains"):
            if targeting.get(name) == []:
                del targeting[name]
    return data


def strategy_sources(scenario: Scenario) -> dict[str, str | None]:
    """SHA-256 of the module file of each campaign's own class (kind "python"), by id."""
    from dsp.custom import source_sha256

    return {c.id: source_sha256(c.strategy.class_, c.strategy.folder)
            for c in scenario.campaigns if c.strategy is not None and c.strategy.kind == "python"}


def run_one(scenario: Scenario, run: SweepRun, threads: int | None = None) -> bytes:
    """One run's report, as `rtb run` would write it (a worker's job: module level).
    threads: the run's (default: the cores); the report is the same whatever it is."""
    return simulate(scenario, run.seed, budget_scale=run.budget_scale, threads=threads).to_json()


@contextmanager
def _executor(kind: str, workers: int, scheduler: str | None) -> Iterator[Executor]:
    if kind == "local":
        with worker_pool.lease(workers) as pool:
            yield pool
    elif kind == "dask":
        from distributed import Client  # the optional 'dask' extra

        with Client(scheduler) as client:
            pool = client.get_executor(pure=False)  # concurrent.futures futures
            try:
                yield pool
            finally:
                pool.shutdown(wait=False)
    else:
        raise ValueError(f"unknown executor {kind!r}; expected one of {EXECUTORS}")


@dataclass(frozen=True)
class Job:
    """One run of one scenario, and the file its report goes to."""
    scenario: Scenario
    run: SweepRun
    path: Path


class Runner:
    """Runs batches of jobs: in this process, a local pool or a Dask cluster.

    Local, with `workers` N > 1: N - 1 worker processes and this process itself, which
    runs jobs while the workers start (a fresh one pays about 1.5 s for numba's import
    and cached kernels) instead of waiting on them, and once they are warm runs as fast
    as one more worker would, without another process's memory. The workers are the
    process's pool (rtb.worker_pool), taken at the first batch that needs one: a search
    that runs many small batches (rtb.optimize), and any later block asking for as many
    workers, pays for their start once. Leaving the block by an exception (Ctrl-C)
    terminates the runs in progress."""

    def __init__(self, workers: int = 1, executor: str = "local", scheduler: str | None = None):
        if executor not in EXECUTORS:
            raise ValueError(f"unknown executor {executor!r}; expected one of {EXECUTORS}")
        self.workers, self.executor, self.scheduler = workers, executor, scheduler
        # Local runs going at once share the cores: each gets its share of them (one
        # core each with two workers on two cores). A Dask worker's run takes its own.
        self._threads = (max(1, default_threads() // max(1, workers)) if executor == "local"
                         else None)
        self._stack = ExitStack()
        self._pool: Executor | None = None

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc_info) -> bool:
        return self._stack.__exit__(*exc_info)

    def run(self, jobs: list[Job], saved: Callable[[Job], None] | None = None) -> None:
        """Run every job whose report is not on disk yet; write each report atomically
        as soon as it is done, then call saved(job). A run's error stops the batch."""
        todo = deque(job for job in jobs if not job.path.exists())

        def save(job: Job, report: bytes) -> None:
            write_atomic(job.path, report)
            if saved is not None:
                saved(job)

        local = self.executor == "local"
        if local and (self.workers <= 1 or len(todo) <= 1):
            for job in todo:
                save(job, run_one(job.scenario, job.run, self._threads))
            return
        if not todo:
            return
        if self._pool is None:
            size = self.workers - 1 if local else self.workers
            self._pool = self._stack.enter_context(_executor(self.executor, size, self.scheduler))
        if local:
            self._share(todo, save)
        else:
            self._hand_over(todo, save)

    def _share(self, todo: deque[Job], save: Callable[[Job, bytes], None]) -> None:
        """Run the batch on the local workers and in this process, each taking the next
        job the moment it is free: workers from the front, this process from the end.

        A worker holds only the job it runs, never one queued behind it: a queued job
        cannot be taken back (the pool marks it running once queued), so the batch's
        last jobs would wait for that worker while this process sat idle (8 equal runs on
        two processes took as long as 5 in a row, not 4). A worker is handed its next job
        by a callback in the pool's result thread as its run ends, not when this
        process's own run ends. Reports are written and `saved` called here only."""
        pool = self._pool
        lock = threading.Lock()  # todo, pending and stopped, shared with the result thread
        pending: dict[Future, Job] = {}
        stopped = False

        def feed(_done: Future | None = None) -> None:
            with lock:
                if stopped or not todo:
                    return
                job = todo.popleft()
                try:
                    future = pool.submit(run_one, job.scenario, job.run, self._threads)
                except RuntimeError:  # the pool broke (a worker killed) or was shut down:
                    todo.appendleft(job)  # this process runs it; broken runs stop the batch
                    return
                pending[future] = job
            future.add_done_callback(feed)

        def harvest(block: bool) -> None:
            with lock:
                running = list(pending)
            done, _ = wait(running, timeout=None if block else 0, return_when=FIRST_COMPLETED)
            for future in done:
                with lock:
                    job = pending.pop(future)
                save(job, future.result())

        try:
            for _ in range(self.workers - 1):
                feed()
            while True:
                with lock:
                    job = todo.pop() if todo else None  # from the end: the workers keep the order
                if job is None:
                    break
                save(job, run_one(job.scenario, job.run, self._threads))
                harvest(block=False)
            while pending:
                harvest(block=True)
        except BaseException:
            with lock:
                stopped = True
                running = list(pending)
            for future in running:  # not under the lock: a cancelled future calls feed
                future.cancel()
            raise

    def _hand_over(self, todo: deque[Job], save: Callable[[Job, bytes], None]) -> None:
        """Every job to the Dask cluster at once: it schedules them itself."""
        pending = {self._pool.submit(run_one, job.scenario, job.run, self._threads): job for job in todo}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    save(pending.pop(future), future.result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def prepare_folder(scenario: Scenario, runs: list[SweepRun], out_dir: Path) -> str:
    """Make out_dir this scenario's sweep folder; return the scenario's digest.

    Raises FolderOfAnotherSweep if out_dir's summary names another scenario: its
    reports must not be mixed in. Removes a killed sweep's temporary files and any
    damaged report (to be run again), then writes the summary of the runs on disk,
    which marks the folder as this scenario's before the first run."""
    digest = scenario_digest(scenario)
    if _folder_digest(out_dir) not in (None, digest):
        raise FolderOfAnotherSweep(f"{out_dir} holds the runs of another scenario (or of this"
                                   " one before an edit); use another folder")
    out_dir.mkdir(exist_ok=True)
    remove_leftovers(out_dir)
    for run in runs:
        _check_report(out_dir / run.file_name)
    write_summary(runs, out_dir, digest)
    return digest


def sweep_many(folders: list[tuple[Scenario, list[SweepRun], Path]], *, runner: Runner,
               progress: Callable[[float], None] | None = None) -> None:
    """Several sweeps at once, each (scenario, runs, folder), all their runs in one
    batch of `runner`, so every worker stays busy to the end. Writes each folder's
    summary (sweep.json). Raises FolderOfAnotherSweep before any run, and
    SweepInterrupted on Ctrl-C after saving every summary."""
    digests = [prepare_folder(scenario, runs, Path(folder)) for scenario, runs, folder in folders]
    jobs = [Job(scenario, run, Path(folder) / run.file_name)
            for scenario, runs, folder in folders for run in runs]
    total = len(jobs)
    finished = sum(job.path.exists() for job in jobs)

    def saved(job: Job) -> None:
        nonlocal finished
        finished += 1
        if progress is not None:
            progress(finished / total)

    def summaries() -> None:
        for (_, runs, folder), digest in zip(folders, digests):
            write_summary(runs, Path(folder), digest)

    try:
        runner.run(jobs, saved)
    except KeyboardInterrupt:
        summaries()
        raise SweepInterrupted(sum(job.path.exists() for job in jobs), total) from None
    summaries()


def sweep(scenario: Scenario, runs: list[SweepRun], out_dir: str | Path, *,
          workers: int = 1, executor: str = "local", scheduler: str | None = None,
          progress: Callable[[float], None] | None = None) -> dict:
    """Run every run whose report is not yet in out_dir; return (and save) the summary.

    executor "local": `workers` processes, or this process alone when workers <= 1.
    "dask": the workers of the Dask scheduler at `scheduler` (they need the scenario's
    data files, e.g. a market histogram, at the same paths).

    Raises FolderOfAnotherSweep before any run if out_dir's summary names another
    scenario. Raises SweepInterrupted on Ctrl-C, after saving the summary of the runs done.
    """
    out_dir = Path(out_dir)
    with Runner(workers, executor, scheduler) as runner:
        sweep_many([(scenario, runs, out_dir)], runner=runner, progress=progress)
    return read_summary(out_dir)


def read_summary(out_dir: Path) -> dict:
    return orjson.loads((Path(out_dir) / SUMMARY_FILE).read_bytes())


def _folder_digest(out_dir: Path) -> str | None:
    """The scenario digest of the sweep already in out_dir; None if there is none."""
    path = out_dir / SUMMARY_FILE
    if not path.exists():
        return None
    try:
        return str(orjson.loads(path.read_bytes()).get("scenario_sha256"))
    except (orjson.JSONDecodeError, AttributeError):
        return "unreadable"


def _check_report(path: Path) -> None:
    """Remove a run's report that does not parse (warning DamagedFile), so it is redone.

    Reports are written atomically, so this is a file damaged after the fact (by
    hand, a disk, a copy cut short), not a run interrupted."""
    try:
        report = orjson.loads(path.read_bytes())
        if isinstance(report, dict) and isinstance(report.get("campaigns"), list) \
                and "totals" in report and "scenario" in report:
            return
        problem = "not a run report"
    except FileNotFoundError:
        return
    except orjson.JSONDecodeError as exc:
        problem = f"not valid JSON ({exc})"
    except OSError as exc:
        problem = f"cannot read ({exc.strerror or exc})"
    try:
        path.unlink()
    except OSError as exc:
        raise OSError(exc.errno, f"damaged report ({problem}) cannot be removed: {exc.strerror}",
                      str(path)) from None
    warnings.warn(DamagedFile(f"{path}: {problem}; run again"), stacklevel=2)


def write_summary(runs: list[SweepRun], out_dir: Path, digest: str) -> dict:
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
        rows = [{"id": first["id"], **_over_seeds([report["campaigns"][k] for report in group])}
                for k, first in enumerate(group[0]["campaigns"])]
        totals = _over_seeds([report["totals"] for report in group])
        by_scale.append({"budget_scale": scale, "seeds": len(group),
                         "campaigns": rows, "totals": totals})
    summary = {
        "summary_version": SUMMARY_VERSION,
        "scenario": next(iter(reports.values()))["scenario"]["name"] if reports else None,
        "currency": next(iter(reports.values()))["scenario"].get("currency") if reports else None,
        "scenario_sha256": digest,
        "runs": [{"budget_scale": run.budget_scale, "seed": run.seed, "report": run.file_name}
                 for run in runs if run in reports],
        "missing": [run.file_name for run in runs if run not in reports],
        "by_scale": by_scale,
    }
    write_atomic(out_dir / SUMMARY_FILE, orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    return summary


def _over_seeds(figures: list[dict]) -> dict:
    """One campaign's (or the totals') figures at one scale, one dict per seed: each
    field's mean, and under "range" its lowest and highest value, over the seeds where
    it is defined (a ROMI is not without spend); None where it never is."""
    summary: dict = {}
    ranges: dict = {}
    for name in SUMMARY_FIELDS:
        defined = [f[name] for f in figures if f[name] is not None]
        summary[name] = round(statistics.fmean(defined), 6) if defined else None
        ranges[name] = [min(defined), max(defined)] if defined else None
    summary["range"] = ranges
    return summary
