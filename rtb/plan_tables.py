"""The terminal tables of planning: a plan's variants per campaign (plan_table) and, when a
variant changes the supply side, per publisher (publisher_table), where the next money
does the most (marginal_table) and an optimised budget split with its expected gain and,
for a goal, whether it can be reached (optimize_table). Each figure is a mean over seeds
with ± half its interval; laid out by rtb.table_layout."""

from __future__ import annotations

from typing import Callable

from rich.console import Group, RenderableType
from rich.text import Text

from rtb.table_format import (DEFAULT_CURRENCY, FORMATS, ROMI_NOTE, TOO_FEW, Formats, currency_of, figure_text,
                              format_number, format_or_dash, plural, safe_text, signed_spec)
from rtb.table_layout import Row, Sheet, fitted_table, headers_of


# ---- rtb plan -------------------------------------------------------------------------

def _too_few_note(min_events) -> str:
    return (f"{TOO_FEW}: a ROMI or CPA resting on under {min_events} conversions per run on"
            " average, which a handful of sales would swing.")


def plan_table(summary: dict, width: int) -> RenderableType:
    """A plan (plan.json): per campaign, a block of rows, one per variant (current
    first), then one for the totals: budget, spend, conversions, ROMI and incremental
    ROMI (and, where the width allows, incremental conversions, CPA, reach in ids and
    in people and frequency per person), each the mean over the seeds with ± half its
    interval under it and, for a variant, the paired change against current under
    that. Then, when the plan has one, where the next money does the most
    (marginal_table)."""
    currency = currency_of(summary)
    variants = summary["variants"]
    seeds = summary["seeds"]
    missing = summary.get("missing_seeds") or []
    title = (f"{safe_text(summary['scenario'])}: plan, {plural(len(variants), 'variant')} on"
             f" {plural(len(seeds), 'seed')}" + (f" ({len(missing)} not run yet)" if missing else "")
             + f"; money in {currency}")
    confidence = summary.get("confidence", 0.95)
    caption = (f"Each figure: the mean over the seeds, under it ± half its {confidence:.0%}"
               " interval; under that, for a variant, its change against current on the same"
               f" seeds (± half that interval). {_too_few_note(summary.get('min_events'))}"
               f" {ROMI_NOTE}")
    legend = "\n".join(f"  {safe_text(v['name'])}: " + (", ".join(safe_text(c) for c in v["changes"])
                                                        or "the scenario as written")
                        for v in variants)
    ids = [c["id"] for c in variants[0]["campaigns"]] if variants else []

    def build(fmt: Formats) -> Sheet:
        groups = [[("budget", "budget", fmt.money)], [("spend", "spend", fmt.money)],
                  [("conv", "conversions", ",.1f")],
                  [("ROMI", "romi", fmt.ratio), ("incr. ROMI", "incremental_romi", fmt.ratio)],
                  [("incr. conv", "incremental_conversions", ",.1f"), ("CPA", "cpa", fmt.money)],
                  # Ids (what an ad platform counts) beside people (the truth).
                  [("reach", "reach", ",.0f"), ("people", "reach_people", ",.0f"),
                   ("freq/person", "frequency_people", ",.2f")]]

        def rows(figures_of: Callable[[dict], dict | None]) -> list[Row]:
            out = []
            for v in variants:
                figures = figures_of(v) or {}
                out.append(Row([safe_text(v["name"])] + [
                    figure_text(figures.get(key), spec, change=True)
                    for g in groups for _, key, spec in g], section=True))
            return out

        blocks = [(safe_text(cid), rows(lambda v, cid=cid: next(
                  (c for c in v["campaigns"] if c["id"] == cid), None))) for cid in ids]
        blocks.append(("total", rows(lambda v: v["totals"])))
        return Sheet(keys=["variant"], groups=headers_of(groups),
                     blocks=blocks, optional=frozenset({4, 5}))

    parts = [fitted_table(build, width, title, caption, FORMATS,
                          more="More figures: plan.json.", intro="Variants:\n" + legend)]
    if changes_supply(summary) and any(v.get("publishers") for v in variants):
        parts += [Text(), publisher_table(summary, width)]
    if summary.get("marginal"):
        parts += [Text(), marginal_table(summary["marginal"], width, currency)]
    return Group(*parts)


# Changes of the supply side (rtb.changes: "set PATH=VALUE").
SUPPLY = ("set publishers.", "set publishers[", "set ssps.", "set ssps[")


def changes_supply(summary: dict) -> bool:
    """Does a variant of the plan change a publisher or an SSP?"""
    return any(str(c).startswith(SUPPLY) for v in summary["variants"] for c in v["changes"])


def publisher_table(summary: dict, width: int) -> RenderableType:
    """A plan's variants per publisher: revenue, impressions, fill rate, average price and
    the share of requests sold anonymously, each the mean over the seeds with ± half its
    interval and, for a variant, its change against current."""
    currency = currency_of(summary)
    variants = summary["variants"]
    title = f"Publishers; money in {currency}"
    caption = ("revenue: what the publisher kept (after the exchange's and its SSP's fees);"
               " price: the average clearing price, CPM; anonymous: the share of its requests"
               " sold anonymously; fill: impressions / requests.")
    ids = [p["id"] for p in variants[0].get("publishers", [])] if variants else []

    def build(fmt: Formats) -> Sheet:
        groups = [[("revenue", "revenue", fmt.money)], [("impr.", "impressions", ",.0f")],
                  [("price", "avg_price_cpm", ",.3f")], [("anonymous", "anonymous", ".0%")],
                  [("fill", "fill_rate", ".1%")]]

        def rows(pid: str) -> list[Row]:
            out = []
            for v in variants:
                figures = next((p for p in v.get("publishers", []) if p["id"] == pid), None) or {}
                out.append(Row([safe_text(v["name"])] + [
                    figure_text(figures.get(key), spec, change=True)
                    for g in groups for _, key, spec in g], section=True))
            return out

        return Sheet(keys=["variant"], groups=headers_of(groups),
                     blocks=[(safe_text(pid), rows(pid)) for pid in ids], optional=frozenset({4}))

    return fitted_table(build, width, title, caption, FORMATS)


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

    def build(fmt: Formats) -> Sheet:
        rows = []
        for k, c in enumerate(marginal["campaigns"], start=1):
            extra = c.get("extra_budget")
            spent = c.get("spent_share")
            if spent is None and extra and c.get("spend"):  # the extra spend / the extra budget
                spent = {k: None if v is None else v / extra for k, v in c["spend"].items()}
            rows.append(Row([str(c.get("rank", k)), safe_text(c["id"]), format_or_dash(extra, fmt.money),
                             figure_text(spent, ".0%"),
                             figure_text(c.get("incremental_conversions_per_100"), ",.2f"),
                             figure_text(c.get("incremental_romi"), fmt.ratio),
                             figure_text(c.get("conversions_per_100"), ",.2f"),
                             figure_text(c.get("romi"), fmt.ratio)], section=True))
        return Sheet(keys=["#", "campaign"],
                     groups=[["extra\nbudget", "spent"], [f"incr. conv\n/ {per}"], ["incr.\nROMI"],
                             [f"conv\n/ {per}", "ROMI"]],
                     blocks=[(None, rows)], optional=frozenset({3}))

    return fitted_table(build, width, title, caption, FORMATS, intro=safe_text(marginal.get("advice") or ""))


# ---- rtb optimize ---------------------------------------------------------------------

def optimize_table(result: dict, width: int) -> RenderableType:
    """An optimised budget split (rtb optimize's JSON): per campaign the current budget
    and the proposed one, the expected conversions and ROMI under each (mean ± half its
    interval), then the expected gain and, for a goal, whether it can be reached."""
    currency = currency_of(result)
    incremental = bool(result.get("incremental"))
    objective = result.get("objective", "profit")
    aim = ("incremental " if incremental else "attributed ") + safe_text(objective)
    total = result.get("total_budget")
    goal = result.get("goal")
    if goal:
        title = (f"{safe_text(result['scenario'])}: the smallest budget for {_goal_text(goal, result)}:"
                 f" {format_or_dash(total, ',.2f')} {currency}, split as below")
    else:
        title = (f"{safe_text(result['scenario'])}: the budget split with the most {aim},"
                 f" {format_or_dash(total, ',.2f')} {currency} in all")
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

    def build(fmt: Formats) -> Sheet:
        def row(label: str, now_budget, new_budget, now: dict, new: dict) -> list[str]:
            change = (None if now_budget is None or new_budget is None else new_budget - now_budget)
            return [label, format_or_dash(now_budget, fmt.money), format_or_dash(new_budget, fmt.money),
                    "-" if change is None else format_number(change, signed_spec(fmt.money)),
                    figure_text(now.get(conv_key), ",.1f"), figure_text(new.get(conv_key), ",.1f"),
                    figure_text(now.get(romi_key), fmt.ratio), figure_text(new.get(romi_key), fmt.ratio),
                    figure_text(now.get(other_romi), fmt.ratio), figure_text(new.get(other_romi), fmt.ratio)]

        split, current_split = result.get("split") or {}, result.get("current_split") or {}
        rows = [Row(row(safe_text(cid), current_split.get(cid), split.get(cid),
                        current.get(cid, {}), expected.get(cid, {}))) for cid in ids]
        if rows:
            rows[-1] = Row(rows[-1].cells, section=True)
        rows.append(Row(row("total", sum(current_split.values()) if current_split else None,
                            sum(split.values()) if split else None,
                            result["current"].get("totals") or {},
                            result["expected"].get("totals") or {}), style="bold"))
        other = "ROMI" if incremental else "incr.\nROMI"
        return Sheet(keys=["campaign"],
                     groups=[["budget\nnow", "budget\nnew", "change"],
                             [f"{conv}\nnow", f"{conv}\nnew"], [f"{romi}\nnow", f"{romi}\nnew"],
                             [f"{other}\nnow", f"{other}\nnew"]],
                     blocks=[(None, rows)], optional=frozenset({3}))

    if goal and not goal.get("reachable"):  # no split to show: the verdict and why
        return Group(Text.from_markup(f"{safe_text(result['scenario'])}: a budget for {_goal_text(goal, result)}",
                                      style="bold"), Text(), *_outcome(result, aim, currency, objective))
    table = fitted_table(build, width, title, caption, FORMATS)
    return Group(table, Text(), *_outcome(result, aim, currency, objective))


def _goal_text(goal: dict, result: dict) -> str:
    kind = "incremental " if goal.get("incremental", result.get("incremental")) else ""
    want = f"{format_or_dash(goal.get('target_conversions'), ',.0f')} {kind}conversions"
    if goal.get("min_romi") is not None:
        want += f" at a ROMI of at least {goal['min_romi']:+.0%}"
    return want


def _outcome(result: dict, aim: str, currency: str, objective: str) -> list[Text]:
    """The expected gain with its interval and the spend it implies, or why no better
    split is proposed; for a goal, whether it can be reached and why (wrapped text)."""
    spec = ",.1f" if objective == "conversions" else ",.2f"
    unit = "" if objective == "conversions" else f" {currency}"

    def amount(figure: dict) -> str:
        text = f"{format_number(figure['mean'], signed_spec(spec))}{unit}"
        if figure.get("low") is not None and figure.get("high") is not None:
            text += (f" (interval {format_number(figure['low'], signed_spec(spec))} to"
                     f" {format_number(figure['high'], signed_spec(spec))}{unit})")
        return text

    lines = []
    goal = result.get("goal")
    if goal and not goal.get("reachable"):
        lines.append(f"Not reachable. {safe_text(goal.get('reason') or '')}".strip())
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
            lines.append(f"Expected spend: {format_or_dash(now['mean'], ',.2f')} {currency} now,"
                         f" {format_or_dash(new['mean'], ',.2f')} {currency} with the new split"
                         + (f"; {format_or_dash(left, ',.2f')} {currency} of the {format_or_dash(total, ',.2f')}"
                            " stays unspent where no campaign turns it into more"
                            f" {safe_text(objective)}" if left > 0.05 * total else "") + ".")
    if goal:
        lines.append(f"Goal ({_goal_text(goal, result)}): reachable."
                     + (f" {safe_text(goal['reason'])}" if goal.get("reason") else ""))
    return [Text.from_markup(line) for line in lines]
