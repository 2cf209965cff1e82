"""Text and numbers for the HTML pages (rtb.html, rtb.html_charts): what the input says, read
defensively (a figure may be a dict, a bare number, null or not finite), and shown for a
reader: every string through rtb.errors.printable, money in the currency, counts with
separators, ratios as percentages (their changes as percentage points)."""

from __future__ import annotations

import html
import math
import re
from typing import NamedTuple

from rtb.errors import printable

NA = "–"  # a figure that is not defined (a ROMI without spend) or not known


class Fig(NamedTuple):
    """One figure: its mean and interval (or range), "too few" events, and its change
    against the baseline (another Fig) where the input gives one."""
    mean: float | None
    low: float | None
    high: float | None
    too_few: bool = False
    change: "Fig | None" = None


def plain_text(value: object) -> str:
    """A string from the input, safe to show: control characters written as escapes."""
    return printable("" if value is None else value)


def escaped(value: object) -> str:
    return html.escape(plain_text(value), quote=True)


def short_name(value: object, limit: int = 30) -> str:
    """A name for a chart, where space is short; the tables have it in full."""
    text = plain_text(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def currency_of(data: dict) -> str:
    return plain_text(data.get("currency") or "")


def finite_number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def as_fig(value: object) -> Fig:
    """A figure as the input gives it: {"mean", "low", "high"[, "too_few", "vs_current"]},
    a bare number or null."""
    if isinstance(value, Fig):
        return value
    if isinstance(value, dict):
        change = value.get("vs_current")
        return Fig(finite_number(value.get("mean")), finite_number(value.get("low")), finite_number(value.get("high")),
                   bool(value.get("too_few")), as_fig(change) if isinstance(change, dict) else None)
    return Fig(finite_number(value), None, None)


def ranged_figs(row: dict) -> dict:
    """A sweep row (means, and [lowest, highest] under "range") as Figs."""
    spans = row.get("range") or {}
    out = {}
    for name, value in row.items():
        if name in ("range", "id"):
            continue
        span = spans.get(name) if isinstance(spans, dict) else None
        low, high = (span if isinstance(span, list) and len(span) == 2 else (None, None))
        out[name] = Fig(finite_number(value), finite_number(low), finite_number(high))
    return out


def format_value(x: float | None, kind: str, signed: bool = False, cur: str = "") -> str:
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


def budget_label(x: float | None, cur: str) -> str:
    """A point's label: its budget, "150 USD" rather than "150.00 USD"."""
    if x is None:
        return f"budget {NA}"
    text = format_value(x, "money", cur=cur)
    return re.sub(r"\.00(?= |$)", "", text)


def interval_text(f: Fig, kind: str, signed: bool) -> str:
    if f.low is None or f.high is None:
        return ""
    if f.low == f.high == f.mean:  # a figure that does not vary (a budget)
        return ""
    return f"{format_value(f.low, kind, signed)} to {format_value(f.high, kind, signed)}"  # currency: on the mean


def percent_level(confidence: float) -> str:
    return f"{confidence * 100:g} %"


def scale_label(s: float | None) -> str:
    return NA if s is None else f"×{s:g}"


def seeds_text(seeds: list) -> str:
    if not seeds:
        return "no seeds"
    shown = ", ".join(map(str, seeds)) if len(seeds) <= 12 else f"{seeds[0]} … {seeds[-1]}"
    return f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({shown})"


def campaign_ids(groups: list[dict]) -> list[str]:
    """Every campaign id in the groups' "campaigns", in the order first seen."""
    ids: dict = {}
    for group in groups:
        for campaign in group.get("campaigns") or []:
            if isinstance(campaign, dict):
                ids.setdefault(campaign.get("id"), None)
    return list(ids)
