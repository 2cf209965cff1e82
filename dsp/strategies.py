"""Bidding strategies: one vectorised implementation each, shared by simulation and replay.

A strategy turns what a DSP knows about a batch of requests (its predicted CTR and
CVR, the floor, and a per-request uniform for randomised strategies) into a CPM bid
per request. NaN means "no bid". Budget, pacing and integer rounding are applied
around the strategy by its caller, never inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from rtb.strategy_spec import (AnyStrategySpec, BudgetOrtbSpec, FixedBidSpec, LinearBidSpec,
                               McpcBidSpec, OrtbBidSpec, PythonStrategySpec, RandomBidSpec,
                               ShadedBidSpec, ValueBidSpec)


class ViewLabels(NamedTuple):
    """The names behind a view's small-integer codes (index = code), and its currency."""

    campaign: str  # the campaign this view is for
    currency: str  # ISO 4217: every amount of the run is in it
    publishers: tuple[str, ...]  # BidView.publisher
    slots: tuple[str, ...]  # BidView.slot, as "publisher,slot"
    formats: tuple[str, ...]  # BidView.format (rtb.types.FORMATS)
    devices: tuple[str, ...]  # BidView.device (rtb.types.DEVICES)
    geos: tuple[str, ...]  # BidView.geo
    segments: tuple[str, ...]  # bit s of BidView.segments is segments[s]
    deals: tuple[str, ...]  # BidView.deal


class BidView(NamedTuple):
    """What a strategy sees of n requests for one campaign (docs/strategies.md,
    "What a bidder sees").

    In a simulation the view holds exactly the tick's requests the campaign may bid
    on: it targets them (format, device, category, geo, segments), brand safety allows
    them, they fall in its flight and a private deal on them admits it. Pacing is
    applied to the bids afterwards (paced_in says where it lets them through). The
    exchange passes a lazy object with these fields (dsp.bidding.CampaignView), each
    computed on first read; this record is for callers that build views themselves
    (rtb replay, tests), which may leave the fields after `uniform` unset (None).
    Arrays are [n]; scalars describe the campaign at the tick's start.
    """

    pctr: np.ndarray  # f8: predicted click probability (the DSP's model)
    pcvr: np.ndarray  # f8: predicted conversion probability given a click
    floor_cpm: np.ndarray  # f8: the request's open-auction hard floor, CPM
    uniform: np.ndarray  # f8: uniforms in [0, 1) from the campaign's own stream
    time_s: np.ndarray | None = None  # f8: arrival, seconds since the run's start
    publisher: np.ndarray | None = None  # i4: index into labels.publishers
    slot: np.ndarray | None = None  # i8: ad slot, index into labels.slots
    format: np.ndarray | None = None  # u1: index into labels.formats
    device: np.ndarray | None = None  # u1: the slot's device, index into labels.devices
    geo: np.ndarray | None = None  # u1: the user's country, index into labels.geos
    segments: np.ndarray | None = None  # u8: bit s set = the user is in labels.segments[s]
    # as the campaign's DSP sees it (matched and consented: the bits targeting uses)
    deal: np.ndarray | None = None  # i4: private-marketplace deal on offer, -1 = none
    deal_floor_cpm: np.ndarray | None = None  # f8: its floor (fixed deals: the price); NaN = none
    paced_in: np.ndarray | None = None  # bool: the campaign's pacing lets a bid through
    spend: float | None = None  # currency units spent so far (media + fees + data)
    budget_left: float | None = None  # currency units of the total budget left
    daily_budget_left: float | None = None  # of today's budget; inf without a daily budget
    day_left_s: float | None = None  # seconds to the next UTC midnight (daily budget reset)
    flight_left_s: float | None = None  # seconds to the campaign's flight end (0 = ended)
    tick_start_s: float | None = None  # the tick is [tick_start_s, tick_end_s), run seconds
    tick_end_s: float | None = None
    labels: ViewLabels | None = None
    requests_left: int | None = None  # rtb replay only: requests left in the episode, this
    # view's included (budget_left is then the episode's budget left; docs/replay.md)


class Feedback(NamedTuple):
    """What a campaign learns after a tick (docs/strategies.md, "What a bidder sees").

    Impressions: those won in this tick, in time order. Conversions: those settled in
    this tick (a conversion comes after its click, often ticks later, even after the
    campaign stopped bidding) that attribution credits to the campaign: the last
    touch of its advertiser on the user within the attribution window, as the
    report's `conversions` counts them.
    """

    price_cpm: np.ndarray  # f8[n_won]: clearing price paid, CPM
    clicked: np.ndarray  # bool[n_won]: the impression was clicked (known at once)
    spend_micros: int  # all of this tick's cost, integer micros (sum of cost, exactly)
    won: np.ndarray | None = None  # i8[n_won]: the impressions' rows in this tick's view
    cost: np.ndarray | None = None  # f8[n_won]: each one's cost, currency units (media +
    # DSP fee + data; whole micros / 1e6)
    time_s: np.ndarray | None = None  # f8[n_won]: the impressions' times, run seconds
    conversion_time_s: np.ndarray | None = None  # f8[n_conv]: settled conversions' times
    conversion_impression_s: np.ndarray | None = None  # f8[n_conv]: the credited impression's
    # time (the campaign's impression it is attributed to; matches a past Feedback.time_s)
    tick_start_s: float | None = None  # the tick [tick_start_s, tick_end_s), run seconds
    tick_end_s: float | None = None


class Strategy(Protocol):
    def bid(self, view: BidView) -> np.ndarray:
        """CPM bid per request, f8[n]; NaN = no bid."""
        ...

    def observe(self, feedback: Feedback) -> None:
        """Learn from the tick's results (may do nothing)."""
        ...


# Formula codes of the built-in strategies, for the exchange's fused bid kernel
# (dsp.bidding): bid = FORMULA(pCTR, pCVR, uniform; p0, p1, p2), the same floating-point
# operations in the same order as the strategy's numpy bid().
FORMULA_CONSTANT = 0  # p0
FORMULA_UNIFORM = 1  # uniform * p0
FORMULA_PCTR = 2  # pCTR * p0
FORMULA_SQRT_PCTR = 3  # sqrt(p0 * pCTR + p1) - p2
FORMULA_VALUE = 4  # pCTR * pCVR * p0
# The built-ins that learn (dsp.adaptive), bid at the tick from the run's Learners state:
FORMULA_BUDGET_ORTB = 5  # v = pCTR * pCVR * p0; sqrt(p1 / lam * v + p1^2) - p1, or v / lam if p1 is NaN
FORMULA_SHADED = 6  # v as above; first price (p1 = 1): the learned grid point, else v
LEARNING_FORMULAS = (FORMULA_BUDGET_ORTB, FORMULA_SHADED)


class _Stateless:
    def observe(self, feedback: Feedback) -> None:  # noqa: D102 - nothing to learn
        return None


def learns(strategy: Strategy) -> bool:
    """Whether the strategy's observe() may do something (the exchange skips the rest)."""
    return getattr(type(strategy), "observe", None) is not _Stateless.observe


@dataclass(frozen=True)
class ConstantBid(_Stateless):
    """The same CPM on every request."""

    bid_cpm: float

    def bid(self, view: BidView) -> np.ndarray:
        return np.full(view.pctr.shape, self.bid_cpm, dtype=np.float64)

    def formula(self) -> tuple[int, float, float, float]:
        return FORMULA_CONSTANT, float(self.bid_cpm), 0.0, 0.0


@dataclass(frozen=True)
class RandomBid(_Stateless):
    """A uniform CPM in [0, max_cpm): the usual sanity baseline."""

    max_cpm: float

    def bid(self, view: BidView) -> np.ndarray:
        return view.uniform * self.max_cpm

    def formula(self) -> tuple[int, float, float, float]:
        return FORMULA_UNIFORM, float(self.max_cpm), 0.0, 0.0


@dataclass(frozen=True)
class LinearBid(_Stateless):
    """Bid in proportion to predicted CTR: base_cpm * pCTR / avg_ctr (Perlich et al. 2012)."""

    base_cpm: float
    avg_ctr: float

    def bid(self, view: BidView) -> np.ndarray:
        return view.pctr * (self.base_cpm / self.avg_ctr)

    def formula(self) -> tuple[int, float, float, float]:
        return FORMULA_PCTR, self.base_cpm / self.avg_ctr, 0.0, 0.0


@dataclass(frozen=True)
class McpcBid(_Stateless):
    """Pay up to a target cost per click: bid CPM = target_cpc * pCTR * 1000."""

    target_cpc: float

    def bid(self, view: BidView) -> np.ndarray:
        return view.pctr * (self.target_cpc * 1000.0)

    def formula(self) -> tuple[int, float, float, float]:
        return FORMULA_PCTR, self.target_cpc * 1000.0, 0.0, 0.0


@dataclass(frozen=True)
class OrtbBid(_Stateless):
    """Optimal RTB, concave form (Zhang et al. 2014): sqrt(c/lambda * pCTR + c^2) - c."""

    c: float
    lam: float

    def bid(self, view: BidView) -> np.ndarray:
        return np.sqrt(self.c / self.lam * view.pctr + self.c * self.c) - self.c

    def formula(self) -> tuple[int, float, float, float]:
        return FORMULA_SQRT_PCTR, self.c / self.lam, self.c * self.c, float(self.c)


@dataclass(frozen=True)
class ValueBid(_Stateless):
    """Value-based linear: bid the expected value of an impression, scaled by `shading`.

    Expected value per impression = pCTR * pCVR * value_per_conversion, so the CPM bid
    is that times 1000. A shading below 1 keeps a margin.
    """

    value_per_conversion: float
    shading: float = 1.0

    def bid(self, view: BidView) -> np.ndarray:
        return view.pctr * view.pcvr * (self.value_per_conversion * self.shading * 1000.0)

    def formula(self) -> tuple[int, float, float, float]:
        return FORMULA_VALUE, self.value_per_conversion * self.shading * 1000.0, 0.0, 0.0


class ExternalSeat(_Stateless):
    """A campaign of an external OpenRTB bidder (rtb/external.py): the exchange fills its
    bids from the bidder's responses; in the built-in pass it bids nothing."""

    def bid(self, view: BidView) -> np.ndarray:
        return np.full(view.pctr.shape, np.nan)

    def formula(self) -> tuple[int, float, float, float]:
        return FORMULA_CONSTANT, float("nan"), 0.0, 0.0


def from_spec(spec: AnyStrategySpec, value_per_conversion: float | None = None,
              auction: str = "second") -> Strategy:
    """The strategy a spec (rtb.strategy_spec) describes, for the simulation and rtb replay.

    Every parameter must be set: a scenario gives them all; rtb replay first fills in
    what it derives from its log. value_per_conversion is the advertiser's, for `value`,
    `shaded` and `budget_ortb`; auction ("first" / "second") the exchange's, for `shaded`.
    """
    match spec:
        case FixedBidSpec(bid_cpm=bid):
            return ConstantBid(bid)
        case LinearBidSpec(base_cpm=base, avg_ctr=avg) if avg is not None:
            return LinearBid(base, avg)
        case ValueBidSpec(shading=shading) if value_per_conversion is not None:
            return ValueBid(value_per_conversion, shading)
        case McpcBidSpec(target_cpc=cpc) if cpc is not None:
            return McpcBid(cpc)
        case OrtbBidSpec(c=c, lam=lam):
            return OrtbBid(c, lam)
        case RandomBidSpec(max_cpm=max_cpm):
            return RandomBid(max_cpm)
        case ShadedBidSpec() if value_per_conversion is not None:
            from dsp.adaptive import ShadedBid

            return ShadedBid(value_per_conversion, auction, spec.max_cpm, spec.explore,
                             spec.warmup, spec.half_life)
        case BudgetOrtbSpec(c=c, lam=lam, step=step) if value_per_conversion is not None:
            from dsp.adaptive import BudgetOrtbBid

            return BudgetOrtbBid(value_per_conversion, c, lam, step)
        case PythonStrategySpec():
            from dsp.custom import build  # a user's class: a fresh instance per call

            return build(spec.class_, spec.params, spec.folder)
    raise ValueError(f"cannot bid with {spec!r}: a parameter it needs is not set")
