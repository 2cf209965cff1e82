"""The tables `rtb` prints: a run's campaigns, a budget sweep, a strategy comparison.

Built from the report and summary dicts only, so what a table shows is what the JSON
files hold. The run table has two layouts: every column when the terminal is wide
enough, and the columns a marketer reads first when it is not (80 columns).
"""

from __future__ import annotations

from rich import box
from rich.markup import escape
from rich.table import Table

from rtb.errors import printable

ROMI_NOTE = ("ROMI = (revenue x margin - cost) / cost; attributed: last touch within the "
             "window; incr.: ad-caused conversions only.")
WIDE_RUN_TABLE = 150  # columns from which the run table shows every figure
# rich's SIMPLE_HEAD drawn in ASCII: a narrow table that any terminal or file shows.
NARROW_BOX = box.Box("    \n    \n -- \n    \n    \n    \n    \n    \n", ascii=True)


def _text(value: object) -> str:
    """A name from the scenario as a table shows it: rich markup ("[/bold]") and control
    characters are shown as written, never interpreted."""
    return escape(printable(value))


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def campaign_table(report: dict, width: int | None = None) -> Table:
    """Per campaign and in total: what was bought and what it returned.

    width: the terminal's columns; below WIDE_RUN_TABLE, the compact layout (spend,
    impressions, reach, frequency, conversions, CPA and both ROMIs). Every
    figure is in the report (--out) and the campaign CSV (--csv) whatever the layout.
    """
    scenario = report["scenario"]
    wide = width is None or width >= WIDE_RUN_TABLE
    table = Table(title=f"{_text(scenario['name'])}: seed {scenario['seed']}, budgets x{scenario['budget_scale']:g}",
                  caption=ROMI_NOTE if wide else ROMI_NOTE + " More figures: --out, --csv.",
                  box=box.HEAVY_HEAD if wide else NARROW_BOX, pad_edge=wide,
                  collapse_padding=not wide)
    if wide:
        columns = [("impressions", "impressions", ","), ("reach", "reach", ","),
                   ("freq", "frequency", ".2f"), ("clicks", "clicks", ","), ("CTR", "ctr", ".3%"),
                   ("conv", "conversions", ","), ("spend", "spend", ",.2f"), ("eCPM", "ecpm", ".2f"),
                   ("CPC", "cpc", ".2f"), ("CPA", "cpa", ".2f"), ("revenue", "revenue", ",.2f"),
                   ("ROMI", "romi", "+.1%"), ("incr. ROMI", "incremental_romi", "+.1%")]
    else:
        columns = [("spend", "spend", ",.2f"), ("impr.", "impressions", ","), ("reach", "reach", ","),
                   ("freq", "frequency", ".1f"), ("conv", "conversions", ","), ("CPA", "cpa", ".2f"),
                   ("ROMI", "romi", "+.0%"), ("incr.", "incremental_romi", "+.0%")]
    # Names wrap rather than being cut: a campaign must stay recognisable.
    longest = max([len(c["id"]) for c in report["campaigns"]] + [5])
    table.add_column("campaign", justify="left", min_width=min(longest, 22), overflow="fold")
    for name, _, _ in columns:
        table.add_column(name, justify="right", no_wrap=True)

    def cells(label: str, m: dict) -> list[str]:
        return [label] + [_fmt(m[key], spec) for _, key, spec in columns]

    for c in report["campaigns"]:
        table.add_row(*cells(_text(c["id"]), c))
    table.add_section()
    table.add_row(*cells("total", report["totals"]), style="bold")
    return table


def compare_table(summary: dict) -> Table:
    """Per strategy: the campaign's means over the seeds, and the paired differences
    from the baseline with their 95 % confidence intervals."""
    table = Table(title=f"{_text(summary['scenario'])} - {_text(summary['campaign'])}: strategies on the same"
                        f" traffic ({len(summary['seeds'])} seeds)",
                  caption="Means over the seeds; under each, the mean paired difference from the"
                          " baseline (95 % confidence interval). ROMI = (revenue x margin - cost) / cost.")
    for name, justify in [("strategy", "left"), ("spend", "right"), ("impressions", "right"),
                          ("clicks", "right"), ("conv", "right"), ("incr. conv", "right"),
                          ("CPA", "right"), ("ROMI", "right"), ("incr. ROMI", "right")]:
        table.add_column(name, justify=justify)
    columns = [("spend", ",.2f"), ("impressions", ",.0f"), ("clicks", ",.1f"),
               ("conversions", ",.1f"), ("incremental_conversions", ",.1f"), ("cpa", ",.2f"),
               ("romi", "+.1%"), ("incremental_romi", "+.1%")]
    differences = {d["strategy"]: d for d in summary["differences"]}
    for strategy in summary["strategies"]:
        spec = "\n".join(_text(f"{k} = {v}") for k, v in strategy["strategy"].items() if v is not None)
        cells = [_fmt(strategy["means"][m], f) for m, f in columns]
        diff = differences.get(strategy["name"])
        if diff is not None:
            cells = [f"{cell}\n{_difference(diff[m], f)}" for cell, (m, f) in zip(cells, columns)]
        table.add_row(_text(strategy["name"]) + "\n" + spec, *cells)
        table.add_section()
    return table


def _difference(d: dict, spec: str) -> str:
    """A paired difference: its mean with a sign, and the interval if there is one."""
    if d["mean"] is None:
        return "-"
    sign = "" if spec.startswith("+") else "+"
    text = format(d["mean"], sign + spec)
    if d["ci95"] is not None:
        text += f" ({format(d['ci95'][0], sign + spec)} to {format(d['ci95'][1], sign + spec)})"
    return text


def sweep_table(summary: dict) -> Table:
    """Per campaign and budget scale: what the budget bought and returned (seed means,
    and for conversions and ROMI the lowest to highest over the seeds when there are several)."""
    table = Table(title=f"{_text(summary['scenario'])} - budget sweep",
                  caption="Means over each scale's seeds (lowest to highest)."
                          " ROMI = (revenue x margin - cost) / cost.")
    for name, justify in [("campaign", "left"), ("scale", "right"), ("seeds", "right"),
                          ("budget", "right"), ("spend", "right"), ("impressions", "right"),
                          ("reach", "right"), ("conv", "right"), ("revenue", "right"),
                          ("ROMI", "right"), ("incr. ROMI", "right")]:
        table.add_column(name, justify=justify)
    groups = summary["by_scale"]
    # One block of rows per campaign (a row per scale), then one for the totals.
    blocks = [(camp["id"], [g["campaigns"][k] for g in groups], None)
              for k, camp in enumerate(groups[0]["campaigns"] if groups else [])]
    blocks.append(("total", [g["totals"] for g in groups], "bold"))
    for name, rows, style in blocks:
        for group, m in zip(groups, rows):
            several = group["seeds"] > 1
            table.add_row(_text(name), f"{group['budget_scale']:g}", str(group["seeds"]),
                          f"{m['budget']:,.2f}", f"{m['spend']:,.2f}", f"{m['impressions']:,.0f}",
                          f"{m['reach']:,.0f}", _with_range(m, "conversions", ",.1f", several),
                          f"{m['revenue']:,.2f}", _with_range(m, "romi", "+.1%", several),
                          _with_range(m, "incremental_romi", "+.1%", several), style=style)
        table.add_section()
    return table


def _with_range(figures: dict, name: str, spec: str, several: bool) -> str:
    """A sweep figure's mean, then (lowest to highest) over the seeds if there are several."""
    text = _fmt(figures[name], spec)
    span = figures["range"][name]
    if several and span is not None:
        text += f" ({format(span[0], spec)} to {format(span[1], spec)})"
    return text
