"""What-if plans: named variants of a scenario against the current one, on the same traffic.

Every variant (rtb.changes) runs on every seed. Random streams are keyed by name and
draw counts never depend on decisions, so on a seed every variant sees the same
requests, users and outcomes' uniforms (common random numbers): the per-seed
difference between a variant and the current scenario is the change's effect with
little luck in it. The plan reports, per variant, campaign and in total, each figure's
mean over the seeds with its 95 % interval and, for a variant, the paired difference
from current with its interval. A ROMI or CPA resting on fewer than MIN_EVENTS
conversions per run is flagged `too_few`: such a figure swings on a handful of sales.

The next dollar (marginal): each campaign in turn gets `step` more budget (+20 % by
default) and the whole plan's change is measured against current, per extra unit of
budget. Whole-plan changes, not the campaign's own: more budget for retargeting also
takes last-touch credit and auctions from its siblings, and only the total says what
the extra money bought.

The runs are sweeps (rtb.sweep), one folder per variant: written atomically as they
finish, kept on Ctrl-C, redone only where missing, all in one batch of workers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import orjson

from rtb.atomic import write_atomic
from rtb.changes import CURRENT, Change, Variant, apply_changes
from rtb.scenario import Scenario
from rtb.stats import CONFIDENCE, interval, paired
from rtb.sweep import Runner, SweepInterrupted, SweepRun, plan as sweep_plan, sweep_many

PLAN_FILE = "plan.json"
PLAN_VERSION = 1
MIN_EVENTS = 10  # conversions per run under which a ROMI or CPA is flagged too_few
FIGURES = ("budget", "spend", "impressions", "reach", "clicks", "conversions",
           "incremental_conversions", "revenue", "incremental_revenue", "romi",
           "incremental_romi", "cpa", "frequency", "reach_people", "frequency_people",
           "cap_leakage")
# Per advertiser, de-duplicated over its campaigns (the report's advertisers[]): reach
# and frequency in ids (what an ad platform shows) and in people (the truth).
ADVERTISER_FIGURES = ("impressions", "reach", "reach_people", "frequency", "frequency_people",
                      "cap_leakage")
RESTS_ON = {"romi": "conversions", "cpa": "conversions",
            "incremental_romi": "incremental_conversions"}
# Per publisher (the supply side of a what-if: a floor, a deal, selling anonymously).
PUBLISHER_FIGURES = ("requests", "impressions", "fill_rate", "revenue", "avg_price_cpm",
                     "anonymous")
MARGINAL_FOLDER = "marginal"
PER = 100.0  # marginal conversions are given per this much extra budget


def variant_scenarios(scenario: Scenario, variants: list[Variant]) -> dict[str, Scenario]:
    """current, then each variant applied to it (InputError names a bad change and
    where the variant was given)."""
    scenarios = {CURRENT: scenario}
    for variant in variants:
        scenarios[variant.name] = apply_changes(scenario, variant.changes, variant.source)
    return scenarios


def marginal_scenarios(scenario: Scenario, step: float) -> list[tuple[str, float, Scenario]]:
    """Per campaign: its id, the extra budget and the scenario with that campaign's
    budget (and daily budget) `step` higher."""
    out = []
    for c in scenario.campaigns:
        more = apply_changes(scenario, [Change("budget", f"{c.id}=+{step * 100:.10g}%")])
        extra = next(m.budget for m in more.campaigns if m.id == c.id) - c.budget
        out.append((c.id, extra, more))
    return out


def _marginal_folder(k: int, campaign: str) -> str:
    return f"{MARGINAL_FOLDER}/{k + 1}-{re.sub(r'[^A-Za-z0-9_-]', '_', campaign)}"


def run_plan(scenario: Scenario, variants: list[Variant], seeds: list[int], out_dir: str | Path,
             *, marginal_step: float | None = None,
             workers: int = 1, executor: str = "local", scheduler: str | None = None,
             progress: Callable[[float], None] | None = None) -> dict:
    """Run current, every variant and (with marginal_step) every campaign's extra budget
    on each seed; return (and save as out_dir/plan.json) the summary.

    Raises InputError for a bad change, rtb.sweep.FolderOfAnotherSweep if a folder holds
    runs made from something else, SweepInterrupted on Ctrl-C (finished runs are kept;
    the summary then covers the seeds every variant has finished)."""
    out_dir = Path(out_dir)
    scenarios = variant_scenarios(scenario, variants)
    marginal = marginal_scenarios(scenario, marginal_step) if marginal_step else []
    runs = sweep_plan([1.0], seeds)
    folders = {name: out_dir / name for name in scenarios}
    folders.update({("marginal", cid): out_dir / _marginal_folder(k, cid)
                    for k, (cid, _, _) in enumerate(marginal)})
    jobs = [(s, runs, folders[name]) for name, s in scenarios.items()]
    jobs += [(s, runs, folders[("marginal", cid)]) for cid, _, s in marginal]
    out_dir.mkdir(exist_ok=True)
    if marginal:
        (out_dir / MARGINAL_FOLDER).mkdir(exist_ok=True)

    def summary() -> dict:
        return write_plan(scenario, variants, marginal, marginal_step, runs, folders, out_dir)

    try:
        with Runner(workers, executor, scheduler) as runner:
            sweep_many(jobs, runner=runner, progress=progress)
    except SweepInterrupted:
        summary()
        raise
    return summary()


def read_reports(folder: Path, runs: list[SweepRun]) -> dict[int, dict]:
    """The run reports on disk in a sweep folder, by seed."""
    reports = {}
    for run in runs:
        path = folder / run.file_name
        if path.exists():
            reports[run.seed] = orjson.loads(path.read_bytes())
    return reports


def write_plan(scenario: Scenario, variants: list[Variant], marginal: list, step: float | None,
               runs: list[SweepRun], folders: dict, out_dir: Path) -> dict:
    """plan.json from the reports on disk, over the seeds every run of the plan has."""
    reports = {key: read_reports(folder, runs) for key, folder in folders.items()}
    seeds = [run.seed for run in runs if all(run.seed in r for r in reports.values())]
    current = [reports[CURRENT][s] for s in seeds]
    rows = []
    for name in [CURRENT] + [v.name for v in variants]:
        changes = [] if name == CURRENT else \
            [str(c) for c in next(v for v in variants if v.name == name).changes]
        rows.append({"name": name, "changes": changes, "folder": name,
                     **variant_figures([reports[name][s] for s in seeds],
                                       None if name == CURRENT else current)})
    margins = {a.id: a.margin for a in scenario.advertisers}
    plan = {
        "plan_version": PLAN_VERSION,
        "scenario": scenario.name,
        "currency": scenario.currency,
        "seeds": seeds,
        "missing_seeds": [run.seed for run in runs if run.seed not in seeds],
        "confidence": CONFIDENCE,
        "min_events": MIN_EVENTS,
        "variants": rows,
        "marginal": None if not marginal else {
            "step": step,
            "per": PER,
            "campaigns": (ranked := rank_marginal([
                marginal_figures(cid, extra, current,
                                 [reports[("marginal", cid)][s] for s in seeds], margins)
                for cid, extra, _ in marginal])),
            "advice": marginal_advice(ranked, scenario.currency)},
    }
    write_atomic(out_dir / PLAN_FILE, orjson.dumps(plan, option=orjson.OPT_INDENT_2) + b"\n")
    return plan


def variant_figures(reports: list[dict], current: list[dict] | None) -> dict:
    """A variant's campaigns, totals, advertisers and publishers over its seeds' reports:
    each figure's interval, with `vs_current` (the paired difference) when current's
    reports are given. A figure none of the reports has is left out (the totals'
    cap_leakage); one that only some lack, made before it existed, counts as undefined
    in those."""
    def figures(rows: list[dict], baseline: list[dict] | None, names=FIGURES) -> dict:
        out = {}
        for name in names:
            if not any(name in r for r in rows):
                continue  # not in these reports (the totals' cap_leakage; older reports)
            figure = interval([r.get(name) for r in rows])
            if baseline is not None:
                figure["vs_current"] = paired([r.get(name) for r in rows],
                                              [b.get(name) for b in baseline])
            if name in RESTS_ON:
                events = interval([r[RESTS_ON[name]] for r in rows])["mean"]
                if events is not None and events < MIN_EVENTS:
                    figure["too_few"] = True
            out[name] = figure
        return out

    if not reports:
        return {"campaigns": [], "totals": {}, "advertisers": [], "publishers": []}
    campaigns = []
    for k, first in enumerate(reports[0]["campaigns"]):
        rows = [r["campaigns"][k] for r in reports]
        baseline = None if current is None else [r["campaigns"][k] for r in current]
        campaigns.append({"id": first["id"], "advertiser": first["advertiser"],
                          **figures(rows, baseline)})
    totals = figures([r["totals"] for r in reports],
                     None if current is None else [r["totals"] for r in current])
    advertisers = []
    for k, first in enumerate(reports[0].get("advertisers") or []):
        rows = [r["advertisers"][k] for r in reports]
        baseline = None if current is None else [r["advertisers"][k] for r in current]
        advertisers.append({"id": first["id"], **figures(rows, baseline, ADVERTISER_FIGURES)})
    publishers = []
    for k, first in enumerate(reports[0]["publishers"]):
        rows = [r["publishers"][k] for r in reports]
        baseline = None if current is None else [r["publishers"][k] for r in current]
        publishers.append({"id": first["id"], **figures(rows, baseline, PUBLISHER_FIGURES)})
    return {"campaigns": campaigns, "totals": totals, "advertisers": advertisers,
            "publishers": publishers}


def gross_profit(report: dict, margins: dict[str, float], incremental: bool = False) -> float:
    """revenue x margin - spend over the whole report (advertisers differ in margin)."""
    key = "incremental_revenue" if incremental else "revenue"
    return sum(c[key] * margins[c["advertiser"]] - c["spend"] for c in report["campaigns"])


def marginal_figures(campaign: str, extra: float, current: list[dict], more: list[dict],
                     margins: dict[str, float]) -> dict:
    """What `extra` budget for one campaign changes in the whole plan, per seed paired:
    the spend and conversions it adds, conversions per PER of extra budget, and its
    ROMI: (extra revenue x margin - extra spend) / extra budget, so that budget a
    campaign cannot spend returns nothing rather than counting as lost."""
    def change(key: str, scale: float = 1.0) -> dict:
        return interval([(m["totals"][key] - c["totals"][key]) * scale for m, c in zip(more, current)])

    def romi(incremental: bool) -> dict:
        return interval([(gross_profit(m, margins, incremental) - gross_profit(c, margins, incremental))
                         / extra for m, c in zip(more, current)])

    return {"id": campaign, "extra_budget": round(extra, 6),
            "spend": change("spend"),
            "spent_share": change("spend", 1.0 / extra),
            "conversions": change("conversions"),
            "incremental_conversions": change("incremental_conversions"),
            "conversions_per_100": change("conversions", PER / extra),
            "incremental_conversions_per_100": change("incremental_conversions", PER / extra),
            "romi": romi(False),
            "incremental_romi": romi(True)}


SPENDS = 0.5  # a campaign that spends under half its extra budget cannot use more


def marginal_advice(ranked: list[dict], currency: str) -> str:
    """One sentence a marketer can act on: where the next money goes, or that no
    campaign turns it into profit, and which campaigns cannot spend more at all."""
    def spends(row: dict) -> bool:
        share = row["spent_share"]["mean"]
        return share is not None and share >= SPENDS

    usable = [row for row in ranked if spends(row)]
    stuck = [row["id"] for row in ranked if not spends(row)]
    if not usable:
        advice = "No campaign can spend more budget: each is held back by its audience, caps or flight."
    else:
        best = usable[0]
        romi = best["incremental_romi"]
        sure = romi["low"] is not None and romi["low"] > 0
        span = "" if romi["low"] is None else f" ({romi['low']:+.0%} to {romi['high']:+.0%})"
        if romi["mean"] is not None and romi["mean"] > 0:
            advice = (f"Put the next {PER:,.0f} {currency} into {best['id']}: it returns"
                      f" {romi['mean']:+.0%}{span} of it in profit the ads caused"
                      + ("." if sure else ", but the interval includes a loss: run more seeds"
                         " before you act."))
        else:
            advice = (f"No campaign turns more budget into profit the ads caused: the least"
                      f" loss is {best['id']}'s, {romi['mean']:+.0%}{span} of the extra budget.")
    if stuck:
        advice += (f" Cannot spend more (under {SPENDS:.0%} of the extra budget used):"
                   f" {', '.join(stuck)}.")
    return advice


def rank_marginal(rows: list[dict]) -> list[dict]:
    """Best first by the incremental ROMI of the extra budget (what the ads cause),
    the campaigns that cannot spend it last; ties keep the scenario's order."""
    def key(row: dict) -> tuple[bool, float]:
        share, mean = row["spent_share"]["mean"], row["incremental_romi"]["mean"]
        stuck = share is None or share < SPENDS
        return stuck, -mean if mean is not None else float("inf")

    ranked = sorted(rows, key=key)
    for rank, row in enumerate(ranked, start=1):
        row["rank"] = rank
    return ranked
