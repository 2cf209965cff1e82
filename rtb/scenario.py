"""Pydantic models of a scenario file, and load_scenario() for TOML or JSON.

A scenario describes one market: the simulation clock, the exchange and the rest of
the market, SSPs and publishers, DSPs, advertisers and campaigns, the DMP's audience
and the users' true behaviour. Unknown keys are rejected; cross-references are
checked after parsing so every problem is reported at once, each with its path.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Discriminator, Field, Tag, ValidationError, model_validator

from rtb.errors import InputError
from rtb.files import check_nesting, read_document, read_input
from rtb.spec_base import (MAX_CPM, MAX_DURATION_S, MAX_GEOS, MAX_MONEY, MAX_NAME, MAX_RUN_REQUESTS,
                           MAX_TICKS, MAX_TOTAL_BUDGET, MIN_TICK_S, MIN_WINDOW_S, Cpm, Currency,
                           Device, FeeRate, Format, Id, Money, Seconds, Share, Spec, Text,
                           UtcDatetime, Weight)
from rtb.pacing_spec import EvenPacingSpec, PacingSpec
from rtb.strategy_spec import KINDS, PythonStrategySpec, StrategySpec, missing_in_scenario
from rtb.supply_spec import DEFAULT_HOURLY_SHAPE, Domain, PublisherSpec, SspSpec, supply_rule_problems
from rtb.types import DEVICES, FORMATS

# ---- simulation clock -------------------------------------------------------------

class SimulationSpec(Spec):
    seed: int = Field(0, ge=0, le=2**63 - 1, description="root seed of every random stream")
    start: UtcDatetime
    duration: Annotated[Seconds, Field(le=MAX_DURATION_S)]
    tick: Annotated[Seconds, Field(ge=MIN_TICK_S)] = Field(
        60.0, description="one batch of requests; pacing acts between ticks")

    @model_validator(mode="after")
    def _tick_fits(self) -> "SimulationSpec":
        if self.tick > self.duration:
            raise ValueError("tick must not be longer than duration")
        if self.duration / self.tick > MAX_TICKS:
            raise ValueError(f"tick too short for the duration: {self.duration / self.tick:,.0f}"
                             f" ticks, at most {MAX_TICKS:,}")
        if self.start.year > 9000:
            raise ValueError("start must be before the year 9000")
        return self

    @property
    def end(self) -> datetime:
        return datetime.fromtimestamp(self.start.timestamp() + self.duration, tz=timezone.utc)


# ---- exchange and the rest of the market --------------------------------------------

class LognormalMarketSpec(Spec):
    """Background demand whose best bid per request is lognormal."""

    kind: Literal["lognormal"]
    median_cpm: Annotated[float, Field(gt=0, le=MAX_CPM)]
    sigma: Annotated[float, Field(ge=0, le=5)] = 0.8
    participation: Share = Field(1.0, description="share of requests the market bids on")


class HistogramMarketSpec(Spec):
    """Background demand drawn from an empirical price histogram file.

    The file is JSON with a list of counts under `key`; bucket k is the price k * scale
    CPM. The iPinYou `<campaign>.info.json` files fit as they are (key
    "price_counter_train", prices in fen CPM, so scale 0.01 gives CNY CPM).
    """

    kind: Literal["histogram"]
    file: str
    key: str = "price_counter_train"
    scale: Annotated[float, Field(gt=0, le=MAX_CPM)] = 1.0
    participation: Share = 1.0


MarketSpec = Annotated[Union[LognormalMarketSpec, HistogramMarketSpec], Field(discriminator="kind")]


class ExchangeSpec(Spec):
    auction: Literal["first", "second"] = "second"
    fee: FeeRate = Field(0.0, description="share of the clearing price the exchange keeps")
    market: MarketSpec | None = None


# ---- demand ----------------------------------------------------------------------

Endpoint = Annotated[str, Field(max_length=2000, pattern=r"^https?://[^\s/?#]+(/\S*)?$")]


class DspSpec(Spec):
    id: Id
    fee: FeeRate = Field(0.0, description="DSP margin on media cost, charged to the advertiser")
    ctr_model_error: Annotated[float, Field(ge=0, le=3)] = Field(
        0.4, description="lognormal sigma of the DSP's pCTR error per user")
    # An external bidder (docs/openrtb.md): the exchange sends it OpenRTB 2.6 bid requests.
    endpoint: Endpoint | None = Field(
        None, description="an external OpenRTB 2.6 bidder: POST bid requests here; its"
                          " campaigns carry no strategy")
    tmax: Annotated[Seconds, Field(le=10.0)] = Field(
        0.1, description="the bidder's time limit (OpenRTB tmax), e.g. 120ms")
    latency: Literal["model", "wall"] = Field(
        "model", description="model: the tmax check uses a latency drawn in simulated time"
                             " (reproducible); wall: the measured wall-clock latency")
    latency_median: Annotated[Seconds, Field(le=10.0)] = Field(
        0.02, description="model latency: median of its lognormal distribution")
    latency_spread: Annotated[float, Field(ge=0, le=3)] = Field(
        0.5, description="model latency: sigma of its lognormal distribution")
    notices: bool = Field(False, description="send win (nurl, burl) and loss (lurl) notices")
    connections: Annotated[int, Field(ge=1, le=1024)] = Field(
        64, description="requests in flight to the bidder at once (keep-alive connections)")

    @property
    def external(self) -> bool:
        return self.endpoint is not None


class FrequencyCapSpec(Spec):
    impressions: Annotated[int, Field(ge=1, le=250)]
    window: Annotated[Seconds, Field(ge=MIN_WINDOW_S)]
    kind: Literal["calendar", "rolling"] = "calendar"


class AdvertiserSpec(Spec):
    id: Id
    domain: Annotated[str, Field(max_length=253)] = ""
    category: Text = "general"
    value_per_conversion: Money = Field(description="revenue per conversion")
    margin: Share = Field(1.0, description="gross margin on revenue, for ROMI")
    frequency_cap: FrequencyCapSpec | None = Field(
        None, description="across all the advertiser's campaigns; calendar windows only")

    @model_validator(mode="after")
    def _calendar_only(self) -> "AdvertiserSpec":
        if self.frequency_cap is not None and self.frequency_cap.kind != "calendar":
            raise ValueError("an advertiser's frequency cap must be of kind 'calendar'")
        return self


class TargetingSpec(Spec):
    """Empty lists mean "any". Segments: the user must be in at least one.

    Domains are publishers' domains, compared case-insensitively. An anonymous request
    shows no domain: `domains` never matches it and `exclude_domains` cannot exclude it.
    """

    segments: list[Id] = []
    devices: list[Device] = []
    formats: list[Format] = []
    categories: list[Text] = Field([], description="publisher content categories")
    exclude_categories: list[Text] = Field(
        [], description="publisher content categories never bought (brand safety)")
    domains: list[Domain] = Field(
        [], description="publisher domains bought; never matches an anonymous request")
    exclude_domains: list[Domain] = Field(
        [], description="publisher domains never bought (brand safety); blind to anonymous requests")
    geos: list[Text] = []


class CampaignSpec(Spec):
    id: Id
    advertiser: Id
    dsp: Id
    budget: Annotated[float, Field(gt=0, le=MAX_MONEY)] = Field(
        description="total budget, media + data + DSP fee")
    daily_budget: Annotated[float, Field(gt=0, le=MAX_MONEY)] | None = None
    start: UtcDatetime | None = None
    end: UtcDatetime | None = None
    targeting: TargetingSpec = TargetingSpec()
    frequency_cap: FrequencyCapSpec | None = None
    strategy: StrategySpec | None = Field(
        None, description="how it bids; required unless its DSP is an external bidder")
    max_bid_cpm: Cpm | None = None
    pacing: PacingSpec = EvenPacingSpec(kind="even")
    ctr_multiplier: Annotated[float, Field(gt=0, le=20)] = Field(1.0, description="creative quality")
    cvr_multiplier: Annotated[float, Field(gt=0, le=20)] = 1.0

    @model_validator(mode="after")
    def _flight_order(self) -> "CampaignSpec":
        if self.start and self.end and self.end <= self.start:
            raise ValueError("end must be after start")
        return self


# ---- audience and behaviour ----------------------------------------------------------

class SegmentSpec(Spec):
    id: Id
    share: Share = Field(description="share of users in the segment")
    party: Literal["first", "second", "third"] = Field(
        "third", description="first: an advertiser's own data (owner), free, for its campaigns only;"
        " second, third: bought at data_cpm by any advertiser")
    owner: Id | None = Field(None, description="first party only: the advertiser whose data it is")
    data_cpm: Cpm = Field(0.0, description="data cost per thousand impressions that use it")
    match_rate: Share = Field(1.0, description="share of members a DSP can recognise")
    cvr_lift: Annotated[float, Field(gt=0, le=100)] = Field(
        1.0, description="members' true conversion multiplier for the advertisers below")
    advertisers: list[Id] = Field([], description="advertisers the lift applies to; empty: all")


MAX_DEVICES_PER_PERSON = 10
GeoName = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]


# One number, or a table by geo. Tagged by the value's shape, so that an error names the
# field (and the geo) instead of each branch of the union pydantic tried.
ConsentRate = Annotated[
    Union[Annotated[Share, Tag("consent-rate")], Annotated[dict[GeoName, Share], Tag("consent-table")]],
    Discriminator(lambda value: "consent-table" if isinstance(value, dict) else "consent-rate")]


class IdentitySpec(Spec):
    """How people show up as ids: devices per person, cookie churn, login ids.

    Present (even empty), it switches the identity model on: a request without consent
    then carries no id at all (no caps, no attribution, no segments). Absent, every
    device-user is one stable id for the run and consent only hides segments.
    """

    id_lifetime: Seconds | None = Field(
        None, description="mean of an exponential id lifetime (cookie churn); absent: ids never churn")
    devices_per_person: dict[Annotated[str, Field(pattern=r"^([1-9]|10)$")], Weight] = Field(
        default_factory=lambda: {"1": 1.0},
        description="distribution of devices per person: keys \"1\" to \"10\", weights")
    login_share: Share = Field(
        0.0, description="share of people with a login id: one id on all their devices, never churns")

    @model_validator(mode="after")
    def _devices_positive(self) -> IdentitySpec:
        if sum(self.devices_per_person.values()) <= 0:
            raise ValueError("devices_per_person must have a positive weight somewhere")
        return self

    def device_weights(self) -> list[float]:
        """Weights of 1 .. MAX_DEVICES_PER_PERSON devices per person."""
        return [float(self.devices_per_person.get(str(k), 0.0))
                for k in range(1, MAX_DEVICES_PER_PERSON + 1)]


class DmpSpec(Spec):
    users: Annotated[int, Field(ge=1, le=100_000_000)] = Field(
        description="at least one per device with a share")
    activity_skew: Annotated[float, Field(ge=0, le=4)] = Field(
        1.0, description="lognormal sigma of users' request rates")
    devices: dict[Device, Weight] = {"desktop": 0.5, "mobile": 0.5}
    geos: dict[GeoName, Weight] = {"US": 1.0}
    consent_rate: ConsentRate = Field(
        1.0, description="share of people who consent to data use: one number, or a table by geo"
        " listing every geo of dmp.geos")
    identity: IdentitySpec | None = Field(
        None, description="people, devices and ids (cookie churn, logins); absent: one stable id"
        " per user")
    segments: list[SegmentSpec] = Field([], max_length=64)

    @model_validator(mode="after")
    def _mixes_positive(self) -> "DmpSpec":
        for name in ("devices", "geos"):
            if sum(getattr(self, name).values()) <= 0:
                raise ValueError(f"{name} must have a positive share somewhere")
        if len(self.geos) > MAX_GEOS:
            raise ValueError(f"at most {MAX_GEOS} geos (a user's geo is one byte), got {len(self.geos)}")
        shares = sum(1 for share in self.devices.values() if share > 0)
        if self.users < shares:
            raise ValueError(f"users: at least one per device with a share, so at least {shares}")
        return self

    def consent_by_geo(self) -> list[float]:
        """The consent rate of each geo of `geos`, in its order (a table must list them all:
        reference_problems says which is missing)."""
        rate = self.consent_rate
        if isinstance(rate, dict):
            return [float(rate.get(geo, 0.0)) for geo in self.geos]
        return [float(rate)] * len(self.geos)

    def consent_below_one(self) -> bool:
        return min(self.consent_by_geo()) < 1.0


def _per_format(default: dict[str, float]):
    return Field(default_factory=lambda: dict(default))


class BehaviourSpec(Spec):
    ctr: dict[Format, Share] = _per_format({"banner": 0.001, "video": 0.006, "native": 0.003})
    cvr: dict[Format, Share] = _per_format({"banner": 0.03, "video": 0.02, "native": 0.03})
    user_ctr_sigma: Annotated[float, Field(ge=0, le=3)] = Field(
        0.6, description="lognormal sigma of users' click propensity")
    fatigue: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.1, description="each earlier exposure to a campaign multiplies CTR by (1 - fatigue)")
    conversion_delay: Seconds = Field(21600.0, description="mean delay from click to conversion")
    organic_conversion_rate: Annotated[float, Field(ge=0, le=1)] = Field(
        0.0002, description="conversions per user per day per advertiser without any ad")
    attribution_window: Seconds = 7 * 86400.0


class ReportSpec(Spec):
    """Figures a run may add to its report, at a cost in run time."""

    advertiser_bids: bool = Field(
        False, description="publishers[].advertisers[] also gets the bids received, their"
        " mean and median CPM and the win rate (slower: each bid is counted and binned)")


MAX_ITEMS = 10_000  # SSPs, publishers, DSPs, advertisers; and slots over all publishers
MAX_CAMPAIGNS = 1_000


class Scenario(Spec):
    """An rtbsim scenario file (.toml or .json): one market for `rtb run` to simulate."""

    name: Text = "scenario"
    currency: Currency = "USD"
    simulation: SimulationSpec
    exchange: ExchangeSpec = ExchangeSpec()
    ssps: list[SspSpec] = Field(min_length=1, max_length=MAX_ITEMS)
    publishers: list[PublisherSpec] = Field(min_length=1, max_length=MAX_ITEMS)
    dsps: list[DspSpec] = Field(min_length=1, max_length=MAX_ITEMS)
    advertisers: list[AdvertiserSpec] = Field(min_length=1, max_length=MAX_ITEMS)
    campaigns: list[CampaignSpec] = Field(min_length=1, max_length=MAX_CAMPAIGNS)
    dmp: DmpSpec
    behaviour: BehaviourSpec = BehaviourSpec()
    report: ReportSpec = ReportSpec()


def reference_problems(s: Scenario) -> list[tuple[str, str]]:
    """Cross-field checks pydantic cannot express per field: ids, references, flights,
    first-party data, and the strategy parameters only `rtb replay` may leave out."""
    problems: list[tuple[str, str]] = []

    def unique(items: list, path: str) -> set[str]:
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.id in seen:
                problems.append((f"{path}[{i}].id", f"duplicate id {item.id!r}"))
            seen.add(item.id)
        return seen

    ssps = unique(s.ssps, "ssps")
    unique(s.publishers, "publishers")
    dsps = unique(s.dsps, "dsps")
    external_dsps = {d.id for d in s.dsps if d.external}
    advertisers = unique(s.advertisers, "advertisers")
    unique(s.campaigns, "campaigns")
    segments = unique(s.dmp.segments, "dmp.segments")
    categories = {p.category for p in s.publishers}
    domains = {p.domain.lower() for p in s.publishers if p.domain}
    geos = set(s.dmp.geos)

    for i, pub in enumerate(s.publishers):
        if pub.ssp not in ssps:
            problems.append((f"publishers[{i}].ssp", f"unknown SSP {pub.ssp!r}"))
        slot_ids: set[str] = set()
        for j, slot in enumerate(pub.slots):
            if slot.id in slot_ids:
                problems.append((f"publishers[{i}].slots[{j}].id", f"duplicate id {slot.id!r}"))
            slot_ids.add(slot.id)
            if s.dmp.devices.get(slot.device, 0.0) <= 0:
                problems.append((f"publishers[{i}].slots[{j}].device",
                                 f"no {slot.device} users: dmp.devices gives {slot.device} no share"))

    deal_ids: set[str] = set()
    for i, pub in enumerate(s.publishers):
        offered = {slot.id: 0.0 for slot in pub.slots}
        for j, deal in enumerate(pub.deals):
            at = f"publishers[{i}].deals[{j}]"
            if deal.id in deal_ids:
                problems.append((f"{at}.id", f"duplicate deal id {deal.id!r}"))
            deal_ids.add(deal.id)
            for k, slot in enumerate(deal.slots):
                if slot not in offered:
                    problems.append((f"{at}.slots[{k}]", f"publisher {pub.id!r} has no slot {slot!r}"))
            for slot in deal.slots or offered:
                if slot in offered:
                    offered[slot] += deal.share
            for k, dsp in enumerate(deal.dsps):
                if dsp not in dsps:
                    problems.append((f"{at}.dsps[{k}]", f"unknown DSP {dsp!r}"))
            for k, adv in enumerate(deal.advertisers):
                if adv not in advertisers:
                    problems.append((f"{at}.advertisers[{k}]", f"unknown advertiser {adv!r}"))
        for slot, share in offered.items():
            if share > 1.0 + 1e-9:
                problems.append((f"publishers[{i}].deals",
                                 f"deals offer {share:.0%} of slot {slot!r}'s requests (at most 100 %)"))

    problems += supply_rule_problems(s.ssps, s.publishers, s.advertisers, s.dmp.geos)
    problems += size_problems(s)

    if isinstance(s.dmp.consent_rate, dict):
        missing = [geo for geo in s.dmp.geos if geo not in s.dmp.consent_rate]
        unknown = [geo for geo in s.dmp.consent_rate if geo not in s.dmp.geos]
        if missing:
            plural = "s" if len(missing) > 1 else ""
            names = ", ".join(map(repr, missing))
            message = f"no consent rate for geo{plural} {names}: a table by geo lists every geo of dmp.geos"
            problems.append(("dmp.consent_rate", message))
        if unknown:
            plural = "s" if len(unknown) > 1 else ""
            problems.append(("dmp.consent_rate",
                             f"geo{plural} {', '.join(map(repr, unknown))} not in dmp.geos"))

    owners: dict[str, str] = {}  # first-party segment -> its advertiser
    for i, seg in enumerate(s.dmp.segments):
        for j, adv in enumerate(seg.advertisers):
            if adv not in advertisers:
                problems.append((f"dmp.segments[{i}].advertisers[{j}]", f"unknown advertiser {adv!r}"))
        problems += [(f"dmp.segments[{i}].{name}", message) for name, message in _party_problems(seg)]
        if seg.party == "first" and seg.owner is not None:
            if seg.owner in advertisers:
                owners[seg.id] = seg.owner
            else:
                problems.append((f"dmp.segments[{i}].owner", f"unknown advertiser {seg.owner!r}"))

    sim_start, sim_end = s.simulation.start, s.simulation.end
    for i, c in enumerate(s.campaigns):
        at = f"campaigns[{i}]"
        if c.advertiser not in advertisers:
            problems.append((f"{at}.advertiser", f"unknown advertiser {c.advertiser!r}"))
        if c.dsp not in dsps:
            problems.append((f"{at}.dsp", f"unknown DSP {c.dsp!r}"))
        for j, seg in enumerate(c.targeting.segments):
            if seg not in segments:
                problems.append((f"{at}.targeting.segments[{j}]", f"unknown segment {seg!r}"))
            elif owners.get(seg, c.advertiser) != c.advertiser:
                problems.append((f"{at}.targeting.segments[{j}]", f"segment {seg!r} is first-party"
                                 f" data of advertiser {owners[seg]!r}: only its campaigns may"
                                 " target it"))
        external = c.dsp in external_dsps
        if c.strategy is None and not external:
            problems.append((f"{at}.strategy", "missing: a campaign needs a strategy unless its"
                             " DSP is an external bidder (dsps[].endpoint)"))
        elif c.strategy is not None and external:
            problems.append((f"{at}.strategy", f"DSP {c.dsp!r} is an external bidder: its"
                             " bidder decides the bids, so the campaign carries no strategy"))
        elif c.strategy is not None:
            problems += [(f"{at}.strategy.{name}", message)
                         for name, message in missing_in_scenario(c.strategy)]
        for j, cat in enumerate(c.targeting.categories):
            if cat not in categories:
                problems.append((f"{at}.targeting.categories[{j}]",
                                 f"no publisher has category {cat!r}"))
        for j, cat in enumerate(c.targeting.exclude_categories):
            if cat not in categories:
                problems.append((f"{at}.targeting.exclude_categories[{j}]",
                                 f"no publisher has category {cat!r}"))
            elif cat in c.targeting.categories:
                problems.append((f"{at}.targeting.exclude_categories[{j}]",
                                 f"category {cat!r} is both targeted and excluded"))
        for name, wanted in (("domains", c.targeting.domains),
                             ("exclude_domains", c.targeting.exclude_domains)):
            for j, domain in enumerate(wanted):
                if domain.lower() not in domains:
                    problems.append((f"{at}.targeting.{name}[{j}]", f"no publisher has domain {domain!r}"))
        targeted = {d.lower() for d in c.targeting.domains}
        for j, domain in enumerate(c.targeting.exclude_domains):
            if domain.lower() in targeted:
                problems.append((f"{at}.targeting.exclude_domains[{j}]",
                                 f"domain {domain!r} is both targeted and excluded"))
        for j, geo in enumerate(c.targeting.geos):
            if geo not in geos:
                problems.append((f"{at}.targeting.geos[{j}]", f"geo {geo!r} is not in dmp.geos"))
        if c.start and not sim_start <= c.start < sim_end:
            problems.append((f"{at}.start", "flight start is outside the simulation"))
        if c.end and not sim_start < c.end <= sim_end:
            problems.append((f"{at}.end", "flight end is outside the simulation"))
        if c.daily_budget is not None and c.daily_budget > c.budget:
            problems.append((f"{at}.daily_budget", "daily budget exceeds the total budget"))
    return problems


def worst_case_requests(s: Scenario) -> float:
    """An upper bound of a run's expected requests: every slot at its publisher's peak
    hour of its peak weekday for the whole run (the traffic shapes have mean 1)."""

    total = 0.0
    for pub in s.publishers:
        hourly = list(DEFAULT_HOURLY_SHAPE) if pub.hourly_shape is None else pub.hourly_shape
        weekly = pub.weekly_shape or [1.0]
        peak = max(hourly) / (sum(hourly) / len(hourly)) * max(weekly) / (sum(weekly) / len(weekly))
        total += sum(slot.daily_requests for slot in pub.slots) * peak
    return total * s.simulation.duration / 86400.0


def size_problems(s: Scenario) -> list[tuple[str, str]]:
    """Bounds that keep a run's money within int64 micros (rtb.spec_base) and its loops finite."""
    problems = []
    slots = sum(len(pub.slots) for pub in s.publishers)
    if slots > MAX_ITEMS:
        problems.append(("publishers", f"{slots:,} slots in all, at most {MAX_ITEMS:,}"))
    budgets = sum(c.budget for c in s.campaigns)
    if budgets > MAX_TOTAL_BUDGET:
        problems.append(("campaigns", f"budgets total {budgets:.4g}, at most {MAX_TOTAL_BUDGET:.0e}"
                                      " (money is counted in int64 micros)"))
    requests = worst_case_requests(s)
    if requests > MAX_RUN_REQUESTS:
        problems.append(("publishers", f"the slots' daily_requests at the traffic shapes' peak"
                                       f" give up to {requests:.3g} requests over the run,"
                                       f" at most {MAX_RUN_REQUESTS:.0e}"))
    return problems


def _party_problems(seg: SegmentSpec) -> list[tuple[str, str]]:
    """First-party data is an advertiser's own: it has an owner and costs nothing to use."""
    if seg.party != "first":
        return [] if seg.owner is None else [
            ("owner", f"only a first-party segment has an owner; this one is {seg.party}-party")]
    problems = []
    if seg.owner is None:
        problems.append(("owner", "required for a first-party segment: the advertiser whose data it is"))
    if seg.data_cpm != 0:
        problems.append(("data_cpm", f"must be 0 (or left out) for a first-party segment: its owner"
                                     f" does not buy its own data, got {seg.data_cpm:g}"))
    return problems


def _field_path(loc: tuple) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("lognormal", "histogram", *KINDS, "function-after", "function-before",
                      "consent-rate", "consent-table"):
            continue  # pydantic's union-branch tags say nothing to a user
        else:
            path += f".{part}" if path else str(part)
    return path


def _message(error: dict) -> str:
    """pydantic's message, naming NaN and inf as such and without its "Value error, "."""
    match error["type"]:
        case "value_error":
            return str(error["ctx"]["error"])
        case "finite_number":
            return f"must be a finite number, not {error['input']!r}"
    return error["msg"]


def parse_scenario(data: object, file: str, base_dir: str | Path = ".") -> Scenario:
    """Validate decoded scenario data; raise InputError listing every problem.

    Relative file paths in the scenario are resolved against `base_dir` (the scenario
    file's folder) and checked here, so a run never fails half-way on a missing file.
    """
    if not isinstance(data, dict):
        raise InputError.single(file, "", "the top level must be a table/object")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise InputError(file, [(_field_path(e["loc"]), _message(e)) for e in exc.errors()]) from None
    problems = reference_problems(scenario)
    if problems:
        raise InputError(file, problems)
    scenario = _with_resolved_files(scenario, file, Path(base_dir))
    return _with_resolved_strategies(scenario, file, Path(base_dir))


def read_histogram(path: Path, key: str) -> list[float]:
    """The counts list under `key` in a JSON file; ValueError says what is wrong."""
    try:
        raw = read_input(path)
        check_nesting(raw, str(path))
        data = json.loads(raw)
    except FileNotFoundError:
        raise ValueError(f"no such file: {path}") from None
    except InputError as exc:  # not a regular file, too large, nested too deep
        raise ValueError("; ".join(exc.lines())) from None
    except RecursionError:
        raise ValueError(f"{path}: nested too deep") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    counts = data.get(key) if isinstance(data, dict) else None
    if not isinstance(counts, list) or not counts:
        raise ValueError(f"{path} has no non-empty list under key {key!r}")
    if not all(isinstance(x, (int, float)) and x >= 0 for x in counts) or sum(counts) <= 0:
        raise ValueError(f"{path}: {key!r} must hold non-negative numbers with a positive sum")
    return [float(x) for x in counts]


def _with_resolved_files(scenario: Scenario, file: str, base_dir: Path) -> Scenario:
    market = scenario.exchange.market
    if not isinstance(market, HistogramMarketSpec):
        return scenario
    path = (base_dir / market.file).resolve()
    try:
        read_histogram(path, market.key)
    except ValueError as exc:
        raise InputError.single(file, "exchange.market.file", str(exc)) from None
    exchange = scenario.exchange.model_copy(update={"market": market.model_copy(update={"file": str(path)})})
    return scenario.model_copy(update={"exchange": exchange})


def _with_resolved_strategies(scenario: Scenario, file: str, base_dir: Path) -> Scenario:
    """Each user's class (kind "python") imported and built once with its params, so a
    mistake fails here with its path; `folder` made absolute (the scenario's folder by
    default), so that the runs, in any process, import the same module."""
    problems, campaigns, changed = [], list(scenario.campaigns), False
    for i, c in enumerate(campaigns):
        if c.strategy is None or c.strategy.kind != "python":
            continue
        spec, found = resolve_python_strategy(c.strategy, base_dir, f"campaigns[{i}].strategy")
        problems += found
        campaigns[i], changed = c.model_copy(update={"strategy": spec}), True
    if problems:
        raise InputError(file, problems)
    return scenario.model_copy(update={"campaigns": campaigns}) if changed else scenario


def resolve_python_strategy(spec: PythonStrategySpec, base_dir: Path, field: str
                            ) -> tuple[PythonStrategySpec, list[tuple[str, str]]]:
    """(the spec with its folder absolute, the problems found at `field`): its class
    imported from `folder` (relative to base_dir) or the Python path, and built once."""
    from dsp.custom import ClassProblem, construct, load_class

    folder = str((Path(base_dir) / (spec.folder or ".")).resolve())
    spec = spec.model_copy(update={"folder": folder})
    try:
        cls = load_class(spec.class_, folder)
    except ClassProblem as exc:
        return spec, [(f"{field}.class", str(exc))]
    try:
        construct(cls, spec.class_, spec.params)
    except ClassProblem as exc:
        return spec, [(f"{field}.params", str(exc))]
    return spec, []


def load_scenario(path: str | Path) -> Scenario:
    """Read a .toml or .json scenario file; raise InputError on any problem."""
    path = Path(path)
    data = read_document(path)  # regular files of at most 64 MiB (rtb.files)
    return parse_scenario(data, str(path), base_dir=path.resolve().parent)


def json_schema_text() -> str:
    """The scenario file's JSON Schema, for editors: `rtb schema` prints it and
    scenarios/scenario.schema.json is a copy. Keys are sorted, so the text changes only
    when a model does. It checks fields one by one; the cross-field rules (references,
    flights) are reference_problems()'s, so `rtb validate` remains the last word."""
    return json.dumps(Scenario.model_json_schema(), indent=2, sort_keys=True) + "\n"


FORMAT_CODE = {name: i for i, name in enumerate(FORMATS)}
DEVICE_CODE = {name: i for i, name in enumerate(DEVICES)}
