"""The `rtb` command: thin wrappers that parse options, call the library and render."""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.table import Table

from rtb.errors import InputError
from rtb.progress import LazyProgress
from rtb.tables import campaign_table, compare_table, sweep_table

# Only rtb.errors is imported up here: the engine (numba: 0.3 s warm, seconds cold) and
# the scenario models (pydantic, numpy) are imported by the commands that need them, so
# --help, --version, shell completion, `rtb validate` and `rtb schema` start fast.

app = typer.Typer(no_args_is_help=True, help="rtbsim: a programmatic ad-buying simulator.")
MAX_BUDGET_SCALE = 100.0  # with scenario.MAX_MONEY, keeps budgets (and their sums) in int64 micros

# Piped output is not squeezed to 80 columns (a wide table stays readable in files)
# unless COLUMNS says how wide it should be.
out_console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200)
err = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"rtbsim {version('rtbsim')}")
        raise typer.Exit()


# The signal that interrupted the command: SIGTERM is handled as Ctrl-C is (outputs
# not finished are removed, a sweep keeps its finished runs), and the exit code is
# 128 + the signal's number, as a shell reports a signal: 130 for Ctrl-C, 143 for SIGTERM.
_interrupting_signal = signal.SIGINT


def _on_sigterm(signum, frame) -> None:
    global _interrupting_signal
    _interrupting_signal = signal.Signals(signum)
    signal.signal(signum, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
    raise KeyboardInterrupt


def _interrupted_exit_code() -> int:
    return 128 + int(_interrupting_signal)


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version,
                                          is_eager=True, help="Print the version and exit.")) -> None:
    # The app's own options; the commands do the work. Only where SIGTERM is left at its
    # default (not in a host that set its own, e.g. a test runner).
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL):
        signal.signal(signal.SIGTERM, _on_sigterm)


@contextmanager
def input_errors() -> Iterator[None]:
    """Turn InputError into one line per problem on stderr and exit code 2; a deprecated
    spelling into one warning line."""
    from rtb.strategy_spec import DeprecatedSpelling
    from rtb.files import DamagedFile

    show = warnings.showwarning

    def show_deprecation(message, category, *args, **kwargs) -> None:
        if issubclass(category, (DeprecatedSpelling, DamagedFile)):
            err.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)
        else:
            show(message, category, *args, **kwargs)

    try:
        with warnings.catch_warnings():  # restores showwarning after
            warnings.showwarning = show_deprecation
            yield
    except InputError as exc:
        for line in exc.lines():
            err.print(line, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        raise typer.Exit(code=_interrupted_exit_code()) from None
    except OSError as exc:  # a full disk, a folder gone or made read-only meanwhile
        where = f"{exc.filename}: " if exc.filename else ""
        err.print(f"error: {where}{exc.strerror or exc}", markup=False, highlight=False,
                  soft_wrap=True)
        raise typer.Exit(code=1) from None


def check_output_path(path: Path | None, option: str) -> None:
    """Fail before any work if an output cannot be written where asked; remove the
    temporary files a killed run left beside it (rtb.atomic.remove_leftovers)."""
    from rtb.atomic import remove_leftovers

    if path is None:
        return
    if path.is_dir():
        raise InputError.single(str(path), option, "is a directory")
    if path.exists() and not path.is_file():
        raise InputError.single(str(path), option, "is not a regular file")
    folder = path.parent
    if not folder.exists():
        raise InputError.single(str(path), option, f"folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise InputError.single(str(path), option, f"{str(folder)!r} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError.single(str(path), option, f"folder {str(folder)!r} is not writable")
    remove_leftovers(folder)


def check_distinct(outputs: dict[str, Path | None], inputs: dict[str, Path | None]) -> None:
    """Fail before any work if two outputs are one file (`--out X --log X`) or an
    output is an input (the scenario, its histogram, a log being replayed): the run
    would overwrite what it reads, or one output the other."""
    def key(path: Path) -> tuple:
        try:
            st = path.stat()  # a hard link or symlink to the same file is the same file
            return (st.st_dev, st.st_ino)
        except OSError:
            return (os.path.realpath(path),)

    read = {key(path): label for label, path in reversed(inputs.items()) if path is not None}
    written: dict[tuple, str] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        if key(path) in read:
            raise InputError.single(str(path), option, f"is {read[key(path)]}, an input of the run")
        if key(path) in written:
            raise InputError.single(str(path), option, f"is also the output of {written[key(path)]}")
        written[key(path)] = option


def _scenario_inputs(scenario: Path, spec) -> dict[str, Path | None]:
    """The files a scenario run reads: the scenario and its market histogram, if any."""
    market_file = getattr(spec.exchange.market, "file", None)
    return {"the scenario": scenario,
            "the market histogram": Path(market_file) if market_file else None}


MAX_MEMORY_OPTION = typer.Option(None, "--max-memory", help="refuse a run estimated to need more"
                                 " memory than this, e.g. 2G or 512M (default: the memory"
                                 " available now)")


def _check_resources(spec, scenario: Path, max_memory: str | None, quiet: bool, **runs) -> None:
    """Before any work: exit 2 if the runs' estimated memory exceeds --max-memory (or the
    memory available now); one line on stderr if they are expected to take over a minute."""
    from rtb.estimate import check_resources

    notice = check_resources(spec, str(scenario), max_memory, **runs)
    if notice is not None and not quiet:
        err.print(notice, markup=False, highlight=False, soft_wrap=True)


@app.command()
def run(
    scenario: Path = typer.Argument(..., help="scenario file (.toml or .json)"),
    seed: Optional[int] = typer.Option(None, help="root seed (default: the scenario's)"),
    out: Optional[Path] = typer.Option(None, help="write the JSON report here"),
    log: Optional[Path] = typer.Option(None, help="write one row per impression here: CSV, or"
                                       " Parquet if the name ends in .parquet (the 'parquet' extra)"),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="write the campaigns' results"
                                            " here as CSV, one row per campaign"),
    budget_scale: float = typer.Option(1.0, help="multiply every campaign budget (what-if)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    max_memory: Optional[str] = MAX_MEMORY_OPTION,
) -> None:
    """Simulate a scenario and report what every campaign bought and returned."""
    from rtb.engine import simulate
    from rtb.impression_log import PARQUET_EXTRA, is_parquet
    from rtb.scenario import load_scenario

    with input_errors():
        _check_budget_scale(budget_scale)
        if seed is not None and seed < 0:
            raise InputError.single("command line", "--seed", "must be >= 0")
        check_output_path(out, "--out")
        check_output_path(log, "--log")
        if log is not None and is_parquet(log) and importlib.util.find_spec("pyarrow") is None:
            raise InputError.single("command line", "--log",
                                    f"a .parquet log needs the parquet extra: {PARQUET_EXTRA}")
        check_output_path(csv_path, "--csv")
        spec = load_scenario(scenario)
        check_distinct({"--out": out, "--log": log, "--csv": csv_path},
                       _scenario_inputs(scenario, spec))
        _check_resources(spec, scenario, max_memory, quiet)
        progress = LazyProgress(not quiet, f"simulating {spec.name}")
        try:
            report = simulate(spec, seed, budget_scale=budget_scale, log_path=log, progress=progress)
        finally:
            progress.close()
        if out is not None:
            report.write(out)
        if csv_path is not None:
            report.write_csv(csv_path)
    out_console.print(campaign_table(report.to_dict(), out_console.width))


def _check_budget_scale(budget_scale: float) -> None:
    if not 0 < budget_scale <= MAX_BUDGET_SCALE:
        raise InputError.single("command line", "--budget-scale",
                                f"must be a number in (0, {MAX_BUDGET_SCALE:g}]")


def _number_list(text: str, option: str, kind: type, ok: Callable[[float], bool],
                 requirement: str) -> list:
    """A comma-separated option (e.g. --budget-scales 0.5,1,2) as numbers, or exit 2."""
    values = []
    for item in text.split(","):
        try:
            value = kind(item.strip())
        except ValueError:
            raise InputError.single("command line", option, f"{item.strip()!r} is not a number") from None
        if not ok(value):
            raise InputError.single("command line", option, f"{item.strip()} {requirement}")
        values.append(value)
    return values


def _check_executor_options(workers: int, executor: str, scheduler: str | None,
                            out_dir: Path) -> None:
    """The options sweep and compare share: where the runs go and where they are saved."""
    from rtb.sweep import EXECUTORS

    if workers < 1:
        raise InputError.single("command line", "--workers", "must be >= 1")
    if executor not in EXECUTORS:
        raise InputError.single("command line", "--executor",
                                f"{executor!r} is not one of {', '.join(EXECUTORS)}")
    if (executor == "dask") != (scheduler is not None):
        raise InputError.single("command line", "--scheduler",
                                "goes with --executor dask, and it needs one")
    if executor == "dask" and importlib.util.find_spec("distributed") is None:
        raise InputError.single("command line", "--executor",
                                "dask needs the dask extra: pip install 'rtbsim[dask]'")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError.single(str(out_dir), "--out-dir", "is not a folder")
    if not out_dir.parent.exists():
        raise InputError.single(str(out_dir), "--out-dir",
                                f"folder {str(out_dir.parent)!r} does not exist")
    writable = out_dir if out_dir.is_dir() else out_dir.parent
    if not os.access(writable, os.W_OK | os.X_OK):
        raise InputError.single(str(out_dir), "--out-dir", f"folder {str(writable)!r} is not writable")
    if out_dir.is_dir():
        from rtb.atomic import remove_leftovers

        remove_leftovers(out_dir)  # a killed run's temporary files (a sweep's own: sweep())


def _run_saving_on_interrupt(work: Callable[[Callable[[float], None]], dict], out_dir: Path,
                             quiet: bool, description: str) -> dict:
    """Run a sweep-like job with a progress bar: exit 2 if out_dir holds another
    scenario's runs, 130 on Ctrl-C (the finished runs are saved)."""
    from rtb.sweep import FolderOfAnotherSweep, SweepInterrupted

    progress = LazyProgress(not quiet, description)
    try:
        return work(progress)
    except FolderOfAnotherSweep:
        raise InputError.single(str(out_dir), "--out-dir", "holds runs made from something else"
                                " (another scenario or strategy, or this one before an edit);"
                                " use another folder") from None
    except SweepInterrupted as stop:
        progress.close()
        err.print(f"interrupted: {stop.done} of {stop.total} runs saved in {out_dir};"
                  " the same command finishes the rest", markup=False, highlight=False)
        raise typer.Exit(code=_interrupted_exit_code()) from None
    finally:
        progress.close()


WORKERS_OPTION = typer.Option(2, "--workers", help="local executor: runs at a time, one process each")
EXECUTOR_OPTION = typer.Option("local", "--executor", help="local (a process pool) or dask")
SCHEDULER_OPTION = typer.Option(None, "--scheduler",
                                help="dask: the scheduler's address, e.g. tcp://host:8786")
QUIET_OPTION = typer.Option(False, "--quiet", "-q", help="no progress bar")


@app.command("sweep")
def sweep_command(
    scenario: Path = typer.Argument(..., help="scenario file (.toml or .json)"),
    out_dir: Path = typer.Option(..., "--out-dir", help="folder for each run's report and sweep.json"),
    budget_scales: str = typer.Option("1", "--budget-scales", help="comma-separated, e.g. 0.5,1,2"),
    seeds: Optional[str] = typer.Option(None, "--seeds",
                                        help="comma-separated root seeds (default: the scenario's)"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="also draw the response curves:"
                                        " a .png, .svg or .pdf file (the 'plot' extra)"),
    workers: int = WORKERS_OPTION,
    executor: str = EXECUTOR_OPTION,
    scheduler: Optional[str] = SCHEDULER_OPTION,
    quiet: bool = QUIET_OPTION,
    max_memory: Optional[str] = MAX_MEMORY_OPTION,
) -> None:
    """Run a scenario at several budget scales (and seeds): what-if per campaign."""
    from rtb.scenario import load_scenario
    from rtb.sweep import SUMMARY_FILE, plan, sweep

    with input_errors():
        scales = _number_list(budget_scales, "--budget-scales", float,
                              lambda x: 0 < x <= MAX_BUDGET_SCALE, f"must be in (0, {MAX_BUDGET_SCALE:g}]")
        _check_executor_options(workers, executor, scheduler, out_dir)
        _check_plot_option(plot)
        spec = load_scenario(scenario)
        check_distinct({"--out-dir": out_dir, "--plot": plot,
                        "--out-dir's sweep.json": out_dir / SUMMARY_FILE},
                       _scenario_inputs(scenario, spec))
        seed_list = ([spec.simulation.seed] if seeds is None else
                     _number_list(seeds, "--seeds", int, lambda x: x >= 0, "must be >= 0"))
        runs = plan(scales, seed_list)
        _check_resources(spec, scenario, max_memory, quiet, runs=len(runs),
                         at_once=workers if executor == "local" else 1, local=executor == "local")
        summary = _run_saving_on_interrupt(
            lambda progress: sweep(spec, runs, out_dir, workers=workers, executor=executor,
                                   scheduler=scheduler, progress=progress),
            out_dir, quiet, f"sweeping {spec.name} ({len(runs)} runs)")
    if plot is not None:
        from rtb.plot import plot_sweep

        plot_sweep(summary, plot)
    out_console.print(sweep_table(summary))


def _check_plot_option(plot: Path | None) -> None:
    if plot is None:
        return
    from rtb.plot import FORMATS, plot_format

    if plot_format(plot) is None:
        raise InputError.single(str(plot), "--plot",
                                "must end in " + ", ".join(f".{f}" for f in FORMATS))
    if importlib.util.find_spec("matplotlib") is None:
        raise InputError.single("command line", "--plot",
                                "pictures need the plot extra: pip install 'rtbsim[plot]'")
    check_output_path(plot, "--plot")


@app.command("compare")
def compare_command(
    scenario: Path = typer.Argument(..., help="scenario file (.toml or .json)"),
    campaign: str = typer.Option(..., "--campaign", help="the campaign whose strategy changes"),
    strategies: list[str] = typer.Option(
        ..., "--strategy", help="""a strategy as in a scenario file, e.g. '{ kind = "value","""
        """ shading = 0.7 }', or in the short form KIND:NAME=VALUE,..., e.g. value:shading=0.7;"""
        " repeat for more"),
    out_dir: Path = typer.Option(..., "--out-dir", help="folder for the runs and compare.json"),
    seeds: str = typer.Option("1,2,3,4,5", "--seeds", help="comma-separated root seeds, two or more"),
    budget_scale: float = typer.Option(1.0, "--budget-scale", help="every budget times this"),
    workers: int = WORKERS_OPTION,
    executor: str = EXECUTOR_OPTION,
    scheduler: Optional[str] = SCHEDULER_OPTION,
    quiet: bool = QUIET_OPTION,
    max_memory: Optional[str] = MAX_MEMORY_OPTION,
) -> None:
    """Compare bidding strategies for one campaign on the same traffic: paired differences."""
    from rtb.compare import compare
    from rtb.scenario import load_scenario
    from rtb.strategy_spec import parse_strategy

    with input_errors():
        seed_list = _number_list(seeds, "--seeds", int, lambda x: x >= 0, "must be >= 0")
        if len(set(seed_list)) < 2:
            raise InputError.single("command line", "--seeds",
                                    "needs two seeds or more for a confidence interval")
        _check_budget_scale(budget_scale)
        _check_executor_options(workers, executor, scheduler, out_dir)
        parsed = [parse_strategy(text, f"--strategy {k}") for k, text in enumerate(strategies, 1)]
        spec = load_scenario(scenario)
        check_distinct({"--out-dir": out_dir}, _scenario_inputs(scenario, spec))
        n_runs = (len(parsed) + 1) * len(set(seed_list))
        _check_resources(spec, scenario, max_memory, quiet, runs=n_runs,
                         at_once=workers if executor == "local" else 1, local=executor == "local")
        summary = _run_saving_on_interrupt(
            lambda progress: compare(spec, campaign, parsed, seed_list, out_dir,
                                     budget_scale=budget_scale, workers=workers, executor=executor,
                                     scheduler=scheduler, progress=progress),
            out_dir, quiet, f"comparing strategies on {spec.name} ({n_runs} runs)")
    out_console.print(compare_table(summary))


@app.command()
def validate(scenario: Path = typer.Argument(..., help="scenario file (.toml or .json)")) -> None:
    """Check a scenario file; exit 0 when valid, else 2 with one line per problem. A valid
    one's expected size follows: requests, memory, wall time, the impression log's size."""
    from rtb.estimate import estimate, size_text
    from rtb.scenario import load_scenario

    with input_errors():
        spec = load_scenario(scenario)
    out_console.print(f"{scenario}: valid ({len(spec.campaigns)} campaigns, "
                      f"{len(spec.publishers)} publishers, {spec.dmp.users:,} users)",
                      markup=False, highlight=False)
    e = estimate(spec)
    out_console.print(f"expected: {e.summary()}; with --log, an impression log of up to"
                      f" {size_text(e.log_bytes)}", markup=False, highlight=False)


@app.command()
def schema() -> None:
    """Print the scenario file's JSON Schema, for editors (scenarios/scenario.schema.json)."""
    from rtb.scenario import json_schema_text

    sys.stdout.write(json_schema_text())


@app.command("replay")
def replay_command(
    log: Path = typer.Argument(..., help="bid log to replay"),
    fmt: str = typer.Option("ipinyou-theta", "--format",
                            help="ipinyou-theta (click price pctr) or ipinyou-log (make-ipinyou-data TSV)"),
    info: Path = typer.Option(..., "--info", help="campaign info JSON (imp/clk/cost_train)"),
    strategy: str = typer.Option(..., "--strategy", help="linear:base_cpm=B | mcpc | fixed:bid_cpm=B |"
                                 " random:max_cpm=B | ortb:c=C,lam=L, or a TOML inline table as in a"
                                 " scenario; linear's avg_ctr and mcpc's target_cpc default to the"
                                 " info file's (deprecated: lin:b0, const:bid, rand:max, lambda)"),
    episode: int = typer.Option(1000, "--episode", help="requests per episode, N"),
    budget_fraction: str = typer.Option(..., "--budget-fraction", help="c0, e.g. 1/32 or 0.03125"),
    out: Optional[Path] = typer.Option(None, "--out", help="write the result as JSON here"),
    seed: int = typer.Option(0, "--seed", help="root seed (random's uniforms)"),
    tune: Optional[str] = typer.Option(None, "--tune", help="parameter to grid-search: base_cpm"
                                       " (linear; deprecated: b0)"),
    validation: Optional[Path] = typer.Option(None, "--validation", help="log to tune on"),
    tune_grid: str = typer.Option("1:300:1", "--tune-grid", help="START:STOP:STEP, STOP included"),
    partial_episode: str = typer.Option("proportional", "--partial-episode",
                                        help="trailing short episode: proportional | drop | full"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="count and skip malformed lines"),
    pctr_column: str = typer.Option("pctr", "--pctr-column", help="ipinyou-log: pCTR column"),
    pctr: Optional[float] = typer.Option(None, "--pctr", help="ipinyou-log: one pCTR for all"),
) -> None:
    """Replay a bid log under the standard iPinYou protocol (docs/replay.md)."""
    from rtb import replay as rp  # numba kernels load only for this command
    from rtb.bidlog import read_bidlog
    from rtb.strategy_spec import number_text

    with input_errors():
        check_output_path(out, "--out")
        check_distinct({"--out": out}, {"the bid log": log, "--info": info,
                                        "--validation": validation})
        rp.check_episode(episode)  # before reading the logs
        spec = rp.strategy_for_replay(strategy, tune=tune)
        c0 = rp.parse_budget_fraction(budget_fraction)
        if (tune is None) != (validation is None):
            raise InputError.single("--validation", "", "--tune and --validation go together")
        grid = rp.parse_grid(tune_grid) if tune is not None else None
        campaign = rp.load_info(info)

        def read(path: Path):
            return read_bidlog(path, fmt, skip_bad=skip_bad, pctr_column=pctr_column, pctr=pctr)

        protocol = dict(episode=episode, budget_fraction=c0, seed=seed, partial=partial_episode)
        if tune is not None:
            valid = read(validation)
            _replay_report_skipped(validation, valid)
            spec, tuning = rp.tune(valid, campaign, spec, tune, grid, **protocol)
            out_console.print(f"tuned {tuning.parameter} = {number_text(tuning.chosen)} "
                              f"on {validation}: {tuning.clicks} clicks (grid of {tuning.grid.size})"
                              + ("; best at the grid's end, consider a wider --tune-grid"
                                 if tuning.at_edge else ""), markup=False, highlight=False)
        bidlog = read(log)
        _replay_report_skipped(log, bidlog)
        result = rp.replay(bidlog, campaign, spec, **protocol)
        if out is not None:
            result.write_json(out)

    table = Table(title=f"replay of {log.name}: {result.strategy}, N={episode}, c0={budget_fraction}",
                  caption="cost = sum of market prices / 1000 (fen for iPinYou)")
    for column in ("auctions", "impressions", "clicks", "cost", "win rate", "CPM", "eCPC"):
        table.add_column(column, justify="right")

    def number(x: float | None, scale: float = 1.0, unit: str = "") -> str:
        return "-" if x is None else f"{x * scale:,.2f}{unit}"  # "-": a zero denominator

    table.add_row(f"{result.auctions:,}", f"{result.impressions:,}", f"{result.clicks:,}",
                  number(result.cost), number(result.win_rate, 100, "%"), number(result.cpm),
                  number(result.ecpc))
    out_console.print(table)


def _replay_report_skipped(path: Path, bidlog) -> None:
    """Say on stderr how many malformed lines --skip-bad skipped, and the first."""
    if bidlog.skipped:
        err.print(f"{path}: skipped {bidlog.skipped} malformed lines (first: {bidlog.first_skipped})",
                  markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    """The `rtb` command (console script and `python -m rtb`). typer reports any
    KeyboardInterrupt as 130, wherever it struck (a SIGTERM during a command's imports
    comes before input_errors()); the exit code is 128 + the signal that interrupted."""
    try:
        app(prog_name="rtb")
    except SystemExit as exc:
        if exc.code == 128 + signal.SIGINT:
            raise SystemExit(_interrupted_exit_code()) from None
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
