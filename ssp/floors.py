"""Floor prices: Prebid-style rules become a floor[slot, geo] table; dynamic floors move it.

Rules depend only on a slot's attributes (its publisher's domain, its id, format and
device) and the user's country, so the whole rule set is evaluated once per (slot,
geo) when the world is built, and a tick reads a request's floor with one gather:
`table[slot, geo[user]]`. The market holds the table the rules give (FloorBook); a run
with dynamic floors moves its own copy of it between ticks (DynamicFloors, run state).

Which floor a request gets (a slot's floors table is its publisher's `floors`, or, if
the publisher has none, its SSP's):

1. the matching rule with the most fields that are not "*"; among equally specific
   matching rules, the first in the file;
2. no rule matches: the slot's own `floor_cpm` if the slot sets one, else the table's
   `default`;
3. never below the table's `floor_min`.

Without any floors table a slot's floor is its `floor_cpm`, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from rtb.scenario import Scenario
from rtb.supply_spec import WILDCARD, FloorRuleSpec, FloorsSpec

RULE_FIELDS = ("domain", "slot", "format", "device", "country")


def matching_rule(rules: list[FloorRuleSpec], request: dict[str, str]) -> FloorRuleSpec | None:
    """The most specific rule matching `request` (a value per RULE_FIELDS); ties: the first.

    Domains compare case-insensitively, everything else exactly.
    """
    best, best_fields = None, -1
    for rule in rules:
        fields = 0
        for name in RULE_FIELDS:
            value = getattr(rule, name)
            if value == WILDCARD:
                continue
            if name == "domain":
                if value.lower() != request[name].lower():
                    break
            elif value != request[name]:
                break
            fields += 1
        else:
            if fields > best_fields:  # strictly more specific: an earlier equal one stays
                best, best_fields = rule, fields
    return best


def floor_for(spec: FloorsSpec | None, slot_floor_cpm: float, slot_sets_floor: bool,
              request: dict[str, str]) -> float:
    """The floor of one (slot, country) under a floors table (see the module docstring)."""
    if spec is None:
        return slot_floor_cpm
    rule = matching_rule(spec.rules, request)
    if rule is not None:
        floor = rule.floor_cpm
    elif slot_sets_floor:
        floor = slot_floor_cpm
    else:
        floor = spec.default
    return max(floor, spec.floor_min)


def floors_table_of(s: Scenario) -> list[FloorsSpec | None]:
    """Each publisher's floors table: its own, else its SSP's, else None."""
    ssp_floors = {ssp.id: ssp.floors for ssp in s.ssps}
    return [pub.floors if pub.floors is not None else ssp_floors[pub.ssp] for pub in s.publishers]


class DynamicRule(NamedTuple):
    """A floors table's `dynamic` settings, as plain numbers."""

    interval: float  # seconds between updates (rounded to whole ticks by the engine)
    quantile: float
    rate: float
    min_requests: int


@dataclass
class DynamicFloors:
    """Moves floors toward a quantile of the prices their requests fetched.

    Each dynamic floors table's slots form a group, updated by its own slow process
    (rtb/engine.py) half a tick before every multiple of its interval, so an update
    sees exactly the interval's requests and its floors hold from the boundary on.
    At an update, every (slot, geo) cell of the group with at least `min_requests`
    open-auction requests since the group's last update moves a share `rate` of the
    way toward the `quantile` of what those requests fetched (the clearing price; 0
    when unsold), then is raised to `floor_min` if below it. The quantile is the
    smallest observed value v such that at least a share `quantile` of the cell's
    values are <= v. No randomness: the same prices give the same floors.
    """

    table: np.ndarray  # f8[n_slot, n_geo]: the run's floors, updated in place
    floor_min: np.ndarray  # f8[n_slot]
    slot_group: np.ndarray  # i4[n_slot]: dynamic group of the slot, -1 = static floors
    groups: tuple[DynamicRule, ...]
    _values: list[list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._values = [[] for _ in self.groups]

    def observe(self, slot: np.ndarray, geo: np.ndarray, fetched_cpm: np.ndarray,
                counted: np.ndarray) -> None:
        """Record one tick: per request its slot, user geo and price (0 if unsold).

        `counted` bool[n] selects the requests whose open-auction floor was in play.
        """
        group = np.where(counted, self.slot_group[slot], -1)
        n_geo = self.table.shape[1]
        for g in range(len(self.groups)):
            mine = np.flatnonzero(group == g)
            if mine.size:
                cell = slot[mine].astype(np.int64) * n_geo + geo[mine]
                self._values[g].append((cell, fetched_cpm[mine].astype(np.float64)))

    def update(self, g: int) -> None:
        """Move the floors of group g's cells (see the class docstring)."""
        parts, self._values[g] = self._values[g], []
        if not parts:
            return
        spec = self.groups[g]
        cell = np.concatenate([c for c, _ in parts])
        value = np.concatenate([v for _, v in parts])
        order = np.lexsort((value, cell))
        cell, value = cell[order], value[order]
        cells, first, count = np.unique(cell, return_index=True, return_counts=True)
        enough = count >= spec.min_requests
        cells, first, count = cells[enough], first[enough], count[enough]
        if cells.size == 0:
            return
        # k-th smallest, k = ceil(q * count); rounded first so that q * count that is
        # an integer in exact arithmetic is not pushed up by a float error.
        k = np.maximum(np.ceil(np.round(spec.quantile * count, 9)).astype(np.int64), 1)
        target = value[first + k - 1]
        flat = self.table.reshape(-1)
        current = flat[cells]
        moved = current + spec.rate * (target - current)
        flat[cells] = np.maximum(moved, self.floor_min[cells // self.table.shape[1]])


class FloorBook(NamedTuple):
    """The open-auction floor of every (slot, user geo) as the rules give it (market data)."""

    table: np.ndarray  # f8[n_slot, n_geo]
    floor_min: np.ndarray  # f8[n_slot]
    geo_names: tuple[str, ...]
    slot_group: np.ndarray  # i4[n_slot]: dynamic group of the slot, -1 = static floors
    groups: tuple[DynamicRule, ...]  # one per dynamic floors table; empty: floors never move

    def start_dynamic(self) -> DynamicFloors | None:
        """A run's moving floors, starting from the rules' table; None if none move."""
        if not self.groups:
            return None
        return DynamicFloors(self.table.copy(), self.floor_min, self.slot_group, self.groups)


def build_floors(s: Scenario, geo_names: tuple[str, ...]) -> FloorBook:
    """Evaluate every publisher's (or SSP's) rules for each of its slots and each geo."""
    rows, floor_min, slot_group = [], [], []
    groups: list[DynamicRule] = []
    group_of: dict[int, int] = {}  # id() of a floors table -> its group (a shared SSP table is one)
    for pub, spec in zip(s.publishers, floors_table_of(s)):
        group = -1
        if spec is not None and spec.dynamic is not None:
            group = group_of.setdefault(id(spec), len(groups))
            if group == len(groups):
                d = spec.dynamic
                groups.append(DynamicRule(d.interval, d.quantile, d.rate, d.min_requests))
        for slot in pub.slots:
            sets_floor = "floor_cpm" in slot.model_fields_set
            base = {"domain": pub.domain, "slot": slot.id, "format": slot.format, "device": slot.device}
            rows.append([floor_for(spec, slot.floor_cpm, sets_floor, {**base, "country": geo})
                         for geo in geo_names])
            floor_min.append(spec.floor_min if spec is not None else 0.0)
            slot_group.append(group)
    table = np.array(rows, dtype=np.float64).reshape(len(rows), len(geo_names))
    return FloorBook(table, np.array(floor_min, dtype=np.float64), tuple(geo_names),
                     np.array(slot_group, dtype=np.int32), tuple(groups))
