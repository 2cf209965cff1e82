"""One self-contained HTML page for a plan, an optimisation or a budget sweep: tables and inline SVG charts.

The page fetches nothing (no script, no font, no image, no link outside itself; a
Content-Security-Policy forbids them as a second line of defence) so it can be mailed
or opened offline. The charts are drawn by matplotlib (the optional 'plot' extra),
without pyplot, as SVG put into the page; text stays text, so it can be found and
copied. Every string from the input (scenario, campaign and plan names, the currency)
is shown through rtb.errors.printable and HTML-escaped: a name is never markup. Same
input, same bytes: no dates, and the SVG ids come from a fixed salt per chart.
"""

from __future__ import annotations

import html
import importlib.util
import io
import math
import re
from pathlib import Path
from typing import NamedTuple

from rtb.atomic import write_atomic
from rtb.errors import InputError, printable

PAGE_KINDS = ("plan", "sweep", "optimize")
SUFFIXES = (".html", ".htm")
NA = "–"  # a figure that is not defined (a ROMI without spend) or not known
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
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

# (field, row label, kind): kind says how to show it ("money" in the currency,
# "count", "ratio" as a percentage whose changes are percentage points).
PLAN_FIELDS = (("budget", "Budget", "money"), ("spend", "Spend", "money"),
               ("impressions", "Impressions", "count"), ("reach", "Reach", "count"),
               ("conversions", "Conversions", "count"),
               ("incremental_conversions", "Incremental conversions", "count"),
               ("revenue", "Revenue", "money"), ("romi", "ROMI (attributed)", "ratio"),
               ("incremental_romi", "Incremental ROMI", "ratio"))
CURVE_PANELS = (("conversions", "conversions", "count"), ("romi", "ROMI (attributed), %", "ratio"),
                ("incremental_romi", "incremental ROMI, %", "ratio"))

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 color:#1d1d1f;background:#fff;margin:0 auto;padding:1.2em 1.6em 3em;max-width:1180px}
h1{font-size:1.55em;margin:.2em 0 .1em;overflow-wrap:anywhere}
h2{font-size:1.2em;margin:1.8em 0 .5em;border-bottom:1px solid #ddd;padding-bottom:.2em;
 overflow-wrap:anywhere}
h3{font-size:1.05em;margin:1.2em 0 .4em;overflow-wrap:anywhere}
.meta{color:#555;margin:0 0 1em}
.read{background:#f4f7fb;border-left:4px solid #1f77b4;padding:.6em 1em;margin:1em 0}
.read p{margin:.3em 0}
.warn{background:#fff4e5;border-left:4px solid #ff7f0e;padding:.5em 1em}
.good{background:#eef8ee;border-left:4px solid #2ca02c;padding:.5em 1em}
nav a{margin-right:1em;white-space:nowrap}
table{border-collapse:collapse;margin:.4em 0 1em;font-variant-numeric:tabular-nums}
th,td{border:1px solid #ddd;padding:.25em .55em;text-align:right;vertical-align:top}
th{background:#f6f6f6;font-weight:600}
th.name,td.name{text-align:left;max-width:22em;overflow-wrap:anywhere}
td .v{white-space:nowrap}
td .ci{display:block;color:#777;font-size:.82em}
td.name{min-width:10em}
td.sure .v{font-weight:700}
td.na,td.few{color:#999;font-style:italic}
.chart svg{max-width:100%;height:auto;display:block}
.wide{overflow-x:auto}
code{overflow-wrap:anywhere}
"""


class Fig(NamedTuple):
    """One figure: its mean and interval (or range), "too few" events, and its change
    against the baseline (another Fig) where the input gives one."""
    mean: float | None
    low: float | None
    high: float | None
    too_few: bool = False
    change: "Fig | None" = None


class Point(NamedTuple):
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


# ---------------------------------------------------------------------------------
# Public functions

def check_html_option(path: Path | None, option: str = "--html") -> None:
    """Fail before any work if `path` cannot be a page: it must end in .html or .htm,
    and the charts need matplotlib (the 'plot' extra). The folder is checked by the
    CLI's check_output_path."""
    if path is None:
        return
    if Path(path).suffix.lower() not in SUFFIXES:
        raise InputError.single(str(path), option, "a page is a .html or .htm file")
    if importlib.util.find_spec("matplotlib") is None:
        raise InputError.single("command line", option,
                                "pages need the plot extra: pip install 'rtbsim[plot]'")


def write_page(kind: str, data: dict, path: str | Path) -> None:
    """Render a page of `kind` (one of PAGE_KINDS) from its JSON data and write it
    atomically to `path`."""
    renderers = {"plan": render_plan_page, "sweep": render_sweep_page,
                 "optimize": render_optimize_page}
    if kind not in renderers:
        raise ValueError(f"a page is one of {', '.join(PAGE_KINDS)}, not {kind!r}")
    write_atomic(path, renderers[kind](data))


def render_plan_page(summary: dict) -> bytes:
    """The page for plan.json: current against each variant, per campaign and in total."""
    cur = _currency(summary)
    level = _percent(_number(summary.get("confidence")) or 0.95)
    variants = [v for v in summary.get("variants") or [] if isinstance(v, dict)]
    if not variants:
        variants = [{"name": "current", "campaigns": [], "totals": {}}]
    names = [_text(v.get("name")) for v in variants]
    seeds = list(summary.get("seeds") or [])
    others = variants[1:]
    charts = _Charts(f"plan-{summary.get('scenario')}")
    body = [f"<h1>{_esc(summary.get('scenario'))}: {_esc(names[0])} against "
            f"{_esc(', '.join(names[1:]) or 'nothing else')}</h1>",
            f'<p class="meta">{_esc(_seeds_text(seeds))} · money in {_esc(cur or "the scenario currency")}'
            f" · {level} intervals · &quot;too few&quot; below {_esc(summary.get('min_events') or NA)}"
            " events</p>"]
    missing = summary.get("missing_seeds") or []
    if missing:
        body.append(f'<p class="warn">Seeds without results (left out of every figure): '
                    f"{_esc(', '.join(map(str, missing)))}</p>")
    body.append(_how_to_read(level, names[0], summary.get("min_events")))
    body.append("<h2>What was compared</h2><ul>")
    for variant in variants:
        changes = [_text(c) for c in variant.get("changes") or []]
        body.append(f"<li><b>{_esc(variant.get('name'))}</b>: "
                    f"{_esc('; '.join(changes)) if changes else 'the scenario as it is'}</li>")
    body.append("</ul>")
    ids = _campaign_ids(variants)
    body.append(_nav(ids))
    body.append("<h2>All campaigns</h2>")
    body.append(_comparison_table([(n, v.get("totals") or {}) for n, v in zip(names, variants)],
                                  PLAN_FIELDS, cur, level))
    if others and ids:
        body.append(f"<h2>Change against {_esc(names[0])}, per campaign</h2>")
        body.append(f"<p>Bars: the mean paired difference; whiskers: its {level} interval.</p>")
        body.append(charts.add(_change_bars, ids, others, cur, level))
    marginal = summary.get("marginal")
    if marginal:
        body.append(_marginal_section(marginal, cur, level))
    by_id = [{c.get("id"): c for c in v.get("campaigns") or [] if isinstance(c, dict)} for v in variants]
    for k, cid in enumerate(ids):
        rows = [(n, figures.get(cid) or {}) for n, figures in zip(names, by_id)]
        advertiser = next((r.get("advertiser") for _, r in rows if r.get("advertiser")), None)
        body.append(f'<h2 id="c{k}">{_esc(cid)}'
                    + (f' <small>({_esc(advertiser)})</small>' if advertiser else "") + "</h2>")
        series = [[_plan_point(figures, name, j, field, cur) for j, (name, figures) in enumerate(rows)]
                  for field, _, _ in CURVE_PANELS]
        body.append(charts.add(_curves, series, [n for n, _ in rows], cur))
        body.append(_comparison_table(rows, PLAN_FIELDS, cur, level))
    return _page(f"{_text(summary.get('scenario'))}: plan", body)


def render_sweep_page(summary: dict) -> bytes:
    """The page for sweep.json: per campaign, what each budget scale buys and returns
    (means over the seeds, with the range from the lowest to the highest seed)."""
    cur = _currency(summary)
    groups = sorted(summary.get("by_scale") or [], key=lambda g: _number(g.get("budget_scale")) or 0.0)
    charts = _Charts(f"sweep-{summary.get('scenario')}")
    seeds = max((g.get("seeds") or 0 for g in groups), default=0)
    scales = [_number(g.get("budget_scale")) for g in groups]
    body = [f"<h1>{_esc(summary.get('scenario'))}: budget sweep</h1>",
            f'<p class="meta">Budget scales {_esc(", ".join(_scale(s) for s in scales) or NA)}'
            f" · {seeds} seed{'s' if seeds != 1 else ''} per scale"
            f" · money in {_esc(cur or 'the scenario currency')}</p>"]
    missing = summary.get("missing") or []
    if missing:
        body.append(f'<p class="warn">{len(missing)} run{"s" if len(missing) != 1 else ""} without'
                    f" a report (left out): {_esc(', '.join(map(str, missing)))}</p>")
    body.append('<div class="read"><p><b>How to read this.</b> Every budget is scaled by the same'
                " factor; each figure is the mean over the seeds (simulated runs with different"
                " random draws), and the small line under it, like the bars in the charts, the range"
                " from the lowest to the highest seed. Each point is labelled with the campaign's"
                " budget; the circle is the scenario's own budget (scale 1), the squares the other"
                " scales.</p><p>Incremental ROMI is what the ads caused: act on it. Attributed ROMI"
                " is what an ad platform reports.</p></div>")
    ids = _campaign_ids([{"campaigns": g.get("campaigns") or []} for g in groups])
    body.append(_nav(ids))
    fields = [f for f in PLAN_FIELDS if f[0] != "incremental_conversions"]
    body.append("<h2>All campaigns</h2>")
    body.append(_scale_table([(s, _ranged(g.get("totals") or {})) for s, g in zip(scales, groups)],
                             fields, cur))
    for k, cid in enumerate(ids):
        rows = [(s, _ranged(next((c for c in g.get("campaigns") or [] if c.get("id") == cid), {})))
                for s, g in zip(scales, groups)]
        body.append(f'<h2 id="c{k}">{_esc(cid)}</h2>')
        points = []
        for field, _, _ in CURVE_PANELS:
            points.append([_point(figures.get("spend") if field == "conversions" else Fig(s, None, None),
                                  figures.get(field), figures.get("budget"), cur, field,
                                  "o" if s == 1 else "s", COLORS[0], place=j % 2)
                           for j, (s, figures) in enumerate(rows) if s is not None])
        body.append(charts.add(_sweep_curves, points, cur))
        body.append(_scale_table(rows, fields, cur))
    return _page(f"{_text(summary.get('scenario'))}: budget sweep", body)


def render_optimize_page(result: dict) -> bytes:
    """The page for an optimisation: the proposed split of the budget against the
    current one, what each is expected to give, the gain, the goal and the curves."""
    cur = _currency(result)
    objective = _text(result.get("objective") or "profit")
    incremental = bool(result.get("incremental"))
    what = ("incremental " if incremental else "") + objective
    gain_kind = "count" if objective == "conversions" else "money"
    charts = _Charts(f"optimize-{result.get('scenario')}")
    split = result.get("split") or {}
    current_split = result.get("current_split") or {}
    expected, current = result.get("expected") or {}, result.get("current") or {}
    body = [f"<h1>{_esc(result.get('scenario'))}: best split of "
            f"{_esc(_fmt(_number(result.get('total_budget')), 'money', cur=cur))} for {_esc(what)}</h1>",
            f'<p class="meta">Objective: {_esc(what)} · money in {_esc(cur or "the scenario currency")}</p>']
    gain = _fig(result.get("gain"))
    gain_text = (f"Expected gain in {_esc(what)} over the current split: "
                 f"<b>{_esc(_fmt(gain.mean, gain_kind, signed=True, cur=cur))}</b>"
                 + (f" ({_esc(_interval(gain, gain_kind, True))})" if gain.low is not None else ""))
    if result.get("found_better"):
        body.append(f'<p class="good">{gain_text}.</p>')
    else:
        body.append(f'<p class="warn">No better split was found: the current one is kept. {gain_text}.</p>')
    goal = result.get("goal")
    if goal:
        body.append(_goal_text(goal))
    body.append('<div class="read"><p><b>How to read this.</b> Expected figures are means over the'
                " seeds (simulated runs with different random draws) with their intervals under them;"
                " the change is the proposed split against the current one. Incremental ROMI is what"
                " the ads caused: act on it. Attributed ROMI is what an ad platform reports. In the"
                " curves each point is labelled with its budget; the circle is the current budget,"
                " the square the proposed one.</p></div>")
    ids = list(dict.fromkeys([*current_split, *split,
                              *_campaign_ids([expected, current])]))
    body.append(_nav(ids))
    if ids:
        body.append("<h2>The split</h2>")
        body.append(charts.add(_split_bars, ids, current_split, split, cur))
    body.append("<h2>All campaigns</h2>")
    body.append(_comparison_table([("current", current.get("totals") or {}),
                                   ("proposed", expected.get("totals") or {})], PLAN_FIELDS, cur, "95 %"))
    curves = {c.get("id"): c.get("points") or [] for c in result.get("curves") or []
              if isinstance(c, dict)}
    now = {c.get("id"): c for c in current.get("campaigns") or []}
    then = {c.get("id"): c for c in expected.get("campaigns") or []}
    for k, cid in enumerate(ids):
        body.append(f'<h2 id="c{k}">{_esc(cid)}</h2>')
        body.append(f"<p>Budget: {_esc(_fmt(_number(current_split.get(cid)), 'money', cur=cur))} → "
                    f"<b>{_esc(_fmt(_number(split.get(cid)), 'money', cur=cur))}</b></p>")
        if curves.get(cid):
            body.append(charts.add(_optimize_curves, curves[cid], _number(current_split.get(cid)),
                                   _number(split.get(cid)), now.get(cid), then.get(cid), cur))
        body.append(_comparison_table([("current", now.get(cid) or {}), ("proposed", then.get(cid) or {})],
                                      PLAN_FIELDS, cur, "95 %"))
    return _page(f"{_text(result.get('scenario'))}: optimised split", body)


# ---------------------------------------------------------------------------------
# Text and numbers

def _text(value: object) -> str:
    """A string from the input, safe to show: control characters written as escapes."""
    return printable("" if value is None else value)


def _esc(value: object) -> str:
    return html.escape(_text(value), quote=True)


def _short(value: object, limit: int = 30) -> str:
    """A name for a chart, where space is short; the tables have it in full."""
    text = _text(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _currency(data: dict) -> str:
    return _text(data.get("currency") or "")


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _fig(value: object) -> Fig:
    """A figure as the input gives it: {"mean", "low", "high"[, "too_few", "vs_current"]},
    a bare number or null."""
    if isinstance(value, Fig):
        return value
    if isinstance(value, dict):
        change = value.get("vs_current")
        return Fig(_number(value.get("mean")), _number(value.get("low")), _number(value.get("high")),
                   bool(value.get("too_few")), _fig(change) if isinstance(change, dict) else None)
    return Fig(_number(value), None, None)


def _ranged(row: dict) -> dict:
    """A sweep row (means, and [lowest, highest] under "range") as Figs."""
    spans = row.get("range") or {}
    out = {}
    for name, value in row.items():
        if name in ("range", "id"):
            continue
        span = spans.get(name) if isinstance(spans, dict) else None
        low, high = (span if isinstance(span, list) and len(span) == 2 else (None, None))
        out[name] = Fig(_number(value), _number(low), _number(high))
    return out


def _fmt(x: float | None, kind: str, signed: bool = False, cur: str = "") -> str:
    """A number for a reader: money in the currency, counts with separators, ratios as
    percentages (their differences as percentage points)."""
    if x is None:
        return NA
    sign = "+" if signed else ""
    if kind == "ratio":
        text = f"{x * 100:{sign},.1f}" + (" pp" if signed else " %")
    else:
        size = abs(x)
        digits = 0 if size >= 1000 else 1 if (kind == "count" and size >= 10) else 2
        text = f"{x:{sign},.{digits}f}" + (f" {cur}" if kind == "money" and cur else "")
    if text.startswith("-") and not re.search(r"[1-9]", text.split(" ")[0]):
        text = text.replace("-", "+" if signed else "", 1)  # never "-0.00"
    return text


def _budget_label(x: float | None, cur: str) -> str:
    """A point's label: its budget, "150 USD" rather than "150.00 USD"."""
    if x is None:
        return f"budget {NA}"
    text = _fmt(x, "money", cur=cur)
    return re.sub(r"\.00(?= |$)", "", text)


def _interval(f: Fig, kind: str, signed: bool) -> str:
    if f.low is None or f.high is None:
        return ""
    if f.low == f.high == f.mean:  # a figure that does not vary (a budget)
        return ""
    return f"{_fmt(f.low, kind, signed)} to {_fmt(f.high, kind, signed)}"  # currency: on the mean


def _percent(confidence: float) -> str:
    return f"{confidence * 100:g} %"


def _scale(s: float | None) -> str:
    return NA if s is None else f"×{s:g}"


def _seeds_text(seeds: list) -> str:
    if not seeds:
        return "no seeds"
    shown = ", ".join(map(str, seeds)) if len(seeds) <= 12 else f"{seeds[0]} … {seeds[-1]}"
    return f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({shown})"


def _campaign_ids(groups: list[dict]) -> list[str]:
    """Every campaign id in the groups' "campaigns", in the order first seen."""
    ids: dict = {}
    for group in groups:
        for campaign in group.get("campaigns") or []:
            if isinstance(campaign, dict):
                ids.setdefault(campaign.get("id"), None)
    return list(ids)


# ---------------------------------------------------------------------------------
# HTML pieces

def _page(title: str, body: list[str]) -> bytes:
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_esc(title)}</title>\n<link rel=\"icon\" href=\"data:,\">\n"
            f"<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body)
            + "\n</body>\n</html>\n").encode("utf-8")


def _how_to_read(level: str, baseline: str, min_events: object) -> str:
    return ('<div class="read"><p><b>How to read this.</b> Each figure is the mean over the seeds'
            " (simulated runs with different random draws); the small line under it is its"
            f" {level} interval, the range the true mean lies in at that confidence. A change"
            f" against {_esc(baseline)} is the paired difference (each seed under both plans) with"
            " its own interval; it is in bold where that interval excludes zero: a change"
            " unlikely to be chance. ROMI +25 % means each unit spent came back as 1.25 units of margin.</p>"
            "<p><b>Incremental ROMI</b> is what the ads caused (the sales that would not have"
            " happened without them): act on it. <b>Attributed ROMI</b> is what an ad platform"
            " reports (every sale after an ad counted): it flatters ads shown to people who would"
            f" have bought anyway. &quot;too few&quot;: fewer than {_esc(min_events or NA)} events"
            " behind the figure, too few to judge it.</p></div>")


def _nav(ids: list) -> str:
    links = " ".join(f'<a href="#c{k}">{_esc(cid)}</a>' for k, cid in enumerate(ids))
    return f"<nav><b>Campaigns:</b> {links}</nav>" if ids else ""


def _cell(f: Fig, kind: str, cur: str, spread: str) -> str:
    if f.too_few:
        return '<td class="few" title="too few events to judge this figure">too few</td>'
    if f.mean is None:
        return f'<td class="na">{NA}</td>'
    interval = _interval(f, kind, False)
    return (f'<td><span class="v">{_esc(_fmt(f.mean, kind, cur=cur))}</span>'
            + (f'<span class="ci">{_esc(spread)}: {_esc(interval)}</span>' if interval else "")
            + "</td>")


def _change_cell(f: Fig, base: Fig, kind: str, cur: str, spread: str) -> str:
    if f.too_few or base.too_few:
        return '<td class="few" title="too few events to judge this figure">too few</td>'
    change = f.change
    if change is None and f.mean is not None and base.mean is not None:
        change = Fig(f.mean - base.mean, None, None)  # only the means are known: no interval
    if change is None or change.mean is None:
        return f'<td class="na">{NA}</td>'
    interval = _interval(change, kind, True)
    sure = interval and (change.low > 0 or change.high < 0)
    return (('<td class="sure">' if sure else "<td>") + '<span class="v">'
            + f"{_esc(_fmt(change.mean, kind, True, cur))}</span>"
            + (f'<span class="ci">{_esc(spread)}: {_esc(interval)}</span>' if interval else "")
            + "</td>")


def _comparison_table(columns: list[tuple[str, dict]], fields: tuple, cur: str, level: str) -> str:
    """Rows: the figures; columns: the baseline, then each other plan and its change."""
    figs = [{name: _fig(raw.get(name)) for name, _, _ in fields} for _, raw in columns]
    head = f'<th class="name">figure</th><th>{_esc(columns[0][0])}</th>'
    for name, _ in columns[1:]:
        head += f"<th>{_esc(name)}</th><th>change vs {_esc(columns[0][0])}</th>"
    rows = []
    for name, label, kind in fields:
        if all(f[name].mean is None and not f[name].too_few for f in figs) and not any(
                name in raw for _, raw in columns):
            continue  # a figure this input does not have at all
        base = figs[0][name]
        cells = _cell(base, kind, cur, level)
        for f in figs[1:]:
            cells += _cell(f[name], kind, cur, level) + _change_cell(f[name], base, kind, cur, level)
        rows.append(f'<tr><td class="name">{_esc(label)}</td>{cells}</tr>')
    return f'<div class="wide"><table><tr>{head}</tr>\n' + "\n".join(rows) + "</table></div>"


def _scale_table(rows: list[tuple[float | None, dict]], fields: list, cur: str) -> str:
    """A sweep's table: one row per budget scale, one column per figure."""
    head = '<th class="name">scale</th>' + "".join(f"<th>{_esc(label)}</th>" for _, label, _ in fields)
    lines = []
    for scale, figures in rows:
        cells = "".join(_cell(figures.get(name, Fig(None, None, None)), kind, cur, "range")
                        for name, _, kind in fields)
        lines.append(f'<tr><td class="name">{_esc(_scale(scale))}</td>{cells}</tr>')
    return f'<div class="wide"><table><tr>{head}</tr>\n' + "\n".join(lines) + "</table></div>"


def _marginal_section(marginal: dict, cur: str, level: str) -> str:
    step = _number(marginal.get("step"))
    per = f"100 {cur}".strip()
    columns = (("conversions_per_100", f"conversions per extra {per}", "count"),
               ("incremental_conversions_per_100", f"incremental conversions per extra {per}", "count"),
               ("spend", "extra spend", "money"), ("conversions", "extra conversions", "count"),
               ("romi", "ROMI of the extra", "ratio"),
               ("incremental_romi", "incremental ROMI of the extra", "ratio"))
    head = ('<th>rank</th><th class="name">campaign</th><th>extra budget</th>'
            + "".join(f"<th>{_esc(label)}</th>" for _, label, _ in columns))
    lines = []
    for rank, row in enumerate(marginal.get("campaigns") or [], 1):
        cells = "".join(_cell(_fig(row.get(name)), kind, cur, level) for name, _, kind in columns)
        lines.append(f'<tr><td>{rank}</td><td class="name">{_esc(row.get("id"))}</td>'
                     f"<td>{_esc(_fmt(_number(row.get('extra_budget')), 'money', cur=cur))}</td>{cells}</tr>")
    step_text = f" by {step * 100:g} %" if step is not None else ""
    return ("<h2>Where the next money goes furthest</h2>"
            f"<p>Each campaign's budget raised{_esc(step_text)} on its own, the others as they are;"
            " ranked best first. What the extra money buys is the difference it makes, with its"
            f" {level} interval.</p>"
            f'<div class="wide"><table><tr>{head}</tr>\n' + "\n".join(lines) + "</table></div>")


def _goal_text(goal: dict) -> str:
    target = _number(goal.get("target_conversions"))
    target = _fmt(target, "count") if target is None or target % 1 else f"{target:,.0f}"
    min_romi = _number(goal.get("min_romi"))
    what = f"{target} conversions" + (f" at a ROMI of at least {_fmt(min_romi, 'ratio')}"
                                      if min_romi is not None else "")
    reachable = bool(goal.get("reachable"))
    reason = _text(goal.get("reason") or "")
    return (f'<p class="{"good" if reachable else "warn"}">Goal: {_esc(what)}: '
            f"<b>{'reachable' if reachable else 'not reachable'}</b>"
            + (f". {_esc(reason)}" if reason else "") + "</p>")


# ---------------------------------------------------------------------------------
# Charts

class _Charts:
    """Draws the page's charts as inline SVG, each with its own fixed salt so that the
    element ids are unique in the page and the same every time."""

    def __init__(self, page: str):
        self.page = _text(page)
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


def _point(x: Fig | None, y: Fig | None, budget: Fig | None, cur: str, field: str, marker: str,
           color: str, place: int = 0, size: float = 6.5) -> Point | None:
    """A chart point from Figs, ratios as percentages; None where x or y is not known."""
    x, y, budget = (f if isinstance(f, Fig) else _fig(f) for f in (x, y, budget))
    if x.mean is None or y.mean is None:
        return None
    unit = 100.0 if field in ("romi", "incremental_romi") else 1.0
    low, high = (None if v is None else v * unit for v in (y.low, y.high))
    label = _budget_label(budget.mean, cur)  # hollow where too few: the legend says so
    return Point(x.mean, y.mean * unit, low, high, label, marker, color, y.too_few, size, place)


def _plan_point(figures: dict, name: str, j: int, field: str, cur: str) -> Point | None:
    return _point(figures.get("spend"), figures.get(field), figures.get("budget"), cur, field,
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


def _curves(series: list[list[Point | None]], names: list[str], cur: str):
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
    _legend(fig, handles, [_short(n, 40) for n in names], "plan (points labelled with the budget"
            + ("; hollow: too few events to judge" if few else "") + ")")
    return fig


def _sweep_curves(series: list[list[Point | None]], cur: str):
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


def _optimize_curves(points: list[dict], current: float | None, proposed: float | None,
                     now: dict, then: dict, cur: str):
    """A campaign's response curve: every budget tried, the current one a circle and the
    proposed one a square (from the expected figures `then` where no point of the curve
    has that budget; likewise the current one from `now`)."""
    from matplotlib.lines import Line2D

    def at(budget: float | None, row: dict) -> bool:
        mean = _fig(row.get("budget")).mean
        return budget is not None and mean is not None and math.isclose(mean, budget, rel_tol=1e-6)

    rows = sorted((p for p in points if isinstance(p, dict)),
                  key=lambda p: _fig(p.get("budget")).mean or 0.0)
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
                point = _point(row.get("spend"), row.get(field), row.get("budget"), cur, field,
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


def _change_bars(ids: list, others: list[dict], cur: str, level: str):
    """Per campaign, each variant's change against the baseline in spend, conversions
    and incremental conversions: bars at the mean, whiskers over the interval."""
    import numpy as np
    from matplotlib.patches import Patch

    panels = (("spend", _unit("spend change", cur)), ("conversions", "conversions change"),
              ("incremental_conversions", "incremental conversions change"))
    n = max(len(ids), 1)
    fig = _figure(11, 1.2 + 0.3 * n * max(len(others), 1), left=_name_margin([_short(i) for i in ids]),
                  wspace=0.08)
    axes = fig.subplots(1, len(panels), sharey=True)
    height = 0.8 / max(len(others), 1)
    for ax, (field, label) in zip(axes, panels):
        for j, variant in enumerate(others):
            by_id = {c.get("id"): c for c in variant.get("campaigns") or []}
            ys, widths, below, above = [], [], [], []
            for i, cid in enumerate(ids):
                change = _fig(by_id.get(cid, {}).get(field)).change
                if change is None or change.mean is None:
                    continue
                ys.append(i - 0.4 + height * (j + 0.5))
                widths.append(change.mean)
                below.append(0.0 if change.low is None else max(0.0, change.mean - change.low))
                above.append(0.0 if change.high is None else max(0.0, change.high - change.mean))
            color = COLORS[(j + 1) % len(COLORS)]
            ax.barh(ys, widths, height=height * 0.9, color=color, xerr=np.array([below, above]),
                    error_kw={"elinewidth": 1, "capsize": 2, "ecolor": "#333"},
                    label=_short(variant.get("name"), 40))
        ax.axvline(0.0, color="grey", linewidth=0.8)
        ax.set_xlabel(label)
        ax.grid(True, axis="x", color="#eee", linewidth=0.8)
    axes[0].set_yticks(range(len(ids)), [_short(cid) for cid in ids])
    axes[0].set_ylim(len(ids) - 0.5, -0.5)  # the first campaign on top
    handles = [Patch(color=COLORS[(j + 1) % len(COLORS)]) for j in range(len(others))]
    _legend(fig, handles, [_short(v.get("name"), 40) for v in others],
            f"change against the current plan; whiskers: {level} interval")
    return fig


def _split_bars(ids: list, current: dict, proposed: dict, cur: str):
    """Per campaign, the current budget and the proposed one, labelled."""
    from matplotlib.patches import Patch

    fig = _figure(11, 1.0 + 0.5 * max(len(ids), 1), left=_name_margin([_short(i) for i in ids]),
                  top=0.4)
    ax = fig.subplots()
    for j, (split, color) in enumerate(((current, "#aaa"), (proposed, COLORS[1]))):
        for i, cid in enumerate(ids):
            value = _number(split.get(cid))
            if value is None:
                continue
            y = i - 0.2 + 0.4 * j
            ax.barh([y], [value], height=0.38, color=color)
            ax.annotate(_budget_label(value, cur), (value, y), xytext=(4, 0), textcoords="offset points",
                        ha="left", va="center", fontsize=7.5, color="#333")
    ax.set_yticks(range(len(ids)), [_short(cid) for cid in ids])
    ax.set_ylim(len(ids) - 0.5, -0.5)
    ax.margins(x=0.15)
    ax.set_xlabel(_unit("budget", cur))
    ax.grid(True, axis="x", color="#eee", linewidth=0.8)
    _legend(fig, [Patch(color="#aaa"), Patch(color=COLORS[1])], ["current", "proposed"])
    return fig
