"""Pydantic models of a scenario's supply side: SSPs, publishers, their slots, deals and floors.

Publishers sell their slots' requests through an SSP; floor rules (Prebid-style, "*"
matches anything), dynamic floors, private deals and block lists are theirs or their
SSP's. The checks that need the rest of the scenario (advertisers, dmp.geos) take its
parts, so this module never imports rtb.scenario.
"""

from __future__ import annotations

from typing import Annotated, Callable, Iterable, Literal, Protocol, Sequence

from pydantic import Field, model_validator

from rtb.spec_base import (MAX_DURATION_S, MAX_NAME, MAX_RUN_REQUESTS, Cpm, Device, FeeRate, Format,
                           Id, Seconds, Spec, Text, Weight)

# A publisher's traffic by UTC hour when its `hourly_shape` is not given: a typical
# diurnal curve of web traffic (night trough, evening peak).
DEFAULT_HOURLY_SHAPE = (0.35, 0.25, 0.2, 0.18, 0.2, 0.3, 0.55, 0.8, 1.0, 1.1, 1.15, 1.2,
                        1.25, 1.2, 1.15, 1.15, 1.2, 1.3, 1.45, 1.6, 1.7, 1.6, 1.25, 0.8)

WILDCARD = "*"
Domain = Annotated[str, Field(min_length=1, max_length=253)]
# Rule fields: a value or the wildcard, as one type so an error reads as one message.
IdOrAny = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^(\*|[A-Za-z0-9_.:\-]+)$")]
FormatOrAny = Literal["banner", "video", "native", "*"]
DeviceOrAny = Literal["desktop", "mobile", "*"]


class FloorRuleSpec(Spec):
    """One floor rule in the style of Prebid's price floors: "*" (the default) matches anything.

    Of the rules that match a request, the one with the most fields that are not "*"
    wins; among equally specific ones, the first in the file.
    """

    domain: Domain = Field(WILDCARD, description="the publisher's domain")
    slot: IdOrAny = Field(WILDCARD, description="the slot's id")
    format: FormatOrAny = WILDCARD
    device: DeviceOrAny = WILDCARD
    country: Annotated[str, Field(min_length=1, max_length=MAX_NAME)] = Field(
        WILDCARD, description="the user's geo, a key of dmp.geos")
    floor_cpm: Cpm


class DynamicFloorSpec(Spec):
    """Floors that follow the prices their requests fetched (deterministic, no randomness).

    Every `interval` (rounded to whole ticks), each (slot, country) floor with at least
    `min_requests` open-auction requests since the last update moves a share `rate` of
    the way toward the `quantile` of the prices those requests fetched, an unsold
    request counting as 0; never below the table's floor_min.
    """

    interval: Annotated[Seconds, Field(le=MAX_DURATION_S)] = 3600.0
    quantile: Annotated[float, Field(gt=0, lt=1)] = 0.5
    rate: Annotated[float, Field(gt=0, le=1)] = 0.5
    min_requests: Annotated[int, Field(ge=1, le=1_000_000)] = 50


class FloorsSpec(Spec):
    """Rule-based floors of a publisher (or, for publishers without their own, of an SSP)."""

    rules: list[FloorRuleSpec] = Field([], max_length=10_000)
    default: Cpm = Field(0.0, description="floor when no rule matches and the slot sets no floor_cpm")
    floor_min: Cpm = Field(0.0, description="no floor of the table is below this")
    dynamic: DynamicFloorSpec | None = None


class SspSpec(Spec):
    id: Id
    fee: FeeRate = Field(0.0, description="share of the exchange's payout the SSP keeps")
    floors: FloorsSpec | None = Field(None, description="for its publishers without their own")
    blocked_categories: list[Text] = Field([], description="advertiser categories none of its publishers sells to")
    blocked_domains: list[Domain] = Field([], description="advertiser domains none of its publishers sells to")


class SlotSpec(Spec):
    id: Id
    format: Format = "banner"
    device: Device = "desktop"
    daily_requests: Annotated[float, Field(gt=0, le=MAX_RUN_REQUESTS)]
    floor_cpm: Cpm = 0.0


class DealSpec(Spec):
    """A private-marketplace deal offered on a share of a publisher's requests."""

    id: Id
    floor_cpm: Cpm = Field(description="deal floor; with fixed_price, the price itself")
    fixed_price: bool = Field(False, description="the winner pays floor_cpm exactly")
    private: bool = Field(True, description="only deal bids may win (else open: deal bids win first)")
    share: Annotated[float, Field(gt=0, le=1)] = Field(
        description="share of the slots' requests that carry the deal")
    slots: list[Id] = Field([], description="the publisher's slots it covers; empty: all")
    dsps: list[Id] = Field([], description="allowed buyers: campaigns of these DSPs ...")
    advertisers: list[Id] = Field([], description="... or of these advertisers")
    anonymous: bool = Field(False, description="sold anonymously: buyers see the category,"
                            " not the publisher's domain (a blind deal)")

    @model_validator(mode="after")
    def _has_buyers(self) -> "DealSpec":
        if not self.dsps and not self.advertisers:
            raise ValueError("a deal needs allowed buyers: dsps or advertisers")
        return self


class PublisherSpec(Spec):
    id: Id
    ssp: Id
    domain: Annotated[str, Field(max_length=253)] = ""
    category: Text = "general"
    hourly_shape: list[Weight] | None = Field(
        None, min_length=24, max_length=24,
        description="relative traffic per UTC hour; default: a typical diurnal curve")
    weekly_shape: list[Weight] | None = Field(
        None, min_length=7, max_length=7, description="relative traffic Monday..Sunday")
    slots: list[SlotSpec] = Field(min_length=1, max_length=10_000)
    deals: list[DealSpec] = Field([], max_length=1_000)
    floors: FloorsSpec | None = Field(None, description="replaces the SSP's floors table, if any")
    blocked_categories: list[Text] = Field([], description="advertiser categories it never sells to")
    blocked_domains: list[Domain] = Field([], description="advertiser domains it never sells to")
    anonymous: bool = Field(False, description="sells every request anonymously: buyers see"
                            " an anonymous id and the category, not the domain")

    @model_validator(mode="after")
    def _shapes_not_all_zero(self) -> "PublisherSpec":
        for name in ("hourly_shape", "weekly_shape"):
            shape = getattr(self, name)
            if shape is not None and sum(shape) <= 0:
                raise ValueError(f"{name} must have a positive weight somewhere")
        return self


class Buyer(Protocol):
    """What a block list is checked against: an advertiser's category and domain."""

    @property
    def category(self) -> str: ...

    @property
    def domain(self) -> str: ...


def supply_rule_problems(ssps: Sequence[SspSpec], publishers: Sequence[PublisherSpec],
                         advertisers: Sequence[Buyer], geos: Iterable[str]) -> list[tuple[str, str]]:
    """Floor rules and block lists must name things the scenario has: a typo would match nothing.

    Takes the scenario's ssps, publishers, advertisers and dmp.geos; paths are the scenario's.
    """
    problems: list[tuple[str, str]] = []
    known_geos = set(geos)
    adv_categories = {a.category for a in advertisers}
    adv_domains = {a.domain.lower() for a in advertisers if a.domain}

    def floors(spec: FloorsSpec | None, at: str, domains: set[str], slots: set[str],
               no_slot: Callable[[str], str], no_domain: Callable[[str], str]) -> None:
        if spec is None:
            return
        seen: dict[tuple, int] = {}
        for j, rule in enumerate(spec.rules):
            where = f"{at}.floors.rules[{j}]"
            if rule.domain != WILDCARD and rule.domain.lower() not in domains:
                problems.append((f"{where}.domain", no_domain(rule.domain)))
            if rule.slot != WILDCARD and rule.slot not in slots:
                problems.append((f"{where}.slot", no_slot(rule.slot)))
            if rule.country != WILDCARD and rule.country not in known_geos:
                problems.append((f"{where}.country", f"country {rule.country!r} is not in dmp.geos"))
            key = (rule.domain.lower(), rule.slot, rule.format, rule.device, rule.country)
            if key in seen:
                problems.append((where, f"matches exactly what rules[{seen[key]}] matches, "
                                        "which comes first and always wins"))
            seen.setdefault(key, j)

    def blocks(item, at: str) -> None:
        for j, cat in enumerate(item.blocked_categories):
            if cat not in adv_categories:
                problems.append((f"{at}.blocked_categories[{j}]", f"no advertiser has category {cat!r}"))
        for j, domain in enumerate(item.blocked_domains):
            if domain.lower() not in adv_domains:
                problems.append((f"{at}.blocked_domains[{j}]", f"no advertiser has domain {domain!r}"))

    for i, ssp in enumerate(ssps):
        mine = [pub for pub in publishers if pub.ssp == ssp.id]
        floors(ssp.floors, f"ssps[{i}]", {pub.domain.lower() for pub in mine if pub.domain},
               {slot.id for pub in mine for slot in pub.slots},
               lambda x: f"no publisher of SSP {ssp.id!r} has a slot {x!r}",
               lambda x: f"no publisher of SSP {ssp.id!r} has domain {x!r}")
        blocks(ssp, f"ssps[{i}]")
    for i, pub in enumerate(publishers):
        floors(pub.floors, f"publishers[{i}]", {pub.domain.lower()} if pub.domain else set(),
               {slot.id for slot in pub.slots}, lambda x: f"publisher {pub.id!r} has no slot {x!r}",
               lambda x: f"publisher {pub.id!r} has domain {pub.domain!r}, not {x!r}")
        blocks(pub, f"publishers[{i}]")
    return problems
