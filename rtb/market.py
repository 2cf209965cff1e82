"""build_market(): a validated scenario becomes the immutable market of a run.

The market is every array and id label the specs describe, built once; after it
nothing reads a pydantic model. What a run changes lives in rtb/state.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from dmp.audience import Audience, build_audience
from dmp.behaviour import Behaviour, build_behaviour
from dmp.identity import first_ids
from dsp.campaigns import CampaignTable, build_campaigns
from rtb.openrtb_wire import WireBook, build_wire
from rtb.scenario import Scenario
from rtb.seeding import stream
from rtb.types import CLOCK_UNITS_PER_S, MECHANISMS, PPM
from ssp.deals import DealBook, build_deals
from ssp.floors import FloorBook, build_floors
from ssp.inventory import Inventory, build_inventory
from ssp.market import BackgroundMarket


@dataclass(frozen=True)
class Labels:
    """Names for the report and the impression log (index = the arrays' index)."""

    scenario: str
    currency: str  # ISO 4217: every amount of the run is in it
    start: str  # ISO 8601, UTC
    auction: str  # "first" / "second"
    campaigns: tuple[str, ...]
    advertisers: tuple[str, ...]
    dsps: tuple[str, ...]
    publishers: tuple[str, ...]
    ssps: tuple[str, ...]
    slots: tuple[str, ...]  # "publisher,slot" per slot, as the log writes them
    segments: tuple[str, ...] = ()  # the DMP's segments: bit s of a segment mask is segments[s]


@dataclass(frozen=True)
class Market:
    """Everything one run reads and never changes: specs made arrays, and their labels."""

    seed: int
    budget_scale: float
    start: datetime
    duration_s: float
    tick_s: float
    mechanism: int
    exchange_fee_ppm: int
    inventory: Inventory
    background: BackgroundMarket
    audience: Audience
    behaviour: Behaviour
    campaigns: CampaignTable
    deals: DealBook
    floors: FloorBook  # the rules' floors; a run with dynamic floors moves a copy (run state)
    user_factor: np.ndarray  # f4[n_users, n_dsp]: each DSP's estimate of click propensity, per id
    advertiser_value: np.ndarray  # f8[n_adv]: revenue per conversion
    advertiser_margin: np.ndarray  # f8[n_adv]
    advertiser_cap_impressions: np.ndarray  # i4[n_adv]: calendar cap; 0 = none
    advertiser_cap_window_s: np.ndarray  # f8[n_adv]: its window (1.0 where none)
    labels: Labels
    wire: WireBook  # the market as OpenRTB fields (external bidders, --openrtb-log)
    advertiser_bids: bool = False  # report.advertiser_bids: the run keeps a BidBook

    @property
    def n_users(self) -> int:
        """Id rows: what the per-user books are sized by (device-users without dmp.identity;
        with it every id of the run, then one no-id row per geo)."""
        return self.audience.geo.size

    @property
    def n_device_users(self) -> int:
        """The DMP's users (dmp.users): devices of people, drawn by activity."""
        return self.audience.device.size


def _dsp_user_factor(s: Scenario, audience: Audience, seed: int) -> np.ndarray:
    """Truth times a mean-one lognormal error per (id, DSP): a CTR model that is wrong.

    Per id, not per device-user: a DSP's estimate is learnt from the id's history, so a
    churned id gets an estimate of its own. The ids alive at the start (and login ids)
    take the draws a device-user took before ids existed (common random numbers with
    a run without churn); the later ids draw from a stream of their own. A no-id row's
    estimate is the population's mean, 1.
    """
    identity = audience.identity
    n_dev = audience.device.size
    factor = np.empty((audience.ctr_propensity.size, len(s.dsps)), dtype=np.float32)
    first = None if identity.trivial else np.flatnonzero(first_ids(identity))
    for d, dsp in enumerate(s.dsps):
        sigma = dsp.ctr_model_error
        error = stream(seed, f"dsp/{dsp.id}/model-error").lognormal(-0.5 * sigma * sigma, sigma, n_dev)
        if first is None:
            factor[:, d] = audience.ctr_propensity * error
            continue
        per_id = stream(seed, f"dsp/{dsp.id}/model-error/ids").lognormal(
            -0.5 * sigma * sigma, sigma, factor.shape[0])
        per_id[first] = error[identity.id_device[first]]
        per_id[identity.no_id_row:] = 1.0
        factor[:, d] = audience.ctr_propensity * per_id
    return factor


def _labels(s: Scenario) -> Labels:
    return Labels(
        scenario=s.name,
        currency=s.currency,
        start=s.simulation.start.isoformat(),
        auction=s.exchange.auction,
        campaigns=tuple(c.id for c in s.campaigns),
        advertisers=tuple(a.id for a in s.advertisers),
        dsps=tuple(d.id for d in s.dsps),
        publishers=tuple(p.id for p in s.publishers),
        ssps=tuple(x.id for x in s.ssps),
        slots=tuple(f"{pub.id},{slot.id}" for pub in s.publishers for slot in pub.slots),
        segments=tuple(seg.id for seg in s.dmp.segments),
    )


def _read_only(value):
    """Freeze every array in value (a NamedTuple's fields, recursively): a run that
    tried to write the market would fail loudly instead of changing the next run."""
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
    elif isinstance(value, tuple):
        for item in value:
            _read_only(item)
    return value


def build_market(s: Scenario, seed: int | None = None, budget_scale: float = 1.0) -> Market:
    """The market of one run: `seed` overrides the scenario's; budgets times budget_scale."""
    seed = s.simulation.seed if seed is None else seed
    inventory = build_inventory(s.ssps, s.publishers)
    audience = build_audience(s.dmp, s.behaviour.user_ctr_sigma, seed, s.simulation.duration)
    caps = [a.frequency_cap for a in s.advertisers]
    market = Market(
        seed=seed,
        budget_scale=budget_scale,
        start=s.simulation.start,
        duration_s=s.simulation.duration,
        # Ticks start on the clock (types.on_clock), so each tick's event times do too.
        tick_s=max(round(s.simulation.tick * CLOCK_UNITS_PER_S), 1) / CLOCK_UNITS_PER_S,
        mechanism=MECHANISMS[s.exchange.auction],
        exchange_fee_ppm=round(s.exchange.fee * PPM),
        inventory=inventory,
        background=BackgroundMarket(s.exchange.market),
        audience=audience,
        behaviour=build_behaviour(s),
        campaigns=build_campaigns(s, inventory, audience, budget_scale),
        deals=build_deals(s),
        floors=build_floors(s, audience.geo_names),
        user_factor=_dsp_user_factor(s, audience, seed),
        advertiser_value=np.array([a.value_per_conversion for a in s.advertisers]),
        advertiser_margin=np.array([a.margin for a in s.advertisers]),
        advertiser_cap_impressions=np.array([cap.impressions if cap else 0 for cap in caps],
                                            dtype=np.int32),
        advertiser_cap_window_s=np.array([cap.window if cap else 1.0 for cap in caps]),
        labels=_labels(s),
        wire=build_wire(s),
        advertiser_bids=s.report.advertiser_bids,
    )
    for name in ("inventory", "audience", "behaviour", "campaigns", "deals", "floors",
                 "user_factor", "advertiser_value", "advertiser_margin",
                 "advertiser_cap_impressions", "advertiser_cap_window_s"):
        _read_only(getattr(market, name))
    return market
