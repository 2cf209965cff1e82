"""Text and numbers for the terminal tables: one place for names, numbers, intervals and
the currency. A name from the scenario is shown as written (rich markup and control
characters escaped, never interpreted); a figure that rounds to zero never shows a minus
sign; a figure over seeds shows its mean and under it ± half its interval."""

from __future__ import annotations

from typing import NamedTuple

from rich.markup import escape

from rtb.errors import printable

ROMI_NOTE = ("ROMI = (revenue x margin - cost) / cost. Attributed ROMI counts the conversions"
             " whose last touch within the window was the campaign's, as an ad platform reports"
             " them; incr. ROMI counts only the conversions the ads caused: act on incr. ROMI.")
DEFAULT_CURRENCY = "USD"  # a report or summary written before scenarios named one
TOO_FEW = "too few"


def safe_text(value: object) -> str:
    """A name from the scenario as a table shows it: rich markup ("[/bold]") and control
    characters are shown as written, never interpreted."""
    return escape(printable(value))


def currency_of(data: dict) -> str:
    return safe_text(data.get("currency") or DEFAULT_CURRENCY)


def plural(n: int, noun: str) -> str:
    """ "1 seed", "3 seeds"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def format_number(value: float, spec: str) -> str:
    """format(), but a figure that rounds to zero never shows a minus sign ("-0%")."""
    text = format(value, spec)
    if text.startswith("-") and not any(digit in text for digit in "123456789"):
        text = ("+" if spec.startswith("+") else "") + text[1:]
    return text


def format_or_dash(value, spec: str) -> str:
    return "-" if value is None else format_number(value, spec)


def signed_spec(spec: str) -> str:
    return spec if spec.startswith("+") else "+" + spec


def _half(low, high) -> float | None:
    """Half an interval's width: the intervals rtb writes are symmetric about the mean
    (Student's t), so mean ± half is the interval."""
    return None if low is None or high is None else (high - low) / 2


def _plus_minus(half: float | None, spec: str) -> str:
    """"±12.3", or "" when there is no spread to show (one seed, or every seed alike)."""
    return "" if not half else "±" + format_number(half, spec.lstrip("+"))


def change_text(mean, low, high, spec: str) -> str:
    """A difference: its signed mean, then ± half its interval, e.g. "+4.1 (±2.0)"."""
    if mean is None:
        return "-"
    spread = _plus_minus(_half(low, high), spec)
    return format_number(mean, signed_spec(spec)) + (f" ({spread})" if spread else "")


def figure_text(f: dict | None, spec: str, change: bool = False) -> str:
    """A figure over seeds ({"mean", "low", "high"}, maybe "vs_current", "too_few"): the
    mean, under it ± half its interval, and with change=True under that the change
    against current. "too few" instead when the figure rests on too few conversions."""
    if f is None or f.get("mean") is None:
        return "-"
    if f.get("too_few"):
        return TOO_FEW
    lines = [format_number(f["mean"], spec), _plus_minus(_half(f.get("low"), f.get("high")), spec)]
    vs = f.get("vs_current")
    if change and vs is not None:
        lines.append(change_text(vs.get("mean"), vs.get("low"), vs.get("high"), spec))
    return "\n".join(lines).rstrip("\n")


class Formats(NamedTuple):
    """Number formats; a table takes the first set that fits its width."""

    money: str
    ratio: str  # ROMI-like fractions, shown as percentages


PRECISE = Formats(money=",.2f", ratio="+.1%")
SHORT_RATIOS = Formats(money=",.2f", ratio="+.0%")  # money keeps its cents at any width
FORMATS = [PRECISE, SHORT_RATIOS]
