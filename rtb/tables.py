"""The tables `rtb` prints for a run's campaigns, a strategy comparison and a budget sweep;
the plan, marginal and optimisation tables are in rtb.plan_tables (also importable from
here), the width-fitting layout in rtb.table_layout.

Built from the report and summary dicts only, so what a table shows is what the JSON
files hold. Every table fits the width it is given without cutting a campaign id or a
number: it takes the most precise number formats that fit, then moves groups of
columns to a further block of rows (or leaves out the optional ones, which the JSON
holds); the sweep and plan tables print one block per campaign. Money is in the
scenario's currency, which every title names.
"""

from __future__ import annotations

from rich.console import RenderableType

from rtb.plan_tables import marginal_table, optimize_table, plan_table
from rtb.table_format import (FORMATS, ROMI_NOTE, TOO_FEW, Formats, change_text, currency_of, format_number,
                              format_or_dash, plural, safe_text)
from rtb.table_layout import WIDE_RUN_TABLE, Row, Sheet, fitted_table, headers_of, is_narrow

__all__ = ["TOO_FEW", "WIDE_RUN_TABLE", "campaign_table", "compare_table", "marginal_table",
           "optimize_table", "plan_table", "sweep_table"]

SPENT = 0.995  # spend / budget from which a campaign's budget counts as spent


# ---- rtb run --------------------------------------------------------------------------

def _run_title(scenario: dict) -> str:
    scale = scenario.get("budget_scale", 1)
    what = "as written" if scale == 1 else f"budgets x{scale:g}"
    return f"{safe_text(scenario['name'])}: {what}, seed {scenario['seed']}; money in {currency_of(scenario)}"


def _used(m: dict) -> str:
    """The share of the budget spent; "all" from SPENT."""
    if not m.get("budget"):
        return "-"
    share = m["spend"] / m["budget"]
    return "all" if share >= SPENT else f"{share:.0%}"


def campaign_table(report: dict, width: int | None = None) -> RenderableType:
    """Per campaign and in total: the budget, what was spent and bought, what it returned.

    width: the terminal's columns (None: unlimited). Below WIDE_RUN_TABLE the narrow
    style; the money and the returns come first, what was bought (impressions, reach,
    frequency, clicks) beside them or in a second block, and prices only if they fit.
    Every figure is in the report (--out) and the campaign CSV (--csv).
    """
    scenario = report["scenario"]
    narrow = is_narrow(width)

    def build(fmt: Formats) -> Sheet:
        groups = [
            [("budget", "budget", fmt.money), ("spend", "spend", fmt.money), ("used", None, _used)],
            [("conv", "conversions", ","), ("CPA", "cpa", fmt.money)],
            [("ROMI", "romi", fmt.ratio), ("incr.\nROMI" if narrow else "incr. ROMI",
                                           "incremental_romi", fmt.ratio)],
            [("impr." if narrow else "impressions", "impressions", ","), ("reach", "reach", ","),
             ("freq", "frequency", ".1f" if narrow else ".2f"), ("clicks", "clicks", ","),
             ("CTR", "ctr", ".2%")],
            [("eCPM", "ecpm", ".2f"), ("CPC", "cpc", ".2f"), ("revenue", "revenue", fmt.money)],
        ]

        def cells(label: str, m: dict) -> list[str]:
            return [label] + [spec(m) if key is None else format_or_dash(m[key], spec)
                              for group in groups for _, key, spec in group]

        rows = [Row(cells(safe_text(c["id"]), c)) for c in report["campaigns"]]
        if rows:
            rows[-1] = Row(rows[-1].cells, section=True)
        rows.append(Row(cells("total", report["totals"]), style="bold"))
        return Sheet(keys=["campaign"], groups=headers_of(groups),
                     blocks=[(None, rows)], optional=frozenset({4}))

    caption = (f"used: the share of the budget spent; all = spent to within"
               f" {1 - SPENT:.1%}. {ROMI_NOTE}")
    caption += "".join(f" {bidder_line(b)}" for b in report.get("bidders", ()))
    return fitted_table(build, width, _run_title(scenario), caption, FORMATS,
                        more="More figures: --out, --csv.")


def bidder_line(bidder: dict) -> str:
    """One sentence on an external OpenRTB bidder: what it was sent and what it lost."""
    faults = {name: n for name, n in bidder["faults"].items() if n}
    dropped = sum(faults.values())
    why = ", ".join(f"{n:,} {name.replace('_', ' ')}" for name, n in faults.items())
    return (f"{safe_text(bidder['dsp'])} (OpenRTB bidder): {bidder['requests']:,} requests,"
            f" {bidder['bids']:,} bids taken, {bidder['no_bids']:,} no-bids"
            + (f", {dropped:,} dropped ({why})." if dropped else ", nothing dropped."))


# ---- rtb compare ----------------------------------------------------------------------

def compare_table(summary: dict, width: int | None = None) -> RenderableType:
    """Per strategy: the campaign's means over the seeds, and under each the paired
    difference from the baseline ± half its 95 % confidence interval."""
    scale = summary.get("budget_scale", 1)
    seeds = len(summary["seeds"])
    title = (f"{safe_text(summary['scenario'])}, campaign {safe_text(summary['campaign'])}: strategies on"
             f" the same traffic, {'as written' if scale == 1 else f'budgets x{scale:g}'},"
             f" {plural(seeds, 'seed')}; money in {currency_of(summary)}")
    caption = ("Means over the seeds; under each, the mean paired difference from the baseline"
               f" ± half its 95 % confidence interval. {ROMI_NOTE}")
    differences = {d["strategy"]: d for d in summary["differences"]}

    def build(fmt: Formats) -> Sheet:
        groups = [[("spend", "spend", fmt.money)],
                  [("conv", "conversions", ",.1f"), ("incr. conv", "incremental_conversions", ",.1f")],
                  [("ROMI", "romi", fmt.ratio), ("incr. ROMI", "incremental_romi", fmt.ratio)],
                  [("CPA", "cpa", fmt.money)],
                  [("impressions", "impressions", ",.0f"), ("clicks", "clicks", ",.1f")]]
        rows = []
        for strategy in summary["strategies"]:
            # (a class's folder is in compare.json; on screen it is the scenario's, as a rule)
            spec = "\n".join(safe_text(f"{k} = {v}") for k, v in strategy["strategy"].items()
                             if v is not None and k != "folder")
            diff = differences.get(strategy["name"])
            cells = [safe_text(strategy["name"]) + "\n" + spec]
            for group in groups:
                for _, key, fspec in group:
                    cell = format_or_dash(strategy["means"][key], fspec)
                    if diff is not None:
                        d = diff[key]
                        low, high = d["ci95"] if d.get("ci95") else (None, None)
                        cell += "\n" + change_text(d["mean"], low, high, fspec)
                    cells.append(cell)
            rows.append(Row(cells, section=True))
        return Sheet(keys=["strategy"], groups=headers_of(groups),
                     blocks=[(None, rows)])

    return fitted_table(build, width, title, caption, FORMATS)


# ---- rtb sweep ------------------------------------------------------------------------

RANGED = {"conversions", "romi", "incremental_romi"}  # sweep figures shown with their range


def _range(figures: dict, name: str, spec: str, several: bool) -> str:
    """A sweep figure's mean, and under it the lowest to highest over the seeds."""
    text = format_or_dash(figures[name], spec)
    span = (figures.get("range") or {}).get(name)
    if several and span is not None:
        text += f"\n{format_number(span[0], spec)} to {format_number(span[1], spec)}"
    return text


def sweep_table(summary: dict, width: int | None = None) -> RenderableType:
    """Per campaign (a block each, then the totals) and budget scale: what the budget
    bought and returned (seed means, and for conversions and ROMI the lowest to
    highest over the seeds when there are several)."""
    by_scale = summary["by_scale"]
    counts = sorted({g["seeds"] for g in by_scale})
    # A column of seeds only when the scales' counts differ; else the title says it.
    seeds = f"{plural(counts[0], 'seed')} each" if len(counts) == 1 else "seeds as shown"
    scales = ", ".join(f"x{g['budget_scale']:g}" for g in by_scale)
    title = (f"{safe_text(summary['scenario'])}: budget sweep, budgets {scales}, {seeds};"
             f" money in {currency_of(summary)}")
    caption = f"Means over each scale's seeds (under them, lowest to highest). {ROMI_NOTE}"
    blocks_ = [(safe_text(camp["id"]), [g["campaigns"][k] for g in by_scale])
               for k, camp in enumerate(by_scale[0]["campaigns"] if by_scale else [])]
    blocks_.append(("total", [g["totals"] for g in by_scale]))

    def build(fmt: Formats) -> Sheet:
        groups = [[("budget", "budget", fmt.money), ("spend", "spend", fmt.money)],
                  [("conv", "conversions", ",.1f")],
                  [("ROMI", "romi", fmt.ratio), ("incr. ROMI", "incremental_romi", fmt.ratio)],
                  [("impressions", "impressions", ",.0f"), ("reach", "reach", ",.0f")],
                  [("revenue", "revenue", fmt.money)]]
        blocks = []
        for name, figures in blocks_:
            rows = []
            for group, m in zip(by_scale, figures):
                several = group["seeds"] > 1
                rows.append(Row([f"x{group['budget_scale']:g}"]
                                + ([str(group["seeds"])] if len(counts) > 1 else [])
                                + [_range(m, key, spec, several and key in RANGED)
                                   for g in groups for _, key, spec in g],
                                section=several))
            blocks.append((name, rows))
        return Sheet(keys=["budgets"] + (["seeds"] if len(counts) > 1 else []),
                     groups=headers_of(groups),
                     blocks=blocks, optional=frozenset({3, 4}))

    return fitted_table(build, width, title, caption, FORMATS,
                        more="More figures: sweep.json.")
