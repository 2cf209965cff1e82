"""Strategy comparisons: one campaign's bidding strategy swapped, the same traffic.

Every strategy runs the scenario once per seed, with only that campaign's strategy
changed. Random streams are keyed by name and draw counts never depend on decisions,
so a seed gives every strategy the same requests, users and outcomes' uniforms
(common random numbers): the per-seed difference between two strategies is the
strategy's effect plus less noise than two independent runs would carry. The
comparison reports, per strategy, the campaign's means over the seeds and, against
the baseline (the scenario's own strategy), the mean paired difference with a 95 %
confidence interval (Student's t over the seeds).

The runs are sweeps (rtb.sweep), one folder per strategy: written atomically as they
finish, kept on Ctrl-C, and redone only where missing.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Callable

import orjson
from pydantic import BaseModel

from rtb.atomic import write_atomic
from rtb.errors import InputError
from rtb.scenario import Scenario, parse_scenario
from rtb.stats import paired
from rtb.sweep import Runner, SweepInterrupted, plan, sweep_many

SUMMARY_FILE = "compare.json"
SUMMARY_VERSION = 1
BASELINE = "baseline"
# The campaign's report fields compared.
METRICS = ("spend", "impressions", "reach", "clicks", "conversions", "incremental_conversions",
           "revenue", "cpa", "romi", "incremental_romi")
def with_strategy(scenario: Scenario, campaign: str, strategy: BaseModel | dict | str) -> Scenario:
    """The scenario with one campaign's strategy replaced, validated as a whole. The
    strategy: a model of rtb.strategy_spec, a dict as in a scenario file, or a string in
    either form rtb.strategy_spec.parse_strategy reads."""
    data = scenario.model_dump()
    if isinstance(strategy, BaseModel):
        strategy = strategy.model_dump()
    data["campaigns"][_campaign_index(scenario, campaign)]["strategy"] = strategy
    return parse_scenario(data, "command line")


def _campaign_index(scenario: Scenario, campaign: str) -> int:
    for k, spec in enumerate(scenario.campaigns):
        if spec.id == campaign:
            return k
    known = ", ".join(c.id for c in scenario.campaigns)
    raise InputError.single("command line", "--campaign", f"no campaign {campaign!r}; the"
                            f" scenario has {known}")


def compare(scenario: Scenario, campaign: str, strategies: list[BaseModel | dict | str],
            seeds: list[int], out_dir: str | Path, *, budget_scale: float = 1.0, workers: int = 1,
            executor: str = "local", scheduler: str | None = None,
            progress: Callable[[float], None] | None = None) -> dict:
    """Run the baseline and every strategy on each seed; return (and save) the summary.

    Folder out_dir/baseline holds the scenario's own runs, out_dir/strategy-K those
    of strategies[K-1]. Raises InputError for an unknown campaign or a strategy the
    scenario refuses, rtb.sweep.FolderOfAnotherSweep if a folder holds runs made
    with another strategy list, and SweepInterrupted on Ctrl-C (every finished run
    is kept; the summary then covers the seeds all strategies have finished).
    """
    out_dir = Path(out_dir)
    own = scenario.campaigns[_campaign_index(scenario, campaign)].strategy.model_dump()
    variants = {BASELINE: with_strategy(scenario, campaign, own)}
    for k, strategy in enumerate(strategies, start=1):
        variants[f"strategy-{k}"] = with_strategy(scenario, campaign, strategy)
    runs = plan([budget_scale], seeds)
    out_dir.mkdir(exist_ok=True)
    try:
        with Runner(workers, executor, scheduler) as runner:
            sweep_many([(variant, runs, out_dir / name) for name, variant in variants.items()],
                       runner=runner, progress=progress)
    except SweepInterrupted:
        write_summary(variants, campaign, runs, out_dir)
        raise
    return write_summary(variants, campaign, runs, out_dir)


def write_summary(variants: dict[str, Scenario], campaign: str, runs: list, out_dir: Path) -> dict:
    """compare.json from the reports on disk, over the seeds every strategy has run."""
    figures: dict[str, dict[int, dict]] = {}
    for name in variants:
        figures[name] = {}
        for run in runs:
            path = out_dir / name / run.file_name
            if path.exists():
                report = orjson.loads(path.read_bytes())
                figures[name][run.seed] = next(c for c in report["campaigns"] if c["id"] == campaign)
    seeds = [run.seed for run in runs if all(run.seed in f for f in figures.values())]
    strategies = []
    for name, variant in variants.items():
        spec = next(c for c in variant.campaigns if c.id == campaign)
        strategies.append({
            "name": name, "strategy": spec.strategy.model_dump(), "folder": name,
            "means": {m: _mean([figures[name][s][m] for s in seeds]) for m in METRICS}})
    differences = [
        {"strategy": name, "against": BASELINE,
         **{m: paired_difference([figures[name][s][m] for s in seeds],
                                 [figures[BASELINE][s][m] for s in seeds]) for m in METRICS}}
        for name in variants if name != BASELINE]
    summary = {
        "summary_version": SUMMARY_VERSION,
        "scenario": next(iter(variants.values())).name,
        "currency": next(iter(variants.values())).currency,
        "campaign": campaign,
        "budget_scale": runs[0].budget_scale,
        "seeds": seeds,
        "missing_seeds": [run.seed for run in runs if run.seed not in seeds],
        "strategies": strategies,
        "differences": differences,
    }
    write_atomic(out_dir / SUMMARY_FILE, orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    return summary


def paired_difference(values: list, baseline: list) -> dict:
    """Mean of the per-seed differences values - baseline, and its 95 % confidence
    interval (rtb.stats; none with fewer than two pairs), over the seeds where both are
    defined (a ROMI or CPA is not without spend or conversions)."""
    pairs = sum(v is not None and b is not None for v, b in zip(values, baseline))
    d = paired(values, baseline)
    ci = None if d["low"] is None else [d["low"], d["high"]]
    return {"mean": d["mean"], "ci95": ci, "pairs": pairs}


def _mean(values: list) -> float | None:
    defined = [v for v in values if v is not None]
    return round(statistics.fmean(defined), 6) if defined else None
