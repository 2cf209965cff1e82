"""Pictures of a budget sweep: what each campaign's budget buys and returns.

matplotlib is the optional 'plot' extra; it is imported only here, when a picture is
asked for. The figure is drawn without pyplot (no global state, no display) and
saved atomically; dates are left out of the file, so the same sweep gives the same
bytes.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from rtb.atomic import write_atomic

FORMATS = ("png", "svg", "pdf")
# Without these the file would carry the time it was drawn.
NO_DATES = {"png": {}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}


def plot_format(path: Path) -> str | None:
    """The picture format a file name asks for, or None if it is not one of FORMATS."""
    suffix = path.suffix.lower().lstrip(".")
    return suffix if suffix in FORMATS else None


def plot_sweep(summary: dict, path: str | Path) -> None:
    """Two panels from a sweep summary (rtb.sweep): per campaign, conversions against
    spend, and ROMI against the budget scale; the means over the seeds, with bars
    from the lowest to the highest seed, each point labelled with its budget."""
    from matplotlib import rc_context  # the optional 'plot' extra
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    path = Path(path)
    fmt = plot_format(path)
    if fmt is None:
        raise ValueError(f"{path}: a picture is one of {', '.join(FORMATS)}")
    groups = sorted(summary["by_scale"], key=lambda g: g["budget_scale"])
    fig = Figure(figsize=(12, 5), layout="constrained")
    response, romi = fig.subplots(1, 2)
    scales = [g["budget_scale"] for g in groups]
    currency = summary.get("currency", "USD")
    for k, campaign in enumerate(groups[0]["campaigns"] if groups else []):
        rows = [g["campaigns"][k] for g in groups]
        spend = [row["spend"] for row in rows]
        conversions, conversion_bars = _with_bars(rows, "conversions", 1.0)
        line = response.errorbar(spend, conversions, yerr=conversion_bars, marker="o", capsize=3,
                                 label=campaign["id"])
        returns, return_bars = _with_bars(rows, "romi", 100.0)
        romi.errorbar(scales, returns, yerr=return_bars, marker="o", capsize=3)
        # Every point says which budget it is: a curve alone does not.
        colour = line.lines[0].get_color()
        for row, x, y, scale, r in zip(rows, spend, conversions, scales, returns):
            label = f"{row['budget']:,.0f} {currency}" if row["budget"] >= 100 else \
                f"{row['budget']:.4g} {currency}"
            response.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4),
                              fontsize=6, color=colour)
            romi.annotate(label, (scale, r), textcoords="offset points", xytext=(4, 4),
                          fontsize=6, color=colour)
    response.set(xlabel=f"spend, {currency} (mean over seeds)", ylabel="conversions (mean over seeds)",
                 title="What the budget buys")
    spends = [row["spend"] for g in groups for row in g["campaigns"]]
    if spends and min(spends) > 0:
        response.set_xscale("log")  # campaigns' budgets differ by orders of magnitude
        response.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        response.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,g}"))
        response.xaxis.set_minor_formatter(NullFormatter())
    romi.set(xlabel="budget scale", ylabel="ROMI, %", title="What it returns")
    if len(scales) > 1:
        romi.set_xscale("log", base=2)
        romi.set_xticks(scales, [f"{s:g}" for s in scales])
    romi.axhline(0.0, color="grey", linewidth=0.8)
    fig.legend(loc="outside right upper", fontsize="small")
    seeds = max((g["seeds"] for g in groups), default=0)
    fig.suptitle(f"{summary['scenario']}: budget sweep ({seeds} seed{'s' if seeds != 1 else ''}"
                 " per scale; bars from the lowest to the highest seed)")
    buffer = io.BytesIO()
    with rc_context({"svg.hashsalt": "rtbsim"}):  # else an SVG's element ids are random
        fig.savefig(buffer, format=fmt, dpi=110, metadata=NO_DATES[fmt])
    write_atomic(path, buffer.getvalue())


def _with_bars(rows: list[dict], name: str, unit: float) -> tuple[list[float], list[list[float]]]:
    """A field's means (NaN where undefined: a gap in the line) and error bars to its
    lowest and highest seed, times unit."""
    means, below, above = [], [], []
    for row in rows:
        mean, span = row[name], row["range"][name]
        if mean is None:
            means.append(math.nan)
            below.append(0.0)
            above.append(0.0)
            continue
        means.append(mean * unit)
        below.append((mean - span[0]) * unit)
        above.append((span[1] - mean) * unit)
    return means, [below, above]
