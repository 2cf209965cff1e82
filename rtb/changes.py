"""Variants of a scenario: what a marketer changes to ask "what if?".

A change is one of
  budget       CAMPAIGN=x1.3 | =+20% | =-20% | =+500 | =5000   (the total budget)
  daily-budget CAMPAIGN=...                                    (the daily budget alone)
  move         FROM:TO=30% | =500   (money from one campaign to another; the sum stays)
  set          PATH=VALUE           (any scenario field by its dotted path)
A campaign is named by its id, or by a part of it that only one id contains
("prospecting" for "sneakers-prospecting"). A budget change scales the campaign's daily
budget, if it has one, in the same proportion, as `--budget-scale` does: otherwise a
bigger budget could not be spent. A dotted path walks tables by key and lists by their
items' ids (`campaigns.retargeting.frequency_cap.impressions`) or by position
(`publishers.0.floors`); a list's item may also be written in brackets, as error
messages write paths (`publishers[style-mag].anonymous`, `publishers[0].floors`).
`dmp.consent_rate.CA=0.4` sets one geo's consent rate; where the scenario gives one
rate for all, it first becomes a table of that rate over every geo of dmp.geos. The
changed scenario is validated exactly like a file: a bad
path or value is an InputError that names the change and the field.

A plan file (TOML) lists named variants:
  [[variants]]
  name = "more-retargeting"
  move = ["prospecting:retargeting=30%"]
  set = { "dmp.consent_rate" = 0.6 }       # or a list of "PATH=VALUE" strings
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field, ValidationError

from rtb.errors import InputError
from rtb.files import read_document
from rtb.scenario import Scenario, parse_scenario
from rtb.spec_base import Spec
from rtb.types import MICROS_PER_UNIT

CURRENT = "current"  # the scenario as written: the variant every other is compared with
KINDS = ("budget", "daily-budget", "move", "set")
VariantName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
_FACTOR = re.compile(r"^[x*]\s*(\d+(?:\.\d*)?(?:e[+-]?\d+)?)$", re.IGNORECASE)
_PERCENT = re.compile(r"^([+-]?)\s*(\d+(?:\.\d*)?)\s*%$")
_AMOUNT = re.compile(r"^([+-]?)\s*(\d+(?:\.\d*)?(?:e[+-]?\d+)?)$", re.IGNORECASE)


@dataclass(frozen=True)
class Change:
    kind: str  # one of KINDS
    text: str  # as given: "sneakers-prospecting=x1.3"

    def __str__(self) -> str:
        return f"{self.kind} {self.text}"


@dataclass(frozen=True)
class Variant:
    name: str
    changes: tuple[Change, ...]
    source: str = "command line"  # where it was given: errors name it


def apply_changes(scenario: Scenario, changes: tuple[Change, ...] | list[Change],
                  source: str = "command line") -> Scenario:
    """The scenario with every change applied in order, validated as a whole.
    Raises InputError naming the change (as `source: --KIND TEXT`) and the problem."""
    data = scenario.model_dump()
    for change in changes:
        where = f"{source}: --{change.kind} {change.text}" if source == "command line" else \
            f"{source}: {change}"
        if change.kind in ("budget", "daily-budget"):
            _change_budget(data, scenario, change, where)
        elif change.kind == "move":
            _move_budget(data, scenario, change, where)
        elif change.kind == "set":
            _set_field(data, scenario, change, where)
        else:
            raise InputError.single(where, "", f"unknown change {change.kind!r}; one of {', '.join(KINDS)}")
        try:
            parse_scenario(data, where)  # each change on its own: the error names it
        except InputError as exc:
            raise InputError(where, exc.problems) from None
    return parse_scenario(data, source)


# ---- budgets ------------------------------------------------------------------------

def campaign_index(scenario: Scenario, name: str, where: str) -> int:
    """The campaign whose id is `name`, or the only one whose id contains it."""
    ids = [c.id for c in scenario.campaigns]
    if name in ids:
        return ids.index(name)
    matches = [k for k, cid in enumerate(ids) if name and name in cid]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise InputError.single(where, "", f"{name!r} matches several campaigns: "
                                + ", ".join(ids[k] for k in matches))
    raise InputError.single(where, "", f"no campaign {name!r}; the scenario has {', '.join(ids)}")


def _split_assignment(change: Change, where: str) -> tuple[str, str]:
    """TARGET=VALUE at the first '=' (a path or id has none; a value may)."""
    target, sep, value = change.text.partition("=")
    if not sep or not target.strip() or not value.strip():
        raise InputError.single(where, "", f"expected TARGET=VALUE, got {change.text!r}")
    return target.strip(), value.strip()


def _micros(units: float) -> int:
    return round(units * MICROS_PER_UNIT)


def _units(micros: int) -> float:
    return micros / MICROS_PER_UNIT


def new_budget(old_micros: int, value: str, where: str) -> int:
    """x1.3 (times), +20% / -20% (relative), +500 / -500 (added), 5000 (absolute)."""
    if m := _FACTOR.match(value):
        new = round(old_micros * float(m.group(1)))
    elif m := _PERCENT.match(value):
        sign = -1.0 if m.group(1) == "-" else 1.0
        new = round(old_micros * (1.0 + sign * float(m.group(2)) / 100.0))
    elif m := _AMOUNT.match(value):
        amount = _micros(float(m.group(2)))
        new = old_micros + amount if m.group(1) == "+" else \
            old_micros - amount if m.group(1) == "-" else amount
    else:
        raise InputError.single(where, "", f"{value!r} is not a budget change: x1.3, +20%, -20%,"
                                " +500, -500 or 5000")
    if new <= 0:
        raise InputError.single(where, "", f"{value} leaves a budget of {_units(new):g}; it must"
                                " stay above 0")
    return new


def _set_budget(campaign: dict, total_micros: int) -> None:
    """A new total budget; the daily budget, if any, in the same proportion."""
    old = _micros(campaign["budget"])
    if campaign.get("daily_budget") is not None:
        daily = _micros(campaign["daily_budget"])
        campaign["daily_budget"] = _units(max(1, round(daily * total_micros / old)))
    campaign["budget"] = _units(total_micros)


def _change_budget(data: dict, scenario: Scenario, change: Change, where: str) -> None:
    target, value = _split_assignment(change, where)
    campaign = data["campaigns"][campaign_index(scenario, target, where)]
    if change.kind == "budget":
        _set_budget(campaign, new_budget(_micros(campaign["budget"]), value, where))
        return
    daily = campaign.get("daily_budget")
    if daily is None and not _AMOUNT.match(value):
        raise InputError.single(where, "", f"campaign {campaign['id']!r} has no daily budget to"
                                " change; give an amount to set one")
    campaign["daily_budget"] = _units(new_budget(_micros(daily or 0.0), value, where))


def _move_budget(data: dict, scenario: Scenario, change: Change, where: str) -> None:
    pair, value = _split_assignment(change, where)
    source, target = _move_pair(scenario, pair, where)
    if source == target:
        raise InputError.single(where, "", "moves money from a campaign to itself")
    src, dst = data["campaigns"][source], data["campaigns"][target]
    src_micros = _micros(src["budget"])
    if m := _PERCENT.match(value):
        if m.group(1):
            raise InputError.single(where, "", f"{value}: a share moved has no sign")
        amount = round(src_micros * float(m.group(2)) / 100.0)
    elif (m := _AMOUNT.match(value)) and not m.group(1):
        amount = _micros(float(m.group(2)))
    else:
        raise InputError.single(where, "", f"{value!r} is not an amount to move: 30% or 500")
    if not 0 < amount < src_micros:
        raise InputError.single(where, "", f"moves {_units(amount):g} of {src['id']!r}'s budget"
                                f" of {_units(src_micros):g}; it must be more than 0 and less"
                                " than the whole")
    _set_budget(src, src_micros - amount)
    _set_budget(dst, _micros(dst["budget"]) + amount)


def _move_pair(scenario: Scenario, pair: str, where: str) -> tuple[int, int]:
    """FROM:TO, where ids may hold ':' themselves: the one split where both name a campaign."""
    found = []
    for k, char in enumerate(pair):
        if char == ":":
            try:
                found.append((campaign_index(scenario, pair[:k], where),
                              campaign_index(scenario, pair[k + 1:], where)))
            except InputError as exc:
                last = exc
    if len(found) == 1:
        return found[0]
    if not found:
        if ":" not in pair:
            raise InputError.single(where, "", f"expected FROM:TO=AMOUNT, got {pair!r}")
        raise last
    raise InputError.single(where, "", f"{pair!r} can be read as several campaign pairs; use full ids")


# ---- any field ----------------------------------------------------------------------

_ITEM = re.compile(r"\[([^\[\]]+)\]")  # LIST[ID] or LIST[N], as error messages write paths


def _set_field(data: dict, scenario: Scenario, change: Change, where: str) -> None:
    path, text = _split_assignment(change, where)
    value = parse_value(text)
    parts = _ITEM.sub(r".\1", path).split(".")
    node, model, walked = data, scenario, []
    while parts:
        key, used, parts = _next_key(node, model, parts, walked, where)
        walked.append(used)
        if not parts:
            node[key] = value
            return
        if node[key] is None:  # an optional table not given: start an empty one
            node[key] = {}
        if walked == ["dmp", "consent_rate"]:  # a geo's rate, the rest of the path its name
            geo = ".".join(parts)
            node[key] = _consent_table(data, node[key], geo, where)
            node[key][geo] = value
            return
        node, model = node[key], _child(model, key)
        if not isinstance(node, (dict, list)):
            raise InputError.single(where, ".".join(walked), "is a value, not a table: a path"
                                    f" cannot go on to {'.'.join(parts)!r}")


def _consent_table(data: dict, rate, geo: str, where: str) -> dict:
    """dmp.consent_rate as a table by geo, to set `geo`'s rate in: where the scenario
    gives one number, that number for every geo of dmp.geos (a table must list them
    all). A geo not in dmp.geos is an error naming the option and the geos."""
    geos = list(data["dmp"]["geos"])
    if geo not in geos:
        raise InputError.single(where, f"dmp.consent_rate.{geo}", f"{geo!r} is not a geo of"
                                f" dmp.geos; dmp.consent_rate by geo takes {', '.join(geos)}")
    if isinstance(rate, dict):
        return rate
    return {g: rate for g in geos}


def _next_key(node, model, parts: list[str], walked: list[str], where: str):
    """The key (dict) or index (list) the path names next, the path's text for it,
    and the parts left."""
    here = ".".join(walked) or "the scenario"
    if isinstance(node, dict):
        key = parts[0]
        fields = type(model).model_fields if isinstance(model, BaseModel) else None
        if fields is not None and key not in fields:
            raise InputError.single(where, ".".join(walked + [key]), f"{here} has no field"
                                    f" {key!r}; it has {', '.join(fields)}")
        return key, key, parts[1:]
    if parts[0].isdigit():
        index = int(parts[0])
        if index >= len(node):
            raise InputError.single(where, ".".join(walked + [parts[0]]),
                                    f"{here} has {len(node)} items")
        return index, parts[0], parts[1:]
    ids = [item.get("id") if isinstance(item, dict) else None for item in node]
    # Ids may hold dots: the longest run of parts that is an id, else a part of one id.
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in ids:
            return ids.index(name), name, parts[n:]
    matches = [k for k, i in enumerate(ids) if i is not None and parts[0] in i]
    if len(matches) == 1:
        return matches[0], ids[matches[0]], parts[1:]
    known = ", ".join(str(i) for i in ids if i is not None) or "no ids"
    problem = "matches several" if matches else "has no item"
    raise InputError.single(where, ".".join(walked + [parts[0]]),
                            f"{here} {problem} {parts[0]!r}; it has {known}")


def _child(model, key):
    if isinstance(model, BaseModel):
        return getattr(model, key, None)
    if isinstance(model, (list, tuple)) and isinstance(key, int) and key < len(model):
        return model[key]
    if isinstance(model, dict):
        return model.get(key)
    return None


def parse_value(text: str) -> object:
    """A --set value as TOML reads it (0.6, true, "first", [1, 2], { a = 1 }); a bare
    word that is not TOML (first, 6h) is the string itself."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


# ---- plan files ---------------------------------------------------------------------

class VariantSpec(Spec):
    name: VariantName
    budget: list[str] = []
    daily_budget: list[str] = []
    move: list[str] = []
    set: dict[str, object] | list[str] = {}


class PlanFile(Spec):
    variants: list[VariantSpec] = Field(min_length=1, max_length=100)


def variant_from_options(name: str, budget: list[str], daily_budget: list[str], move: list[str],
                         set_: list[str], source: str = "command line") -> Variant:
    """A variant's changes in the order budgets, daily budgets, moves, fields."""
    return Variant(name, tuple([Change("budget", t) for t in budget]
                               + [Change("daily-budget", t) for t in daily_budget]
                               + [Change("move", t) for t in move]
                               + [Change("set", t) for t in set_]), source)


def _value_text(value: object) -> str:
    """A TOML value back to text, for a plan file's `set` table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {_value_text(v)}' for k, v in value.items()) + " }"
    return str(value)


def load_plan(path: str | Path) -> list[Variant]:
    """The named variants of a plan file; InputError names the file, field and problem."""
    file = str(path)
    data = read_document(Path(path))
    try:
        spec = PlanFile.model_validate(data)
    except ValidationError as exc:
        raise InputError(file, [(".".join(str(p) for p in e["loc"]), e["msg"])
                                for e in exc.errors()]) from None
    variants, seen = [], set()
    for k, v in enumerate(spec.variants):
        if v.name == CURRENT:
            raise InputError.single(file, f"variants.{k}.name", f"{CURRENT!r} is the scenario as"
                                    " written; give the variant another name")
        if v.name in seen:
            raise InputError.single(file, f"variants.{k}.name", f"duplicate name {v.name!r}")
        seen.add(v.name)
        sets = v.set if isinstance(v.set, list) else [f"{p}={_value_text(x)}" for p, x in v.set.items()]
        variants.append(variant_from_options(v.name, v.budget, v.daily_budget, v.move, sets,
                                             f"{file}: variant {v.name}"))
    return variants
