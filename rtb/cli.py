"""The `rtb` command: thin wrappers that parse options, call the library and render.

The commands live here (a run, validation, the schema, replay) and in rtb.cli_planning
(sweep, compare, plan, optimize); what they share is rtb.cli_base."""

from __future__ import annotations

import importlib.util
import signal
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from rtb.cli_base import (MAX_BUDGET_SCALE, MAX_MEMORY_OPTION, _check_budget_scale,  # noqa: F401
                          _check_resources, _interrupted_exit_code, _scenario_inputs, app,
                          check_distinct, check_output_path, err, input_errors, out_console)
from rtb.errors import InputError
from rtb.progress import LazyProgress
from rtb.tables import campaign_table, sweep_table  # noqa: F401  (sweep_table: tests import it here)

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
    openrtb_log: Optional[Path] = typer.Option(
        None, help="write the exchange's OpenRTB messages for a sample of requests here (JSONL)"),
    openrtb_sample: float = typer.Option(0.01, help="share of requests --openrtb-log keeps"),
    allow_unreachable: bool = typer.Option(
        False, "--allow-unreachable", help="run even if an external bidder does not answer"
                                           " (its requests count as faults)"),
    threads: Optional[int] = typer.Option(
        None, min=1, help="threads the run may use (default: the cores; 1 = one core);"
                          " the report is the same whatever the number"),
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
        check_output_path(openrtb_log, "--openrtb-log")
        if not 0.0 < openrtb_sample <= 1.0:
            raise InputError.single("command line", "--openrtb-sample",
                                    f"must be a share in (0, 1], got {openrtb_sample}")
        spec = load_scenario(scenario)
        check_distinct({"--out": out, "--log": log, "--csv": csv_path,
                        "--openrtb-log": openrtb_log}, _scenario_inputs(scenario, spec))
        _check_resources(spec, scenario, max_memory, quiet)
        if any(d.external for d in spec.dsps) and not allow_unreachable:
            from rtb.external import check_reachable
            from rtb.openrtb_wire import build_wire

            check_reachable(build_wire(spec), str(scenario))
        progress = LazyProgress(not quiet, f"simulating {spec.name}")
        try:
            report = simulate(spec, seed, budget_scale=budget_scale, log_path=log, progress=progress,
                              openrtb_log=openrtb_log, openrtb_sample=openrtb_sample,
                              allow_unreachable=allow_unreachable, threads=threads)
        finally:
            progress.close()
        if out is not None:
            report.write(out)
        if csv_path is not None:
            report.write_csv(csv_path)
    out_console.print(campaign_table(report.to_dict(), out_console.width))


# The planning commands come after `run` in --help: registering them is importing them.
import rtb.cli_planning  # noqa: E402,F401,I001
import rtb.cli_bidder  # noqa: E402,F401


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
                                 " info file's (deprecated: lin:b0, const:bid, rand:max, lambda);"
                                 " your own class: python:class=my_bidders:Shaded,NAME=VALUE (looked"
                                 " for in the current folder, then on the Python path)"),
    chunk: Optional[int] = typer.Option(None, "--chunk", help="requests per bid() call for a"
                                        " strategy that learns, observe() after each (default:"
                                        " 1000, at most the episode; stateless ones bid once)"),
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
        rp.check_chunk(chunk)
        spec = rp.strategy_for_replay(strategy, tune=tune)
        c0 = rp.parse_budget_fraction(budget_fraction)
        if (tune is None) != (validation is None):
            raise InputError.single("--validation", "", "--tune and --validation go together")
        grid = rp.parse_grid(tune_grid) if tune is not None else None
        campaign = rp.load_info(info)

        def read(path: Path):
            return read_bidlog(path, fmt, skip_bad=skip_bad, pctr_column=pctr_column, pctr=pctr)

        protocol = dict(episode=episode, budget_fraction=c0, seed=seed, partial=partial_episode,
                        chunk=chunk)
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

    fed = "" if result.chunk is None else f", chunks of {result.chunk}"
    table = Table(title=f"replay of {log.name}: {result.strategy}, N={episode}, c0={budget_fraction}{fed}",
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
