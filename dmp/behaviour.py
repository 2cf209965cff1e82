"""Users' true behaviour: clicks with fatigue, conversions (ad-caused and organic), delays."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rtb.scenario import Scenario
from rtb.types import FORMATS, SECONDS_PER_DAY, on_clock


class Behaviour(NamedTuple):
    ctr_by_format: np.ndarray  # f8[n_formats]
    cvr_by_format: np.ndarray  # f8[n_formats]
    # CTR multiplier after n earlier exposures, (1 - fatigue) ** n for n = 0..255
    # (exposures saturate at 255): looked up per impression instead of a pow().
    click_fatigue: np.ndarray  # f8[256]
    mean_delay_s: float
    organic_rate_per_s: float  # conversions per user per second per advertiser
    attribution_window_s: float
    lift_bits: np.ndarray  # u8[k]: segments with a conversion lift
    lift: np.ndarray  # f8[k]
    lift_applies: np.ndarray  # bool[k, n_adv]


def build_behaviour(s: Scenario) -> Behaviour:
    b = s.behaviour
    adv_ids = [a.id for a in s.advertisers]
    lifted = [(bit, seg) for bit, seg in enumerate(s.dmp.segments) if seg.cvr_lift != 1.0]
    applies = np.array([[not seg.advertisers or a in seg.advertisers for a in adv_ids]
                        for _, seg in lifted], dtype=np.bool_).reshape(len(lifted), len(adv_ids))
    return Behaviour(
        ctr_by_format=np.array([b.ctr[f] if f in b.ctr else 0.0 for f in FORMATS]),
        cvr_by_format=np.array([b.cvr[f] if f in b.cvr else 0.0 for f in FORMATS]),
        click_fatigue=(1.0 - b.fatigue) ** np.arange(256),
        mean_delay_s=b.conversion_delay,
        organic_rate_per_s=b.organic_conversion_rate / SECONDS_PER_DAY,
        attribution_window_s=b.attribution_window,
        lift_bits=np.array([np.uint64(1) << np.uint64(bit) for bit, _ in lifted], dtype=np.uint64),
        lift=np.array([seg.cvr_lift for _, seg in lifted]),
        lift_applies=applies,
    )


class AdOutcomes(NamedTuple):
    clicked: np.ndarray  # bool[k]
    converted: np.ndarray  # bool[k]: the click leads to a conversion
    conversion_time_s: np.ndarray  # f8[k]: when it happens (meaningful where converted)


def ad_outcomes(beh: Behaviour, time_s: np.ndarray, fmt: np.ndarray, user_ctr: np.ndarray,
                user_segments: np.ndarray, advertiser: np.ndarray, ctr_mult: np.ndarray,
                cvr_mult: np.ndarray, prior_exposures: np.ndarray, u_click: np.ndarray,
                u_convert: np.ndarray, u_delay: np.ndarray) -> AdOutcomes:
    """True outcomes of k won impressions, from uniforms drawn for every request up front.

    P(click) = CTR(format) * user propensity * creative multiplier * (1 - fatigue)^n,
    n = the user's earlier exposures to the campaign. P(convert | click) = CVR(format)
    * campaign multiplier * lifts of the user's segments relevant to the advertiser.
    The delay is exponential with the scenario's mean.
    """
    p_click = beh.ctr_by_format[fmt] * user_ctr * ctr_mult * beh.click_fatigue[prior_exposures]
    clicked = u_click < p_click
    # Conversion odds only for the clicks (a conversion needs one): a few per thousand.
    k = np.flatnonzero(clicked)
    p_convert = beh.cvr_by_format[fmt[k]] * cvr_mult[k]
    segments, adv = user_segments[k], advertiser[k]
    for bit, lift, applies in zip(beh.lift_bits, beh.lift, beh.lift_applies):
        member = ((segments & bit) != 0) & applies[adv]
        p_convert = np.where(member, p_convert * lift, p_convert)
    converted = np.zeros_like(clicked)
    converted[k] = u_convert[k] < p_convert
    # Delays only for the few conversions; 1 - u is in (0, 1], so the log is finite.
    conversion_time_s = time_s.copy()
    conversion_time_s[converted] = on_clock(time_s[converted]
                                            - beh.mean_delay_s * np.log1p(-u_delay[converted]))
    return AdOutcomes(clicked, converted, conversion_time_s)


def organic_conversions(beh: Behaviour, n_users: int, n_advertisers: int, t0: float, t1: float,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Conversions that happen without any ad: (time_s, user, advertiser), time-sorted.

    One Poisson count for all advertisers, then a uniform user, advertiser and time each.
    """
    expected = beh.organic_rate_per_s * n_users * n_advertisers * (t1 - t0)
    k = int(rng.poisson(expected))
    time_s = on_clock(np.sort(rng.uniform(t0, t1, k)))
    user = rng.integers(0, n_users, k)
    advertiser = rng.integers(0, n_advertisers, k)
    return time_s, user, advertiser
