"""One self-contained HTML page for a plan, an optimisation or a budget sweep: tables and inline SVG charts.

The page fetches nothing (no script, no font, no image, no link outside itself; a
Content-Security-Policy forbids them as a second line of defence) so it can be mailed
or opened offline. The charts (rtb.html_charts) are drawn by matplotlib (the optional
'plot' extra), without pyplot, as SVG put into the page; text stays text, so it can be
found and copied. Every string from the input (scenario, campaign and plan names, the
currency) is shown through rtb.errors.printable and HTML-escaped (rtb.html_format): a
name is never markup. Same input, same bytes: no dates, and the SVG ids come from a
fixed salt per chart.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rtb.atomic import write_atomic
from rtb.errors import InputError
from rtb.html_charts import (COLORS, CURVE_PANELS, Charts, change_bars, chart_point, optimize_curves,
                             plan_curves, plan_point, split_bars, sweep_curves)
from rtb.html_format import (NA, Fig, as_fig, campaign_ids, currency_of, escaped, finite_number,
                             format_value, interval_text, percent_level, plain_text, ranged_figs,
                             scale_label, seeds_text)

PAGE_KINDS = ("plan", "sweep", "optimize")
SUFFIXES = (".html", ".htm")
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

# (field, row label, kind): kind says how to show it ("money" in the currency,
# "count", "ratio" as a percentage whose changes are percentage points).
PLAN_FIELDS = (("budget", "Budget", "money"), ("spend", "Spend", "money"),
               ("impressions", "Impressions", "count"), ("reach", "Reach", "count"),
               ("conversions", "Conversions", "count"),
               ("incremental_conversions", "Incremental conversions", "count"),
               ("revenue", "Revenue", "money"), ("romi", "ROMI (attributed)", "ratio"),
               ("incremental_romi", "Incremental ROMI", "ratio"))
# The plan page's reach and frequency in ids (what an ad platform shows) and in people
# (the truth); a figure the input lacks (an older plan.json) is left out of the table.
PEOPLE_FIELDS = (("frequency", "Frequency (per id)", "count"),
                 ("reach_people", "Reach in people", "count"),
                 ("frequency_people", "Frequency per person", "count"),
                 ("cap_leakage", "Cap leakage (impressions past a cap, per person)", "count"))
ADVERTISER_FIELDS = (("impressions", "Impressions", "count"), ("reach", "Reach (ids)", "count"),
                     *PEOPLE_FIELDS[:3],
                     ("cap_leakage", "Leakage past the advertiser's cap", "count"))

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
    cur = currency_of(summary)
    level = percent_level(finite_number(summary.get("confidence")) or 0.95)
    variants = [v for v in summary.get("variants") or [] if isinstance(v, dict)]
    if not variants:
        variants = [{"name": "current", "campaigns": [], "totals": {}}]
    names = [plain_text(v.get("name")) for v in variants]
    seeds = list(summary.get("seeds") or [])
    others = variants[1:]
    charts = Charts(f"plan-{summary.get('scenario')}")
    body = [f"<h1>{escaped(summary.get('scenario'))}: {escaped(names[0])} against "
            f"{escaped(', '.join(names[1:]) or 'nothing else')}</h1>",
            f'<p class="meta">{escaped(seeds_text(seeds))} · money in {escaped(cur or "the scenario currency")}'
            f" · {level} intervals · &quot;too few&quot; below {escaped(summary.get('min_events') or NA)}"
            " events</p>"]
    missing = summary.get("missing_seeds") or []
    if missing:
        body.append(f'<p class="warn">Seeds without results (left out of every figure): '
                    f"{escaped(', '.join(map(str, missing)))}</p>")
    body.append(_how_to_read(level, names[0], summary.get("min_events")))
    body.append("<h2>What was compared</h2><ul>")
    for variant in variants:
        changes = [plain_text(c) for c in variant.get("changes") or []]
        body.append(f"<li><b>{escaped(variant.get('name'))}</b>: "
                    f"{escaped('; '.join(changes)) if changes else 'the scenario as it is'}</li>")
    body.append("</ul>")
    ids = campaign_ids(variants)
    body.append(_nav(ids))
    body.append("<h2>All campaigns</h2>")
    body.append(_comparison_table([(n, v.get("totals") or {}) for n, v in zip(names, variants)],
                                  PLAN_FIELDS + PEOPLE_FIELDS, cur, level))
    body.extend(_advertiser_sections(variants, names, cur, level))
    if others and ids:
        body.append(f"<h2>Change against {escaped(names[0])}, per campaign</h2>")
        body.append(f"<p>Bars: the mean paired difference; whiskers: its {level} interval.</p>")
        body.append(charts.add(change_bars, ids, others, cur, level))
    marginal = summary.get("marginal")
    if marginal:
        body.append(_marginal_section(marginal, cur, level))
    by_id = [{c.get("id"): c for c in v.get("campaigns") or [] if isinstance(c, dict)} for v in variants]
    for k, cid in enumerate(ids):
        rows = [(n, figures.get(cid) or {}) for n, figures in zip(names, by_id)]
        advertiser = next((r.get("advertiser") for _, r in rows if r.get("advertiser")), None)
        body.append(f'<h2 id="c{k}">{escaped(cid)}'
                    + (f' <small>({escaped(advertiser)})</small>' if advertiser else "") + "</h2>")
        series = [[plan_point(figures, name, j, field, cur) for j, (name, figures) in enumerate(rows)]
                  for field, _, _ in CURVE_PANELS]
        body.append(charts.add(plan_curves, series, [n for n, _ in rows], cur))
        body.append(_comparison_table(rows, PLAN_FIELDS + PEOPLE_FIELDS, cur, level))
    return _page(f"{plain_text(summary.get('scenario'))}: plan", body)


def _advertiser_sections(variants: list[dict], names: list[str], cur: str, level: str) -> list[str]:
    """Per advertiser, de-duplicated over its campaigns: reach and frequency in ids and
    in people, each variant against the first."""
    by_id = [{a.get("id"): a for a in v.get("advertisers") or [] if isinstance(a, dict)}
             for v in variants]
    ids = list(dict.fromkeys(aid for figures in by_id for aid in figures))
    if not ids:
        return []
    out = ["<h2>Reach and frequency per advertiser</h2>",
           ("<p>De-duplicated over each advertiser's campaigns. Ids (cookies, device ids,"
            " logins) are what an ad platform counts; people are the real audience: one person"
            " seen under several ids (a new cookie, a second device) counts once in people and"
            " several times in ids, and may see more ads than a frequency cap allows.</p>")]
    for aid in ids:
        out.append(f"<h3>{escaped(aid)}</h3>")
        out.append(_comparison_table([(n, figures.get(aid) or {}) for n, figures in zip(names, by_id)],
                                     ADVERTISER_FIELDS, cur, level))
    return out


def render_sweep_page(summary: dict) -> bytes:
    """The page for sweep.json: per campaign, what each budget scale buys and returns
    (means over the seeds, with the range from the lowest to the highest seed)."""
    cur = currency_of(summary)
    groups = sorted(summary.get("by_scale") or [], key=lambda g: finite_number(g.get("budget_scale")) or 0.0)
    charts = Charts(f"sweep-{summary.get('scenario')}")
    seeds = max((g.get("seeds") or 0 for g in groups), default=0)
    scales = [finite_number(g.get("budget_scale")) for g in groups]
    body = [f"<h1>{escaped(summary.get('scenario'))}: budget sweep</h1>",
            f'<p class="meta">Budget scales {escaped(", ".join(scale_label(s) for s in scales) or NA)}'
            f" · {seeds} seed{'s' if seeds != 1 else ''} per scale"
            f" · money in {escaped(cur or 'the scenario currency')}</p>"]
    missing = summary.get("missing") or []
    if missing:
        body.append(f'<p class="warn">{len(missing)} run{"s" if len(missing) != 1 else ""} without'
                    f" a report (left out): {escaped(', '.join(map(str, missing)))}</p>")
    body.append('<div class="read"><p><b>How to read this.</b> Every budget is scaled by the same'
                " factor; each figure is the mean over the seeds (simulated runs with different"
                " random draws), and the small line under it, like the bars in the charts, the range"
                " from the lowest to the highest seed. Each point is labelled with the campaign's"
                " budget; the circle is the scenario's own budget (scale 1), the squares the other"
                " scales.</p><p>Incremental ROMI is what the ads caused: act on it. Attributed ROMI"
                " is what an ad platform reports.</p></div>")
    ids = campaign_ids([{"campaigns": g.get("campaigns") or []} for g in groups])
    body.append(_nav(ids))
    fields = [f for f in PLAN_FIELDS if f[0] != "incremental_conversions"]
    body.append("<h2>All campaigns</h2>")
    body.append(_scale_table([(s, ranged_figs(g.get("totals") or {})) for s, g in zip(scales, groups)],
                             fields, cur))
    for k, cid in enumerate(ids):
        rows = [(s, ranged_figs(next((c for c in g.get("campaigns") or [] if c.get("id") == cid), {})))
                for s, g in zip(scales, groups)]
        body.append(f'<h2 id="c{k}">{escaped(cid)}</h2>')
        points = []
        for field, _, _ in CURVE_PANELS:
            points.append([chart_point(figures.get("spend") if field == "conversions" else Fig(s, None, None),
                                       figures.get(field), figures.get("budget"), cur, field,
                                       "o" if s == 1 else "s", COLORS[0], place=j % 2)
                           for j, (s, figures) in enumerate(rows) if s is not None])
        body.append(charts.add(sweep_curves, points, cur))
        body.append(_scale_table(rows, fields, cur))
    return _page(f"{plain_text(summary.get('scenario'))}: budget sweep", body)


def render_optimize_page(result: dict) -> bytes:
    """The page for an optimisation: the proposed split of the budget against the
    current one, what each is expected to give, the gain, the goal and the curves."""
    cur = currency_of(result)
    objective = plain_text(result.get("objective") or "profit")
    incremental = bool(result.get("incremental"))
    what = ("incremental " if incremental else "") + objective
    gain_kind = "count" if objective == "conversions" else "money"
    charts = Charts(f"optimize-{result.get('scenario')}")
    split = result.get("split") or {}
    current_split = result.get("current_split") or {}
    expected, current = result.get("expected") or {}, result.get("current") or {}
    body = [f"<h1>{escaped(result.get('scenario'))}: best split of "
            f"{_money(result.get('total_budget'), cur)} for {escaped(what)}</h1>",
            f'<p class="meta">Objective: {escaped(what)} · money in {escaped(cur or "the scenario currency")}</p>']
    gain = as_fig(result.get("gain"))
    gain_text = (f"Expected gain in {escaped(what)} over the current split: "
                 f"<b>{escaped(format_value(gain.mean, gain_kind, signed=True, cur=cur))}</b>"
                 + (f" ({escaped(interval_text(gain, gain_kind, True))})" if gain.low is not None else ""))
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
                              *campaign_ids([expected, current])]))
    body.append(_nav(ids))
    if ids:
        body.append("<h2>The split</h2>")
        body.append(charts.add(split_bars, ids, current_split, split, cur))
    body.append("<h2>All campaigns</h2>")
    body.append(_comparison_table([("current", current.get("totals") or {}),
                                   ("proposed", expected.get("totals") or {})], PLAN_FIELDS, cur, "95 %"))
    curves = {c.get("id"): c.get("points") or [] for c in result.get("curves") or []
              if isinstance(c, dict)}
    now = {c.get("id"): c for c in current.get("campaigns") or []}
    then = {c.get("id"): c for c in expected.get("campaigns") or []}
    for k, cid in enumerate(ids):
        body.append(f'<h2 id="c{k}">{escaped(cid)}</h2>')
        body.append(f"<p>Budget: {_money(current_split.get(cid), cur)} → "
                    f"<b>{_money(split.get(cid), cur)}</b></p>")
        if curves.get(cid):
            body.append(charts.add(optimize_curves, curves[cid], finite_number(current_split.get(cid)),
                                   finite_number(split.get(cid)), now.get(cid), then.get(cid), cur))
        body.append(_comparison_table([("current", now.get(cid) or {}), ("proposed", then.get(cid) or {})],
                                      PLAN_FIELDS, cur, "95 %"))
    return _page(f"{plain_text(result.get('scenario'))}: optimised split", body)

# ---------------------------------------------------------------------------------
# HTML pieces

def _money(value: object, cur: str) -> str:
    """An amount from the input, in the currency, escaped for the page."""
    return escaped(format_value(finite_number(value), "money", cur=cur))


def _page(title: str, body: list[str]) -> bytes:
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{escaped(title)}</title>\n<link rel=\"icon\" href=\"data:,\">\n"
            f"<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body)
            + "\n</body>\n</html>\n").encode("utf-8")


def _how_to_read(level: str, baseline: str, min_events: object) -> str:
    return ('<div class="read"><p><b>How to read this.</b> Each figure is the mean over the seeds'
            " (simulated runs with different random draws); the small line under it is its"
            f" {level} interval, the range the true mean lies in at that confidence. A change"
            f" against {escaped(baseline)} is the paired difference (each seed under both plans) with"
            " its own interval; it is in bold where that interval excludes zero: a change"
            " unlikely to be chance. ROMI +25 % means each unit spent came back as 1.25 units of margin.</p>"
            "<p><b>Incremental ROMI</b> is what the ads caused (the sales that would not have"
            " happened without them): act on it. <b>Attributed ROMI</b> is what an ad platform"
            " reports (every sale after an ad counted): it flatters ads shown to people who would"
            f" have bought anyway. &quot;too few&quot;: fewer than {escaped(min_events or NA)} events"
            " behind the figure, too few to judge it.</p></div>")


def _nav(ids: list) -> str:
    links = " ".join(f'<a href="#c{k}">{escaped(cid)}</a>' for k, cid in enumerate(ids))
    return f"<nav><b>Campaigns:</b> {links}</nav>" if ids else ""


def _cell(f: Fig, kind: str, cur: str, spread: str) -> str:
    if f.too_few:
        return '<td class="few" title="too few events to judge this figure">too few</td>'
    if f.mean is None:
        return f'<td class="na">{NA}</td>'
    interval = interval_text(f, kind, False)
    return (f'<td><span class="v">{escaped(format_value(f.mean, kind, cur=cur))}</span>'
            + (f'<span class="ci">{escaped(spread)}: {escaped(interval)}</span>' if interval else "")
            + "</td>")


def _change_cell(f: Fig, base: Fig, kind: str, cur: str, spread: str) -> str:
    if f.too_few or base.too_few:
        return '<td class="few" title="too few events to judge this figure">too few</td>'
    change = f.change
    if change is None and f.mean is not None and base.mean is not None:
        change = Fig(f.mean - base.mean, None, None)  # only the means are known: no interval
    if change is None or change.mean is None:
        return f'<td class="na">{NA}</td>'
    interval = interval_text(change, kind, True)
    sure = interval and (change.low > 0 or change.high < 0)
    return (('<td class="sure">' if sure else "<td>") + '<span class="v">'
            + f"{escaped(format_value(change.mean, kind, True, cur))}</span>"
            + (f'<span class="ci">{escaped(spread)}: {escaped(interval)}</span>' if interval else "")
            + "</td>")


def _comparison_table(columns: list[tuple[str, dict]], fields: tuple, cur: str, level: str) -> str:
    """Rows: the figures; columns: the baseline, then each other plan and its change."""
    figs = [{name: as_fig(raw.get(name)) for name, _, _ in fields} for _, raw in columns]
    head = f'<th class="name">figure</th><th>{escaped(columns[0][0])}</th>'
    for name, _ in columns[1:]:
        head += f"<th>{escaped(name)}</th><th>change vs {escaped(columns[0][0])}</th>"
    rows = []
    for name, label, kind in fields:
        if all(f[name].mean is None and not f[name].too_few for f in figs) and not any(
                name in raw for _, raw in columns):
            continue  # a figure this input does not have at all
        base = figs[0][name]
        cells = _cell(base, kind, cur, level)
        for f in figs[1:]:
            cells += _cell(f[name], kind, cur, level) + _change_cell(f[name], base, kind, cur, level)
        rows.append(f'<tr><td class="name">{escaped(label)}</td>{cells}</tr>')
    return f'<div class="wide"><table><tr>{head}</tr>\n' + "\n".join(rows) + "</table></div>"


def _scale_table(rows: list[tuple[float | None, dict]], fields: list, cur: str) -> str:
    """A sweep's table: one row per budget scale, one column per figure."""
    head = '<th class="name">scale</th>' + "".join(f"<th>{escaped(label)}</th>" for _, label, _ in fields)
    lines = []
    for scale, figures in rows:
        cells = "".join(_cell(figures.get(name, Fig(None, None, None)), kind, cur, "range")
                        for name, _, kind in fields)
        lines.append(f'<tr><td class="name">{escaped(scale_label(scale))}</td>{cells}</tr>')
    return f'<div class="wide"><table><tr>{head}</tr>\n' + "\n".join(lines) + "</table></div>"


def _marginal_section(marginal: dict, cur: str, level: str) -> str:
    step = finite_number(marginal.get("step"))
    per = f"100 {cur}".strip()
    columns = (("conversions_per_100", f"conversions per extra {per}", "count"),
               ("incremental_conversions_per_100", f"incremental conversions per extra {per}", "count"),
               ("spend", "extra spend", "money"), ("conversions", "extra conversions", "count"),
               ("romi", "ROMI of the extra", "ratio"),
               ("incremental_romi", "incremental ROMI of the extra", "ratio"))
    head = ('<th>rank</th><th class="name">campaign</th><th>extra budget</th>'
            + "".join(f"<th>{escaped(label)}</th>" for _, label, _ in columns))
    lines = []
    for rank, row in enumerate(marginal.get("campaigns") or [], 1):
        cells = "".join(_cell(as_fig(row.get(name)), kind, cur, level) for name, _, kind in columns)
        lines.append(f'<tr><td>{rank}</td><td class="name">{escaped(row.get("id"))}</td>'
                     f"<td>{_money(row.get('extra_budget'), cur)}</td>{cells}</tr>")
    step_text = f" by {step * 100:g} %" if step is not None else ""
    return ("<h2>Where the next money goes furthest</h2>"
            f"<p>Each campaign's budget raised{escaped(step_text)} on its own, the others as they are;"
            " ranked best first. What the extra money buys is the difference it makes, with its"
            f" {level} interval.</p>"
            f'<div class="wide"><table><tr>{head}</tr>\n' + "\n".join(lines) + "</table></div>")


def _goal_text(goal: dict) -> str:
    target = finite_number(goal.get("target_conversions"))
    target = format_value(target, "count") if target is None or target % 1 else f"{target:,.0f}"
    min_romi = finite_number(goal.get("min_romi"))
    what = f"{target} conversions" + (f" at a ROMI of at least {format_value(min_romi, 'ratio')}"
                                      if min_romi is not None else "")
    reachable = bool(goal.get("reachable"))
    reason = plain_text(goal.get("reason") or "")
    return (f'<p class="{"good" if reachable else "warn"}">Goal: {escaped(what)}: '
            f"<b>{'reachable' if reachable else 'not reachable'}</b>"
            + (f". {escaped(reason)}" if reason else "") + "</p>")
