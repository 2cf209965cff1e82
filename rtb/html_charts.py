"""The HTML pages' charts, drawn by matplotlib (the optional 'plot' extra, imported when a
chart is drawn) without pyplot, as SVG to put into a page: response curves, changes
against the baseline as bars, and a budget split as bars.

Same input, same bytes: text stays <text> (no glyph paths, no mathtext), there is no
date nor metadata, and the SVG ids come from a fixed salt per chart (Charts).
"""

from __future__ import annotations

import io
import math
import re
from typing import NamedTuple

from rtb.html_format import Fig, as_fig, budget_label, finite_number, plain_text, short_name

# Current is a circle, the first variant a square, the others further shapes.
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "h")
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")
# Where a point's budget label goes (offset in points, alignment): beside the point, clear
# of its vertical error bar; variants take turns so that two points at one place (a
# variant that leaves a campaign alone) keep their labels apart.
LABEL_PLACES = (((-7, 3), "right", "bottom"), ((7, -3), "left", "top"),
                ((7, 3), "left", "bottom"), ((-7, -3), "right", "top"))
# Later variants are drawn smaller on top of earlier ones: a point hidden under another
# still shows as a ring.
MARKER_SIZES = (10.0, 6.5, 5.0, 4.0)
# text as <text> (not glyph paths), no mathtext: a '$' in a name is a dollar sign
RC = {"svg.fonttype": "none", "text.parse_math": False, "font.size": 8.5,
      "font.sans-serif": ["DejaVu Sans"], "axes.spines.top": False, "axes.spines.right": False}

# A chart's panels: (field, axis label, kind); the tables' kinds (rtb.html.PLAN_FIELDS).
CURVE_PANELS = (("conversions", "conversions", "count"), ("romi", "ROMI (attributed), %", "ratio"),
                ("incremental_romi", "incremental ROMI, %", "ratio"))


class Point(NamedTuple):
    """A point of a chart, its error bar and its budget label, as drawn."""
    x: float
    y: float
    low: float | None
    high: float | None
    label: str
    marker: str
    color: str
    hollow: bool = False  # "too few" events: shown, but not to be trusted
    size: float = 6.5
    place: int = 0  # index into LABEL_PLACES


class Charts:
    """Draws the page's charts as inline SVG, each with its own fixed salt so that the
    element ids are unique in the page and the same every time."""

    def __init__(self, page: str):
        self.page = plain_text(page)
        self.count = 0

    def add(self, draw, *args) -> str:
        from matplotlib import rc_context  # the optional 'plot' extra

        self.count += 1
        with rc_context({**RC, "svg.hashsalt": f"rtbsim-{self.page}-{self.count}"}):
            fig = draw(*args)
            buffer = io.BytesIO()
            fig.savefig(buffer, format="svg", metadata={"Date": None})
        svg = buffer.getvalue().decode("utf-8")
        svg = svg[svg.index("<svg"):]  # no XML declaration or DOCTYPE inside HTML
        svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)  # RDF links, version
        return f'<div class="chart">{svg}</div>'


def _figure(width: float, height: float, left: float = 0.6, top: float = 0.6, wspace: float = 0.3):
    """A figure with fixed margins in inches (room for the legend above, the tick labels
    left and below): matplotlib's constrained layout would cost two thirds of the page's
    drawing time (3.6 s against 1.3 s for a six-campaign plan, measured)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=left / width, right=1 - 0.15 / width, top=1 - top / height,
                        bottom=0.5 / height, wspace=wspace)
    return fig


def _legend(fig, handles: list, labels: list[str], title: str | None = None) -> None:
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 1.0),
               ncols=min(len(labels), 4), frameon=False, title=title, title_fontsize=8)


def _name_margin(names: list[str]) -> float:
    """Inches left of the axes for tick labels of these names (about 0.07 in a letter)."""
    return 0.3 + 0.06 * max((len(name) for name in names), default=4)


def chart_point(x: Fig | None, y: Fig | None, budget: Fig | None, cur: str, field: str, marker: str,
                color: str, place: int = 0, size: float = 6.5) -> Point | None:
    """A chart point from Figs, ratios as percentages; None where x or y is not known."""
    x, y, budget = (f if isinstance(f, Fig) else as_fig(f) for f in (x, y, budget))
    if x.mean is None or y.mean is None:
        return None
    unit = 100.0 if field in ("romi", "incremental_romi") else 1.0
    low, high = (None if v is None else v * unit for v in (y.low, y.high))
    label = budget_label(budget.mean, cur)  # hollow where too few: the legend says so
    return Point(x.mean, y.mean * unit, low, high, label, marker, color, y.too_few, size, place)


def plan_point(figures: dict, name: str, j: int, field: str, cur: str) -> Point | None:
    return chart_point(figures.get("spend"), figures.get(field), figures.get("budget"), cur, field,
                       MARKERS[j % len(MARKERS)], COLORS[j % len(COLORS)], place=j % len(LABEL_PLACES),
                       size=MARKER_SIZES[min(j, len(MARKER_SIZES) - 1)])


def _draw_points(ax, points: list[Point | None], line: str | None) -> None:
    """Points in the order given (later ones on top), each with its error bar and budget
    label; `line`, a colour, joins them in the order of x."""
    shown = [p for p in points if p is not None]
    if line and len(shown) > 1:
        along = sorted(shown, key=lambda p: p.x)
        ax.plot([p.x for p in along], [p.y for p in along], color=line, linewidth=1, zorder=1)
    for p in shown:
        yerr = None
        if p.low is not None and p.high is not None:
            yerr = [[max(0.0, p.y - p.low)], [max(0.0, p.high - p.y)]]
        ax.errorbar([p.x], [p.y], yerr=yerr, fmt=p.marker, color=p.color, markersize=p.size,
                    markerfacecolor="white" if p.hollow else p.color, capsize=3, elinewidth=1,
                    zorder=3)
        if not p.label:
            continue
        offset, ha, va = LABEL_PLACES[p.place % len(LABEL_PLACES)]
        ax.annotate(p.label, (p.x, p.y), xytext=offset, textcoords="offset points", ha=ha, va=va,
                    fontsize=7, color="#333", zorder=4)
    ax.margins(x=0.25, y=0.22)  # room for the labels inside the axes


def _style_panel(ax, field: str, xlabel: str, ylabel: str) -> None:
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, color="#eee", linewidth=0.8)
    if field in ("romi", "incremental_romi"):
        ax.axhline(0.0, color="grey", linewidth=0.8, zorder=0)


def plan_curves(series: list[list[Point | None]], names: list[str], cur: str):
    """Per panel (CURVE_PANELS), one point per variant against its spend, joined in the
    order of spend: the campaign's response curve as far as the plans trace it."""
    from matplotlib.lines import Line2D

    fig = _figure(11, 3.3)
    axes = fig.subplots(1, len(CURVE_PANELS))
    for ax, points, (field, label, _) in zip(axes, series, CURVE_PANELS):
        _draw_points(ax, points, "#bbb")
        _style_panel(ax, field, _unit("spend", cur), label)
    handles = [Line2D([], [], marker=MARKERS[j % len(MARKERS)], color=COLORS[j % len(COLORS)],
                      linestyle="none", markersize=6) for j in range(len(names))]
    few = any(p is not None and p.hollow for points in series for p in points)
    _legend(fig, handles, [short_name(n, 40) for n in names], "plan (points labelled with the budget"
            + ("; hollow: too few events to judge" if few else "") + ")")
    return fig


def sweep_curves(series: list[list[Point | None]], cur: str):
    """Spend -> conversions; budget scale -> ROMI and incremental ROMI."""
    from matplotlib.lines import Line2D

    fig = _figure(11, 3.3)
    axes = fig.subplots(1, len(CURVE_PANELS))
    for k, (ax, points, (field, label, _)) in enumerate(zip(axes, series, CURVE_PANELS)):
        _draw_points(ax, points, COLORS[0])
        _style_panel(ax, field, _unit("spend", cur) if k == 0 else "budget scale", label)
        scales = sorted({p.x for p in points if p is not None})
        if k and len(scales) > 1 and scales[0] > 0:
            ax.set_xscale("log", base=2)
            ax.set_xticks(scales, [f"×{s:g}" for s in scales])
            ax.minorticks_off()
    handles = [Line2D([], [], marker=m, color=COLORS[0], linestyle="none", markersize=6)
               for m in ("o", "s")]
    _legend(fig, handles, ["the scenario's budget (scale 1)", "other scales"],
            "points labelled with the campaign's budget; bars: lowest to highest seed")
    return fig


def optimize_curves(points: list[dict], current: float | None, proposed: float | None,
                    now: dict, then: dict, cur: str):
    """A campaign's response curve: every budget tried, the current one a circle and the
    proposed one a square (from the expected figures `then` where no point of the curve
    has that budget; likewise the current one from `now`)."""
    from matplotlib.lines import Line2D

    def at(budget: float | None, row: dict) -> bool:
        mean = as_fig(row.get("budget")).mean
        return budget is not None and mean is not None and math.isclose(mean, budget, rel_tol=1e-6)

    rows = sorted((p for p in points if isinstance(p, dict)),
                  key=lambda p: as_fig(p.get("budget")).mean or 0.0)
    for budget, figures in ((current, now), (proposed, then)):
        if budget is not None and figures and not any(at(budget, row) for row in rows):
            rows.append({**figures, "budget": budget})
    fig = _figure(11, 3.3)
    axes = fig.subplots(1, 2)
    for ax, (field, label, _) in zip(axes, CURVE_PANELS[:2]):
        series = []
        for j, row in enumerate(rows):
            roles = [("o", COLORS[0], 9.0)] if at(current, row) else []
            roles += [("s", COLORS[1], 6.5)] if at(proposed, row) else []  # on top of the circle
            for n, (marker, color, size) in enumerate(roles or [(".", "#555", 5.0)]):
                point = chart_point(row.get("spend"), row.get(field), row.get("budget"), cur, field,
                                    marker, color, place=j % 2, size=size)
                series.append(point._replace(label="") if point and n else point)  # one label
        _draw_points(ax, series, "#999")
        _style_panel(ax, field, _unit("spend", cur), label)
    handles = [Line2D([], [], marker="o", color=COLORS[0], linestyle="none", markersize=7),
               Line2D([], [], marker="s", color=COLORS[1], linestyle="none", markersize=7),
               Line2D([], [], marker=".", color="#555", linestyle="none", markersize=6)]
    _legend(fig, handles, ["current budget", "proposed budget", "other budgets tried"],
            "points labelled with the budget")
    return fig


def _unit(name: str, cur: str) -> str:
    return f"{name}, {cur}" if cur else name


def change_bars(ids: list, others: list[dict], cur: str, level: str):
    """Per campaign, each variant's change against the baseline in spend, conversions
    and incremental conversions: bars at the mean, whiskers over the interval."""
    import numpy as np
    from matplotlib.patches import Patch

    panels = (("spend", _unit("spend change", cur)), ("conversions", "conversions change"),
              ("incremental_conversions", "incremental conversions change"))
    n = max(len(ids), 1)
    fig = _figure(11, 1.2 + 0.3 * n * max(len(others), 1), left=_name_margin([short_name(i) for i in ids]),
                  wspace=0.08)
    axes = fig.subplots(1, len(panels), sharey=True)
    height = 0.8 / max(len(others), 1)
    for ax, (field, label) in zip(axes, panels):
        for j, variant in enumerate(others):
            by_id = {c.get("id"): c for c in variant.get("campaigns") or []}
            ys, widths, below, above = [], [], [], []
            for i, cid in enumerate(ids):
                change = as_fig(by_id.get(cid, {}).get(field)).change
                if change is None or change.mean is None:
                    continue
                ys.append(i - 0.4 + height * (j + 0.5))
                widths.append(change.mean)
                below.append(0.0 if change.low is None else max(0.0, change.mean - change.low))
                above.append(0.0 if change.high is None else max(0.0, change.high - change.mean))
            color = COLORS[(j + 1) % len(COLORS)]
            ax.barh(ys, widths, height=height * 0.9, color=color, xerr=np.array([below, above]),
                    error_kw={"elinewidth": 1, "capsize": 2, "ecolor": "#333"},
                    label=short_name(variant.get("name"), 40))
        ax.axvline(0.0, color="grey", linewidth=0.8)
        ax.set_xlabel(label)
        ax.grid(True, axis="x", color="#eee", linewidth=0.8)
    axes[0].set_yticks(range(len(ids)), [short_name(cid) for cid in ids])
    axes[0].set_ylim(len(ids) - 0.5, -0.5)  # the first campaign on top
    handles = [Patch(color=COLORS[(j + 1) % len(COLORS)]) for j in range(len(others))]
    _legend(fig, handles, [short_name(v.get("name"), 40) for v in others],
            f"change against the current plan; whiskers: {level} interval")
    return fig


def split_bars(ids: list, current: dict, proposed: dict, cur: str):
    """Per campaign, the current budget and the proposed one, labelled."""
    from matplotlib.patches import Patch

    fig = _figure(11, 1.0 + 0.5 * max(len(ids), 1), left=_name_margin([short_name(i) for i in ids]),
                  top=0.4)
    ax = fig.subplots()
    for j, (split, color) in enumerate(((current, "#aaa"), (proposed, COLORS[1]))):
        for i, cid in enumerate(ids):
            value = finite_number(split.get(cid))
            if value is None:
                continue
            y = i - 0.2 + 0.4 * j
            ax.barh([y], [value], height=0.38, color=color)
            ax.annotate(budget_label(value, cur), (value, y), xytext=(4, 0), textcoords="offset points",
                        ha="left", va="center", fontsize=7.5, color="#333")
    ax.set_yticks(range(len(ids)), [short_name(cid) for cid in ids])
    ax.set_ylim(len(ids) - 0.5, -0.5)
    ax.margins(x=0.15)
    ax.set_xlabel(_unit("budget", cur))
    ax.grid(True, axis="x", color="#eee", linewidth=0.8)
    _legend(fig, [Patch(color="#aaa"), Patch(color=COLORS[1])], ["current", "proposed"])
    return fig
