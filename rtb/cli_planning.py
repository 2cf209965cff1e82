"""The planning commands: budget sweeps, strategy comparisons, what-if plans and
budget optimisation. Each runs many simulations through rtb.sweep's machinery and
prints a table; the library does the work (rtb.sweep, rtb.compare, rtb.plan,
rtb.optimize)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rtb.cli_base import (EXECUTOR_OPTION, MAX_BUDGET_SCALE, MAX_MEMORY_OPTION, QUIET_OPTION,
                          SCHEDULER_OPTION, WORKERS_OPTION, _check_budget_scale,
                          _check_executor_options, _check_plot_option, _check_resources,
                          _number_list, _run_saving_on_interrupt, _scenario_inputs, app,
                          check_distinct, input_errors, out_console)
from rtb.errors import InputError
from rtb.tables import compare_table, sweep_table


HTML_OPTION = typer.Option(None, "--html", help="also write one self-contained page with the"
                           " tables and response curves, for a browser (the 'plot' extra)")


def _check_html(html: Path | None) -> None:
    from rtb.cli_base import check_output_path

    if html is not None:
        from rtb.html import check_html_option

        check_html_option(html)
        check_output_path(html, "--html")


def _write_html(kind: str, data: dict, html: Path | None) -> None:
    if html is not None:
        from rtb.html import write_page

        write_page(kind, data, html)


def _seed_list(seeds: str) -> list[int]:
    """--seeds as two or more distinct root seeds (an interval needs two)."""
    seed_list = list(dict.fromkeys(_number_list(seeds, "--seeds", int, lambda x: x >= 0,
                                                "must be >= 0")))
    if len(seed_list) < 2:
        raise InputError.single("command line", "--seeds",
                                "needs two seeds or more for a confidence interval")
    return seed_list


def _step(text: str) -> float:
    """--step as a fraction: 20% or 0.2; more than 0, at most 100 %."""
    value = text.strip()
    try:
        step = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise InputError.single("command line", "--step", f"{text!r} is not a share like 20%") from None
    if not 0 < step <= 1:
        raise InputError.single("command line", "--step", f"{text} must be more than 0 % and at most 100 %")
    return step


@app.command("sweep")
def sweep_command(
    scenario: Path = typer.Argument(..., help="scenario file (.toml or .json)"),
    out_dir: Path = typer.Option(..., "--out-dir", help="folder for each run's report and sweep.json"),
    budget_scales: str = typer.Option("1", "--budget-scales", help="comma-separated, e.g. 0.5,1,2"),
    seeds: Optional[str] = typer.Option(None, "--seeds",
                                        help="comma-separated root seeds (default: the scenario's)"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="also draw the response curves:"
                                        " a .png, .svg or .pdf file (the 'plot' extra)"),
    html: Optional[Path] = HTML_OPTION,
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
        _check_html(html)
        spec = load_scenario(scenario)
        check_distinct({"--out-dir": out_dir, "--plot": plot, "--html": html,
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
    _write_html("sweep", summary, html)
    out_console.print(sweep_table(summary, out_console.width))


def _resolve_classes(parsed: list, scenario: Path) -> list:
    """--strategy python:class=...: the class looked for in the scenario file's folder
    first (as in the scenario), imported and built once; InputError names the option."""
    from rtb.scenario import resolve_python_strategy

    problems, resolved = [], []
    for k, spec in enumerate(parsed, 1):
        if spec.kind == "python":
            spec, found = resolve_python_strategy(spec, scenario.resolve().parent, f"--strategy {k}")
            problems += found
        resolved.append(spec)
    if problems:
        raise InputError("command line", problems)
    return resolved


@app.command("compare")
def compare_command(
    scenario: Path = typer.Argument(..., help="scenario file (.toml or .json)"),
    campaign: str = typer.Option(..., "--campaign", help="the campaign whose strategy changes"),
    strategies: list[str] = typer.Option(
        ..., "--strategy", help="""a strategy as in a scenario file, e.g. '{ kind = "value","""
        """ shading = 0.7 }', or in the short form KIND:NAME=VALUE,..., e.g. value:shading=0.7;"""
        " your own class: python:class=my_bidders:Shaded,shade=0.8 (looked for in the"
        " scenario's folder first); repeat for more"),
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
        seed_list = _seed_list(seeds)
        _check_budget_scale(budget_scale)
        _check_executor_options(workers, executor, scheduler, out_dir)
        parsed = [parse_strategy(text, f"--strategy {k}") for k, text in enumerate(strategies, 1)]
        parsed = _resolve_classes(parsed, scenario)
        spec = load_scenario(scenario)
        check_distinct({"--out-dir": out_dir}, _scenario_inputs(scenario, spec))
        n_runs = (len(parsed) + 1) * len(seed_list)
        _check_resources(spec, scenario, max_memory, quiet, runs=n_runs,
                         at_once=workers if executor == "local" else 1, local=executor == "local")
        summary = _run_saving_on_interrupt(
            lambda progress: compare(spec, campaign, parsed, seed_list, out_dir,
                                     budget_scale=budget_scale, workers=workers, executor=executor,
                                     scheduler=scheduler, progress=progress),
            out_dir, quiet, f"comparing strategies on {spec.name} ({n_runs} runs)")
    out_console.print(compare_table(summary, out_console.width))




@app.command("plan")
def plan_command(
    scenario: Path = typer.Argument(..., help="scenario file (.toml or .json)"),
    out_dir: Path = typer.Option(..., "--out-dir", help="folder for the runs and plan.json"),
    budget: list[str] = typer.Option([], "--budget", help="CAMPAIGN=x1.3, =+20%, =-20%, =+500 or"
                                     " =5000: one campaign's total budget (its daily budget in"
                                     " proportion); a part of an id that only one campaign has"
                                     " will do; repeat for more"),
    daily_budget: list[str] = typer.Option([], "--daily-budget", help="CAMPAIGN=...: the daily"
                                           " budget alone, in the same forms"),
    move: list[str] = typer.Option([], "--move", help="FROM:TO=30% or FROM:TO=500: budget moved"
                                   " from one campaign to another, the total unchanged"),
    set_: list[str] = typer.Option([], "--set", help="PATH=VALUE: any scenario field by its"
                                   " dotted path, e.g. dmp.consent_rate=0.6,"
                                   " campaigns.retargeting.frequency_cap.impressions=5"),
    plan_file: Optional[Path] = typer.Option(None, "--plan", help="a TOML file of named"
                                             " variants ([[variants]] name, budget, move, set)"),
    seeds: str = typer.Option("1,2,3,4,5", "--seeds", help="comma-separated root seeds, two or more"),
    marginal: bool = typer.Option(False, "--marginal", help="also rank the campaigns by what"
                                  " --step more budget for each one does (the next dollar)"),
    step: str = typer.Option("20%", "--step", help="--marginal: the extra budget per campaign"),
    html: Optional[Path] = HTML_OPTION,
    workers: int = WORKERS_OPTION,
    executor: str = EXECUTOR_OPTION,
    scheduler: Optional[str] = SCHEDULER_OPTION,
    quiet: bool = QUIET_OPTION,
    max_memory: Optional[str] = MAX_MEMORY_OPTION,
) -> None:
    """What if? Named variants of a scenario against the current one, on the same traffic:
    means over seeds with intervals, and each change as a paired difference."""
    from rtb.changes import load_plan, variant_from_options
    from rtb.plan import PLAN_FILE, run_plan
    from rtb.scenario import load_scenario
    from rtb.plan_tables import plan_table

    with input_errors():
        seed_list = _seed_list(seeds)
        marginal_step = _step(step) if marginal else None
        _check_executor_options(workers, executor, scheduler, out_dir)
        _check_html(html)
        variants = []
        if budget or daily_budget or move or set_:
            variants.append(variant_from_options("scenario", budget, daily_budget, move, set_))
        if plan_file is not None:
            from_file = load_plan(plan_file)
            if variants and any(v.name == "scenario" for v in from_file):
                raise InputError.single(str(plan_file), "variants", "'scenario' names the command"
                                        " line's changes; give the plan file's variant another name")
            variants += from_file
        spec = load_scenario(scenario)
        check_distinct({"--out-dir": out_dir, "--html": html,
                        "--out-dir's plan.json": out_dir / PLAN_FILE},
                       {**_scenario_inputs(scenario, spec), "the plan file": plan_file})
        n_runs = (1 + len(variants) + (len(spec.campaigns) if marginal else 0)) * len(seed_list)
        _check_resources(spec, scenario, max_memory, quiet, runs=n_runs,
                         at_once=workers if executor == "local" else 1, local=executor == "local")
        summary = _run_saving_on_interrupt(
            lambda progress: run_plan(spec, variants, seed_list, out_dir,
                                      marginal_step=marginal_step, workers=workers,
                                      executor=executor, scheduler=scheduler, progress=progress),
            out_dir, quiet, f"planning {spec.name} ({n_runs} runs)")
        _write_html("plan", summary, html)
    out_console.print(plan_table(summary, out_console.width))


def _share(text: str, option: str) -> float:
    """A ROMI-like option as a fraction: 20% or 0.2 (negative allowed: -10%)."""
    value = text.strip()
    try:
        return float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise InputError.single("command line", option, f"{text!r} is not a share like 20%") from None


@app.command("optimize")
def optimize_command(
    scenario: Path = typer.Argument(..., help="scenario file (.toml or .json)"),
    out_dir: Path = typer.Option(..., "--out-dir", help="folder for the runs and optimize.json"),
    total_budget: Optional[float] = typer.Option(None, "--total-budget", help="the total to split"
                                                 " across the campaigns (default: the scenario's"
                                                 " total); with --target-conversions, the most"
                                                 " that may be spent"),
    target_conversions: Optional[float] = typer.Option(None, "--target-conversions", help="instead:"
                                                       " the smallest total budget that reaches"
                                                       " this many conversions"),
    min_romi: Optional[str] = typer.Option(None, "--min-romi", help="with --target-conversions:"
                                           " a total ROMI of at least this, e.g. 20%"),
    objective: str = typer.Option("profit", "--objective", help="profit (revenue x margin -"
                                  " spend), conversions or revenue"),
    incremental: bool = typer.Option(False, "--incremental", help="count only the conversions the"
                                     " ads caused (what a marketer should act on)"),
    bounds: list[str] = typer.Option([], "--bounds", help="CAMPAIGN=MIN:MAX, a side may be empty"
                                     " (CAMPAIGN=100:); repeat for more"),
    seeds: str = typer.Option("1,2,3", "--seeds", help="the search's seeds"),
    confirm_seeds: str = typer.Option("101,102,103,104,105", "--confirm-seeds",
                                      help="fresh seeds the answer is confirmed on"),
    out: Optional[Path] = typer.Option(None, "--out", help="also write the result (JSON) here"),
    html: Optional[Path] = HTML_OPTION,
    workers: int = WORKERS_OPTION,
    executor: str = EXECUTOR_OPTION,
    scheduler: Optional[str] = SCHEDULER_OPTION,
    quiet: bool = QUIET_OPTION,
    max_memory: Optional[str] = MAX_MEMORY_OPTION,
) -> None:
    """The best split of a total budget across the campaigns, or the smallest budget for a
    goal, found by simulation and confirmed on fresh seeds."""
    from rtb.atomic import write_atomic
    from rtb.cli_base import check_output_path
    from rtb.optimize import (OBJECTIVES, OPTIMIZE_FILE, budget_for_goal, optimize_split,
                              parse_bounds, to_json)
    from rtb.scenario import load_scenario
    from rtb.sweep import Runner
    from rtb.plan_tables import optimize_table

    with input_errors():
        if min_romi is not None and target_conversions is None:
            raise InputError.single("command line", "--min-romi", "goes with --target-conversions")
        if objective not in OBJECTIVES:
            raise InputError.single("command line", "--objective",
                                    f"{objective!r} is not one of {', '.join(OBJECTIVES)}")
        search = _seed_list(seeds)
        confirm = list(dict.fromkeys(_number_list(confirm_seeds, "--confirm-seeds", int,
                                                  lambda x: x >= 0, "must be >= 0")))
        parsed_bounds = parse_bounds(bounds)
        romi_floor = None if min_romi is None else _share(min_romi, "--min-romi")
        _check_executor_options(workers, executor, scheduler, out_dir)
        _check_html(html)
        check_output_path(out, "--out")
        spec = load_scenario(scenario)
        check_distinct({"--out-dir": out_dir, "--out": out, "--html": html,
                        "--out-dir's optimize.json": out_dir / OPTIMIZE_FILE},
                       _scenario_inputs(scenario, spec))
        _check_resources(spec, scenario, max_memory, quiet, runs=100,
                         at_once=workers if executor == "local" else 1, local=executor == "local")
        out_dir.mkdir(exist_ok=True)

        def work(progress) -> dict:
            common = dict(bounds=parsed_bounds, search_seeds=search, confirm_seeds=confirm,
                          out_dir=out_dir, progress=progress, incremental=incremental)
            with Runner(workers, executor, scheduler) as runner:
                if target_conversions is not None:
                    return budget_for_goal(spec, target_conversions, min_romi=romi_floor,
                                           max_total_budget=total_budget, runner=runner, **common)
                total = total_budget if total_budget is not None else \
                    sum(c.budget for c in spec.campaigns)
                return optimize_split(spec, total, objective=objective, runner=runner, **common)

        what = "the budget for a goal" if target_conversions is not None else "the best split"
        result = _run_saving_on_interrupt(work, out_dir, quiet, f"finding {what} for {spec.name}")
        if out is not None:
            write_atomic(out, to_json(result))
        _write_html("optimize", result, html)
    out_console.print(optimize_table(result, out_console.width))
