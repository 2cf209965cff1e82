"""What every `rtb` command shares: the app, the consoles, input errors as exit 2,
interrupts as 128 + the signal, output checks before any work, the run options."""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import typer
from rich.console import Console

from rtb.errors import InputError, StrategyError, printable
from rtb.progress import LazyProgress

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
    except StrategyError as exc:
        err.print(printable(f"error: {exc}"), markup=False, highlight=False, soft_wrap=True)
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


