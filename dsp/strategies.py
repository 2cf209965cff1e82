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

from rtb.strategy_spec import (AnyStrategySpec, FixedBidSpec, LinearBidSpec, McpcBidSpec,
                               OrtbBidSpec, PythonStrategySpec, RandomBidSpec, ValueBidSpec)


class BidView(NamedTuple):
    """What a strategy sees of n requests for one campaign (all arrays f8[n])."""

    pctr: np.ndarray  # predicted click probability
    pcvr: np.ndarray  # predicted conversion probability given a click
    floor_cpm: np.ndarray  # the request's hard floor, CPM
    uniform: np.ndarray  # uniforms in [0, 1) from the campaign's own stream


class Feedback(NamedTuple):
    """What a campaign learns after a tick: its won impressions' prices and clicks."""

    price_cpm: np.ndarray  # f8[n_won]
    clicked: np.ndarray  # bool[n_won]
    spend_micros: int


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


def from_spec(spec: AnyStrategySpec, value_per_conversion: float | None = None) -> Strategy:
    """The strategy a spec (rtb.strategy_spec) describes, for the simulation and rtb replay.

    Every parameter must be set: a scenario gives them all; rtb replay first fills in
    what it derives from its log. value_per_conversion is the advertiser's, for `value`.
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
        case PythonStrategySpec():
            from dsp.custom import build  # a user's class: a fresh instance per call

            return build(spec.class_, spec.params, spec.folder)
    raise ValueError(f"cannot bid with {spec!r}: a parameter it needs is not set")
