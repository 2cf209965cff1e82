"""The tables `rtb` prints: a run's campaigns, a budget sweep, a strategy comparison, a
plan's variants and an optimised budget split.

Built from the report and summary dicts only, so what a table shows is what the JSON
files hold. Every table fits the width it is given without cutting a campaign id or a
number: it takes the most precise number formats that fit, then moves groups of
columns to a further block of rows (or leaves out the optional ones, which the JSON
holds); the sweep and plan tables print one block per campaign. Money is in the
scenario's currency, which every title names.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable, NamedTuple

from rich import box
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from rtb.errors import printable

ROMI_NOTE = ("ROMI = (revenue x margin - cost) / cost. Attributed ROMI counts the conversions"
             " whose last touch within the window was the campaign's, as an ad platform reports"
             " them; incr. ROMI counts only the conversions the ads caused: act on incr. ROMI.")
WIDE_RUN_TABLE = 150  # columns from which a table shows every figure, in the boxed style
# rich's SIMPLE_HEAD drawn in ASCII: a narrow table that any terminal or file shows.
NARROW_BOX = box.Box("    \n    \n -- \n    \n    \n    \n    \n    \n", ascii=True)
DEFAULT_CURRENCY = "USD"  # a report or summary written before scenarios named one
SPENT = 0.995  # spend / budget from which a campaign's budget counts as spent
TOO_FEW = "too few"


# ---- formatting: one place for names, numbers, intervals and the currency ------------

def _text(value: object) -> str:
    """A name from the scenario as a table shows it: rich markup ("[/bold]") and control
    characters are shown as written, never interpreted."""
    return escape(printable(value))


def _currency(data: dict) -> str:
    return _text(data.get("currency") or DEFAULT_CURRENCY)


def _count(n: int, noun: str) -> str:
    """ "1 seed", "3 seeds"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _format(value: float, spec: str) -> str:
    """format(), but a figure that rounds to zero never shows a minus sign ("-0%")."""
    text = format(value, spec)
    if text.startswith("-") and not any(digit in text for digit in "123456789"):
        text = ("+" if spec.startswith("+") else "") + text[1:]
    return text


def _fmt(value, spec: str) -> str:
    return "-" if value is None else _format(value, spec)


def _signed(spec: str) -> str:
    return spec if spec.startswith("+") else "+" + spec


def _half(low, high) -> float | None:
    """Half an interval's width: the intervals rtb writes are symmetric about the mean
    (Student's t), so mean ± half is the interval."""
    return None if low is None or high is None else (high - low) / 2


def _plus_minus(half: float | None, spec: str) -> str:
    """"±12.3", or "" when there is no spread to show (one seed, or every seed alike)."""
    return "" if not half else "±" + _format(half, spec.lstrip("+"))


def _change(mean, low, high, spec: str) -> str:
    """A difference: its signed mean, then ± half its interval, e.g. "+4.1 (±2.0)"."""
    if mean is None:
        return "-"
    spread = _plus_minus(_half(low, high), spec)
    return _format(mean, _signed(spec)) + (f" ({spread})" if spread else "")


def _figure(f: dict | None, spec: str, change: bool = False) -> str:
    """A figure over seeds ({"mean", "low", "high"}, maybe "vs_current", "too_few"): the
    mean, under it ± half its interval, and with change=True under that the change
    against current. "too few" instead when the figure rests on too few conversions."""
    if f is None or f.get("mean") is None:
        return "-"
    if f.get("too_few"):
        return TOO_FEW
    lines = [_format(f["mean"], spec), _plus_minus(_half(f.get("low"), f.get("high")), spec)]
    vs = f.get("vs_current")
    if change and vs is not None:
        lines.append(_change(vs.get("mean"), vs.get("low"), vs.get("high"), spec))
    return "\n".join(lines).rstrip("\n")


class Formats(NamedTuple):
    """Number formats; a table takes the first set that fits its width."""

    money: str
    ratio: str  # ROMI-like fractions, shown as percentages


PRECISE = Formats(money=",.2f", ratio="+.1%")
SHORT_RATIOS = Formats(money=",.2f", ratio="+.0%")  # money keeps its cents at any width
FORMATS = [PRECISE, SHORT_RATIOS]


# ---- layout: columns in groups, blocks of rows, fitted to a width --------------------

@dataclass(frozen=True)
class _Row:
    cells: list[str]  # the key columns', then every group's columns in order
    style: str | None = None
    section: bool = False  # a separating line (blank in the narrow style) after the row


@dataclass(frozen=True)
class _Sheet:
    """A table's content before it meets a width: the key columns (shown in every
    block, left-justified), groups of right-justified value columns that stay side by
    side, and the rows, in blocks with an optional title each (e.g. one per campaign)."""

    keys: list[str]
    groups: list[list[str]]
    blocks: list[tuple[str | None, list[_Row]]]
    optional: frozenset[int] = frozenset()  # groups left out rather than given a block of their own


def _headers(groups: list[list[tuple]]) -> list[list[str]]:
    """The headers of groups of (header, ...) column specs."""
    return [[column[0] for column in group] for group in groups]


def _cell_width(text: str) -> int:
    return max((line.cell_len for line in Text.from_markup(text).split("\n")), default=0)


def _columns(sheet: _Sheet) -> list[tuple[str, int, str]]:
    """(header, width, justify) per column: every block's columns are equally wide."""
    headers = sheet.keys + [h for group in sheet.groups for h in group]
    rows = [row for _, block in sheet.blocks for row in block]
    return [(h, max([_cell_width(h)] + [_cell_width(r.cells[k]) for r in rows]),
             "left" if k < len(sheet.keys) else "right") for k, h in enumerate(headers)]


def _column_indices(sheet: _Sheet, groups: list[int]) -> list[int]:
    starts = [len(sheet.keys)]
    for group in sheet.groups:
        starts.append(starts[-1] + len(group))
    return list(range(len(sheet.keys))) + [k for g in groups for k in range(starts[g], starts[g + 1])]


def _table(sheet: _Sheet, groups: list[int], rows: list[_Row], narrow: bool,
           title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold",
                  box=NARROW_BOX if narrow else box.HEAVY_HEAD, pad_edge=not narrow,
                  collapse_padding=narrow, show_edge=not narrow)
    columns = _columns(sheet)
    picked = _column_indices(sheet, groups)
    for k in picked:
        header, width, justify = columns[k]
        # fold, never an ellipsis, should a column ever be squeezed; the layout avoids it.
        table.add_column(header, justify=justify, min_width=width, no_wrap=True, overflow="fold")
    for row in rows:
        table.add_row(*(row.cells[k] for k in picked), style=row.style, end_section=row.section)
    return table


def _width(sheet: _Sheet, groups: list[int], narrow: bool) -> int:
    """The width these groups' table takes, every block's rows in it."""
    rows = [row for _, block in sheet.blocks for row in block]
    console = Console(width=100_000, file=io.StringIO(), color_system=None)
    return Measurement.get(console, console.options, _table(sheet, groups, rows, narrow)).maximum


def _pages(sheet: _Sheet, width: int | None, narrow: bool) -> tuple[list[list[int]], bool]:
    """The groups each block of rows shows, in order, and whether an optional group
    was left out: groups join the last block while it fits the width."""
    every = list(range(len(sheet.groups)))
    if width is None or _width(sheet, every, narrow) <= width:
        return [every], False
    pages: list[list[int]] = [[]]
    dropped = False
    for g in range(len(sheet.groups)):
        if _width(sheet, pages[-1] + [g], narrow) <= width:
            pages[-1].append(g)
        elif g in sheet.optional:
            dropped = True
        elif pages[-1]:
            pages.append([g])
        else:  # wider than the width alone: the columns fold rather than lose a figure
            pages[-1].append(g)
    return pages, dropped


def _fit(build: Callable[[Formats], _Sheet], formats: list[Formats], width: int | None
         ) -> tuple[_Sheet, list[list[int]], bool, bool]:
    """The sheet, its pages, whether a group was dropped and whether in the narrow style:
    the first format set and style (boxed first from WIDE_RUN_TABLE columns) that needs
    the fewest blocks and leaves out no more groups than the others."""
    styles = [True] if _is_narrow(width) else [False, True]
    best = None
    for narrow in styles:
        for fmt in formats:
            sheet = build(fmt)
            pages, dropped = _pages(sheet, width, narrow)
            if best is None or (len(pages), dropped) < (len(best[1]), best[2]):
                best = (sheet, pages, dropped, narrow)
            if len(pages) == 1 and not dropped:
                return best
    return best


def _is_narrow(width: int | None) -> bool:
    return width is not None and width < WIDE_RUN_TABLE


class _Fitted:
    """A table laid out when it is printed, for the width it was given or, without one
    (or when the console is narrower), for the console's: it never meets a width it
    was not laid out for, so rich never has to squeeze it."""

    def __init__(self, layout: Callable[[int | None], RenderableType], width: int | None):
        self.layout, self.width = layout, width

    def __rich_console__(self, console: Console, options):
        width = options.max_width if self.width is None else min(self.width, options.max_width)
        yield self.layout(width)


def _render(build: Callable[[Formats], _Sheet], width: int | None, title: str, caption: str,
            formats: list[Formats], more: str = "", intro: str = "") -> RenderableType:
    """The sheet, laid out for the width when printed (_Fitted, _layout)."""
    return _Fitted(lambda w: _layout(build, w, title, caption, formats, more, intro), width)


def _layout(build: Callable[[Formats], _Sheet], width: int | None, title: str, caption: str,
            formats: list[Formats], more: str, intro: str) -> RenderableType:
    """The sheet at this width: the title, a table per block of rows and page of
    columns, and the caption. `more` is added to the caption when optional columns
    were left out (where to find them); `intro` is a paragraph under the title."""
    sheet, pages, dropped, narrow = _fit(build, formats, width)
    if dropped and more:
        caption = f"{caption} {more}"
    tables = [_table(sheet, page, rows, narrow, block_title if k == 0 else None)
              for block_title, rows in sheet.blocks for k, page in enumerate(pages)]
    parts: list[RenderableType] = [Text.from_markup(title, style="bold")]
    if intro:
        parts.append(Text.from_markup(intro))
    for table in tables:
        parts += [Text(), table]
    return Group(*parts, Text(), Text.from_markup(caption))


# ---- rtb run --------------------------------------------------------------------------

def _run_title(scenario: dict) -> str:
    scale = scenario.get("budget_scale", 1)
    what = "as written" if scale == 1 else f"budgets x{scale:g}"
    return f"{_text(scenario['name'])}: {what}, seed {scenario['seed']}; money in {_currency(scenario)}"


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
    narrow = _is_narrow(width)

    def build(fmt: Formats) -> _Sheet:
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
            return [label] + [spec(m) if key is None else _fmt(m[key], spec)
                              for group in groups for _, key, spec in group]

        rows = [_Row(cells(_text(c["id"]), c)) for c in report["campaigns"]]
        if rows:
            rows[-1] = _Row(rows[-1].cells, section=True)
        rows.append(_Row(cells("total", report["totals"]), style="bold"))
        return _Sheet(keys=["campaign"], groups=_headers(groups),
                      blocks=[(None, rows)], optional=frozenset({4}))

    caption = (f"used: the share of the budget spent; all = spent to within"
               f" {1 - SPENT:.1%}. {ROMI_NOTE}")
    return _render(build, width, _run_title(scenario), caption, FORMATS,
                   more="More figures: --out, --csv.")


# ---- rtb compare ----------------------------------------------------------------------

def compare_table(summary: dict, width: int | None = None) -> RenderableType:
    """Per strategy: the campaign's means over the seeds, and under each the paired
    difference from the baseline ± half its 95 % confidence interval."""
    scale = summary.get("budget_scale", 1)
    seeds = len(summary["seeds"])
    title = (f"{_text(summary['scenario'])}, campaign {_text(summary['campaign'])}: strategies on"
             f" the same traffic, {'as written' if scale == 1 else f'budgets x{scale:g}'},"
             f" {_count(seeds, 'seed')}; money in {_currency(summary)}")
    caption = ("Means over the seeds; under each, the mean paired difference from the baseline"
               f" ± half its 95 % confidence interval. {ROMI_NOTE}")
    differences = {d["strategy"]: d for d in summary["differences"]}

    def build(fmt: Formats) -> _Sheet:
        groups = [[("spend", "spend", fmt.money)],
                  [("conv", "conversions", ",.1f"), ("incr. conv", "incremental_conversions", ",.1f")],
                  [("ROMI", "romi", fmt.ratio), ("incr. ROMI", "incremental_romi", fmt.ratio)],
                  [("CPA", "cpa", fmt.money)],
                  [("impressions", "impressions", ",.0f"), ("clicks", "clicks", ",.1f")]]
        rows = []
        for strategy in summary["strategies"]:
            # (a class's folder is in compare.json; on screen it is the scenario's, as a rule)
            spec = "\n".join(_text(f"{k} = {v}") for k, v in strategy["strategy"].items()
                             if v is not None and k != "folder")
            diff = differences.get(strategy["name"])
            cells = [_text(strategy["name"]) + "\n" + spec]
            for group in groups:
                for _, key, fspec in group:
                    cell = _fmt(strategy["means"][key], fspec)
                    if diff is not None:
                        d = diff[key]
                        low, high = d["ci95"] if d.get("ci95") else (None, None)
                        cell += "\n" + _change(d["mean"], low, high, fspec)
                    cells.append(cell)
            rows.append(_Row(cells, section=True))
        return _Sheet(keys=["strategy"], groups=_headers(groups),
                      blocks=[(None, rows)])

    return _render(build, width, title, caption, FORMATS)


# ---- rtb sweep ------------------------------------------------------------------------

RANGED = {"conversions", "romi", "incremental_romi"}  # sweep figures shown with their range


def _range(figures: dict, name: str, spec: str, several: bool) -> str:
    """A sweep figure's mean, and under it the lowest to highest over the seeds."""
    text = _fmt(figures[name], spec)
    span = (figures.get("range") or {}).get(name)
    if several and span is not None:
        text += f"\n{_format(span[0], spec)} to {_format(span[1], spec)}"
    return text


def sweep_table(summary: dict, width: int | None = None) -> RenderableType:
    """Per campaign (a block each, then the totals) and budget scale: what the budget
    bought and returned (seed means, and for conversions and ROMI the lowest to
    highest over the seeds when there are several)."""
    by_scale = summary["by_scale"]
    counts = sorted({g["seeds"] for g in by_scale})
    # A column of seeds only when the scales' counts differ; else the title says it.
    seeds = f"{_count(counts[0], 'seed')} each" if len(counts) == 1 else "seeds as shown"
    scales = ", ".join(f"x{g['budget_scale']:g}" for g in by_scale)
    title = (f"{_text(summary['scenario'])}: budget sweep, budgets {scales}, {seeds};"
             f" money in {_currency(summary)}")
    caption = f"Means over each scale's seeds (under them, lowest to highest). {ROMI_NOTE}"
    blocks_ = [(_text(camp["id"]), [g["campaigns"][k] for g in by_scale])
               for k, camp in enumerate(by_scale[0]["campaigns"] if by_scale else [])]
    blocks_.append(("total", [g["totals"] for g in by_scale]))

    def build(fmt: Formats) -> _Sheet:
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
                rows.append(_Row([f"x{group['budget_scale']:g}"]
                                 + ([str(group["seeds"])] if len(counts) > 1 else [])
                                 + [_range(m, key, spec, several and key in RANGED)
                                    for g in groups for _, key, spec in g],
                                 section=several))
            blocks.append((name, rows))
        return _Sheet(keys=["budgets"] + (["seeds"] if len(counts) > 1 else []),
                      groups=_headers(groups),
                      blocks=blocks, optional=frozenset({3, 4}))

    return _render(build, width, title, caption, FORMATS,
                   more="More figures: sweep.json.")


# ---- rtb plan -------------------------------------------------------------------------

def _too_few_note(min_events) -> str:
    return (f"{TOO_FEW}: a ROMI or CPA resting on under {min_events} conversions per run on"
            " average, which a handful of sales would swing.")


def plan_table(summary: dict, width: int) -> RenderableType:
    """A plan (plan.json): per campaign, a block of rows, one per variant (current
    first), then one for the totals: budget, spend, conversions, ROMI and incremental
    ROMI, each the mean over the seeds with ± half its interval under it and, for a
    variant, the paired change against current under that. Then, when the plan has
    one, where the next money does the most (marginal_table)."""
    currency = _currency(summary)
    variants = summary["variants"]
    seeds = summary["seeds"]
    missing = summary.get("missing_seeds") or []
    title = (f"{_text(summary['scenario'])}: plan, {_count(len(variants), 'variant')} on"
             f" {_count(len(seeds), 'seed')}" + (f" ({len(missing)} not run yet)" if missing else "")
             + f"; money in {currency}")
    confidence = summary.get("confidence", 0.95)
    caption = (f"Each figure: the mean over the seeds, under it ± half its {confidence:.0%}"
               " interval; under that, for a variant, its change against current on the same"
               f" seeds (± half that interval). {_too_few_note(summary.get('min_events'))}"
               f" {ROMI_NOTE}")
    legend = "\n".join(f"  {_text(v['name'])}: " + (", ".join(_text(c) for c in v["changes"])
                                                      or "the scenario as written")
                        for v in variants)
    ids = [c["id"] for c in variants[0]["campaigns"]] if variants else []

    def build(fmt: Formats) -> _Sheet:
        groups = [[("budget", "budget", fmt.money)], [("spend", "spend", fmt.money)],
                  [("conv", "conversions", ",.1f")],
                  [("ROMI", "romi", fmt.ratio), ("incr. ROMI", "incremental_romi", fmt.ratio)],
                  [("incr. conv", "incremental_conversions", ",.1f"), ("CPA", "cpa", fmt.money)]]

        def rows(figures_of: Callable[[dict], dict | None]) -> list[_Row]:
            out = []
            for v in variants:
                figures = figures_of(v) or {}
                out.append(_Row([_text(v["name"])] + [
                    _figure(figures.get(key), spec, change=True)
                    for g in groups for _, key, spec in g], section=True))
            return out

        blocks = [(_text(cid), rows(lambda v, cid=cid: next(
                  (c for c in v["campaigns"] if c["id"] == cid), None))) for cid in ids]
        blocks.append(("total", rows(lambda v: v["totals"])))
        return _Sheet(keys=["variant"], groups=_headers(groups),
                      blocks=blocks, optional=frozenset({4}))

    parts = [_render(build, width, title, caption, FORMATS,
                     more="More figures: plan.json.", intro="Variants:\n" + legend)]
    if summary.get("marginal"):
        parts += [Text(), marginal_table(summary["marginal"], width, currency)]
    return Group(*parts)


def marginal_table(marginal: dict, width: int, currency: str = DEFAULT_CURRENCY) -> RenderableType:
    """A plan's marginal section: the campaigns ranked by what `step` more budget for
    each alone does to the whole plan, best first ("put the next money here")."""
    step = marginal.get("step")
    per = f"{marginal.get('per') or 100:,.10g} {currency}"
    title = (f"Where the next {per} does the most: each campaign's budget"
             + (f" {step:+.0%}" if step is not None else " raised") + " alone, best first")
    caption = (f"incr. conv / {per}: the conversions the extra budget caused, per {per} of it;"
               " incr. ROMI: (the extra incremental revenue x margin - the extra spend) / the"
               " extra budget; spent: the share of the extra budget spent. Each ± half its"
               " interval over the seeds.")

    def build(fmt: Formats) -> _Sheet:
        rows = []
        for k, c in enumerate(marginal["campaigns"], start=1):
            extra = c.get("extra_budget")
            spent = c.get("spent_share")
            if spent is None and extra and c.get("spend"):  # the extra spend / the extra budget
                spent = {k: None if v is None else v / extra for k, v in c["spend"].items()}
            rows.append(_Row([str(c.get("rank", k)), _text(c["id"]), _fmt(extra, fmt.money),
                              _figure(spent, ".0%"),
                              _figure(c.get("incremental_conversions_per_100"), ",.2f"),
                              _figure(c.get("incremental_romi"), fmt.ratio),
                              _figure(c.get("conversions_per_100"), ",.2f"),
                              _figure(c.get("romi"), fmt.ratio)], section=True))
        return _Sheet(keys=["#", "campaign"],
                      groups=[["extra\nbudget", "spent"], [f"incr. conv\n/ {per}"], ["incr.\nROMI"],
                              [f"conv\n/ {per}", "ROMI"]],
                      blocks=[(None, rows)], optional=frozenset({3}))

    return _render(build, width, title, caption, FORMATS, intro=_text(marginal.get("advice") or ""))


# ---- rtb optimize ---------------------------------------------------------------------

def optimize_table(result: dict, width: int) -> RenderableType:
    """An optimised budget split (rtb optimize's JSON): per campaign the current budget
    and the proposed one, the expected conversions and ROMI under each (mean ± half its
    interval), then the expected gain and, for a goal, whether it can be reached."""
    currency = _currency(result)
    incremental = bool(result.get("incremental"))
    objective = result.get("objective", "profit")
    aim = ("incremental " if incremental else "attributed ") + _text(objective)
    total = result.get("total_budget")
    goal = result.get("goal")
    if goal:
        title = (f"{_text(result['scenario'])}: the smallest budget for {_goal_text(goal, result)}:"
                 f" {_fmt(total, ',.2f')} {currency}, split as below")
    else:
        title = (f"{_text(result['scenario'])}: the budget split with the most {aim},"
                 f" {_fmt(total, ',.2f')} {currency} in all")
    conv_key, romi_key = (("incremental_conversions", "incremental_romi") if incremental
                          else ("conversions", "romi"))
    other_romi = "romi" if incremental else "incremental_romi"
    # Headers on three lines at most ("incr.", "ROMI", "now"): the cells are narrower.
    conv, romi = ("incr.\nconv", "incr.\nROMI") if incremental else ("conv", "ROMI")
    caption = (f"now: the current split; new: the proposed one. Expected figures: the mean over"
               f" the seeds, under it ± half its interval. {ROMI_NOTE}")
    current = {c["id"]: c for c in result["current"]["campaigns"]}
    expected = {c["id"]: c for c in result["expected"]["campaigns"]}
    ids = list(result.get("current_split") or current)
    for cid in list(result.get("split") or {}) + list(expected):
        if cid not in ids:
            ids.append(cid)

    def build(fmt: Formats) -> _Sheet:
        def row(label: str, now_budget, new_budget, now: dict, new: dict) -> list[str]:
            change = (None if now_budget is None or new_budget is None else new_budget - now_budget)
            return [label, _fmt(now_budget, fmt.money), _fmt(new_budget, fmt.money),
                    "-" if change is None else _format(change, _signed(fmt.money)),
                    _figure(now.get(conv_key), ",.1f"), _figure(new.get(conv_key), ",.1f"),
                    _figure(now.get(romi_key), fmt.ratio), _figure(new.get(romi_key), fmt.ratio),
                    _figure(now.get(other_romi), fmt.ratio), _figure(new.get(other_romi), fmt.ratio)]

        split, current_split = result.get("split") or {}, result.get("current_split") or {}
        rows = [_Row(row(_text(cid), current_split.get(cid), split.get(cid),
                         current.get(cid, {}), expected.get(cid, {}))) for cid in ids]
        if rows:
            rows[-1] = _Row(rows[-1].cells, section=True)
        rows.append(_Row(row("total", sum(current_split.values()) if current_split else None,
                             sum(split.values()) if split else None,
                             result["current"].get("totals") or {},
                             result["expected"].get("totals") or {}), style="bold"))
        other = "ROMI" if incremental else "incr.\nROMI"
        return _Sheet(keys=["campaign"],
                      groups=[["budget\nnow", "budget\nnew", "change"],
                              [f"{conv}\nnow", f"{conv}\nnew"], [f"{romi}\nnow", f"{romi}\nnew"],
                              [f"{other}\nnow", f"{other}\nnew"]],
                      blocks=[(None, rows)], optional=frozenset({3}))

    if goal and not goal.get("reachable"):  # no split to show: the verdict and why
        return Group(Text.from_markup(f"{_text(result['scenario'])}: a budget for {_goal_text(goal, result)}",
                                      style="bold"), Text(), *_outcome(result, aim, currency, objective))
    table = _render(build, width, title, caption, FORMATS)
    return Group(table, Text(), *_outcome(result, aim, currency, objective))


def _goal_text(goal: dict, result: dict) -> str:
    kind = "incremental " if goal.get("incremental", result.get("incremental")) else ""
    want = f"{_fmt(goal.get('target_conversions'), ',.0f')} {kind}conversions"
    if goal.get("min_romi") is not None:
        want += f" at a ROMI of at least {goal['min_romi']:+.0%}"
    return want


def _outcome(result: dict, aim: str, currency: str, objective: str) -> list[Text]:
    """The expected gain with its interval and the spend it implies, or why no better
    split is proposed; for a goal, whether it can be reached and why (wrapped text)."""
    spec = ",.1f" if objective == "conversions" else ",.2f"
    unit = "" if objective == "conversions" else f" {currency}"

    def amount(figure: dict) -> str:
        text = f"{_format(figure['mean'], _signed(spec))}{unit}"
        if figure.get("low") is not None and figure.get("high") is not None:
            text += (f" (interval {_format(figure['low'], _signed(spec))} to"
                     f" {_format(figure['high'], _signed(spec))}{unit})")
        return text

    lines = []
    goal = result.get("goal")
    if goal and not goal.get("reachable"):
        lines.append(f"Not reachable. {_text(goal.get('reason') or '')}".strip())
        return [Text.from_markup(line) for line in lines]
    gain, best = result.get("gain") or {}, result.get("best_found") or {}
    if not result.get("found_better", True):
        tried = (best.get("gain") or {})
        lines.append("No better split found: keep the current one."
                     + (f" The best the search found gained {amount(tried)} in {aim} on the"
                        " fresh seeds." if tried.get("mean") is not None and
                        best.get("split") != result.get("split") else ""))
    elif gain.get("mean") is not None:
        text = f"Expected gain in {aim} on fresh seeds: {amount(gain)}."
        if gain.get("low") is not None and gain["low"] <= 0:
            text += " The interval includes no gain: not a sure improvement; more --confirm-seeds narrow it."
        lines.append(text)
        now = ((result.get("current") or {}).get("totals") or {}).get("spend") or {}
        new = ((result.get("expected") or {}).get("totals") or {}).get("spend") or {}
        if now.get("mean") is not None and new.get("mean") is not None:
            left = (total := result.get("total_budget") or 0) - new["mean"]
            lines.append(f"Expected spend: {_fmt(now['mean'], ',.2f')} {currency} now,"
                         f" {_fmt(new['mean'], ',.2f')} {currency} with the new split"
                         + (f"; {_fmt(left, ',.2f')} {currency} of the {_fmt(total, ',.2f')}"
                            " stays unspent where no campaign turns it into more"
                            f" {_text(objective)}" if left > 0.05 * total else "") + ".")
    if goal:
        lines.append(f"Goal ({_goal_text(goal, result)}): reachable."
                     + (f" {_text(goal['reason'])}" if goal.get("reason") else ""))
    return [Text.from_markup(line) for line in lines]
