"""The tick's per-request work after the kernel, as one numba pass.

After clear_tick the tick used to walk its requests a dozen times in numpy: the
outcomes of the won impressions (dmp.behaviour.ad_outcomes), the money of the sold ones
(rtb.ledger.Ledger.settle and the publishers' revenue) and the per-publisher and
per-campaign tallies (ten np.bincount calls), each a gather, a temporary array and a
Python call. settle_tick does all of it in one walk over the requests in time order,
with the GIL released, so the look-ahead thread's numpy and numba run beside it instead
of waiting for Python.

The results are the old ones to the bit (tests/test_tick_passes.py):
- integers (counts, micros) are exact whatever the order;
- the float sums (pub_floor_sum, pub_price_sum) were np.bincount's, which adds its
  weights in input order into bins that start at 0.0, and the tick's bins were then
  added to the run's: the pass sums the tick's requests in order into bins of its own
  and adds them at the end, the same additions in the same order;
- click and conversion odds are the same products in the same order (numba uses no
  fast-math or fused multiply-add unless asked), compared with the same uniforms;
- a conversion's delay uses numpy's log1p, outside the pass: it runs for a few
  conversions per tick, and a libm log1p could differ from numpy's in the last bit.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from dmp.behaviour import AdOutcomes, Behaviour
from rtb.attribution import TickWins
from rtb.books import TickResult
from rtb.types import MARKET, MICROS_PER_CPM, PPM, UNSOLD, RequestBatch, on_clock


class TallyArrays(NamedTuple):
    """The run tally's arrays the pass adds the tick to (rtb.state.Tally), in place."""

    clicks: np.ndarray  # i8[nc]
    pub_requests: np.ndarray  # i8[np]
    pub_anonymous_requests: np.ndarray  # i8[np]
    pub_impressions: np.ndarray  # i8[np]
    pub_deal_impressions: np.ndarray  # i8[np]
    pub_revenue_micros: np.ndarray  # i8[np]
    pub_floor_sum: np.ndarray  # f8[np]
    pub_price_sum: np.ndarray  # f8[np]
    pub_floor_hits: np.ndarray  # i8[np]


class CampaignOdds(NamedTuple):
    """What the outcomes read per campaign (rtb.market's campaign table)."""

    advertiser: np.ndarray  # i4[nc]
    ctr_multiplier: np.ndarray  # f8[nc]
    cvr_multiplier: np.ndarray  # f8[nc]


# The money a tick settled, in micros: the slots of the array settle_tick_nb returns.
CAMPAIGN_MEDIA, MARKET_COST, EXCHANGE_FEES, SSP_FEES, PUBLISHER_REVENUE, N_MARKET = range(6)


class Settled(NamedTuple):
    """What the rest of the tick reads from the pass."""

    won: np.ndarray  # i8[k]: the requests campaigns won, in time order
    wins: TickWins  # those k impressions' time, user, advertiser, campaign, prior touch
    outcomes: AdOutcomes  # and their outcomes
    impressions_to_market: int


def settle_tick(requests: RequestBatch, result: TickResult, beh: Behaviour, odds: CampaignOdds,
                row_anonymous: np.ndarray | None, exchange_fee_ppm: int,
                pub_ssp_fee_ppm: np.ndarray, tally) -> Settled:
    """Outcomes, money and tallies of one cleared tick; adds them to tally (rtb.state.Tally)
    and its ledger.

    row_anonymous: bool[n_rows] of the targeting rows sold anonymously, or None when no
    request can be (then pub_anonymous_requests is left alone). pub_ssp_fee_ppm: each
    publisher's SSP's fee, i8[np].
    """
    arrays = TallyArrays(tally.clicks, tally.pub_requests, tally.pub_anonymous_requests,
                         tally.pub_impressions, tally.pub_deal_impressions,
                         tally.pub_revenue_micros, tally.pub_floor_sum, tally.pub_price_sum,
                         tally.pub_floor_hits)
    anonymous = row_anonymous if row_anonymous is not None else np.zeros(0, dtype=np.bool_)
    won, wins, clicked, converted, conversion_time_s, money = settle_tick_nb(
        requests, result, beh.ctr_by_format, beh.cvr_by_format, beh.click_fatigue, beh.lift_bits,
        beh.lift, beh.lift_applies, odds, anonymous, exchange_fee_ppm, pub_ssp_fee_ppm, arrays)
    tally.ledger.book(int(money[CAMPAIGN_MEDIA]), int(money[MARKET_COST]),
                      int(money[EXCHANGE_FEES]), int(money[SSP_FEES]),
                      int(money[PUBLISHER_REVENUE]))
    wins = TickWins(*wins)
    # The delays of the few conversions, as dmp.behaviour.ad_outcomes draws them.
    if converted.any():
        late = wins.time_s[converted] - beh.mean_delay_s * np.log1p(-requests.u_delay[won[converted]])
        conversion_time_s[converted] = on_clock(late)
    return Settled(won, wins, AdOutcomes(clicked, converted, conversion_time_s),
                   int(money[N_MARKET]))


@njit(cache=True, nogil=True)
def settle_tick_nb(req, res, ctr_by_format, cvr_by_format, click_fatigue, lift_bits, lift,
                   lift_applies, odds, row_anonymous, exchange_fee_ppm, pub_ssp_fee_ppm, tally):
    """One walk over the tick's requests in time order; see the module's docstring.

    Returns (won i8[k], TickWins' fields, clicked bool[k], converted bool[k], conversion
    time f8[k] (the impression's: the delays are added after), money i8[6]: the slots
    CAMPAIGN_MEDIA..N_MARKET) and adds the tick to tally's arrays. The wins' columns are
    gathered here, while the request's row is in cache, rather than by numpy after.
    """
    n = res.winner.size
    n_pub = tally.pub_requests.size
    anonymity = row_anonymous.size > 0
    floor_sum = np.zeros(n_pub)  # the tick's own bins, added to the run's at the end
    price_sum = np.zeros(n_pub)
    won = np.empty(n, dtype=np.int64)  # allocate, fill, slice
    time_s, user, campaign = np.empty_like(req.time_s), np.empty_like(req.user), np.empty_like(res.winner)
    advertiser = np.empty(n, dtype=odds.advertiser.dtype)
    prior_touch = np.empty_like(res.prior_touch)
    clicked = np.zeros(n, dtype=np.bool_)
    converted = np.zeros(n, dtype=np.bool_)
    money = np.zeros(6, dtype=np.int64)
    k = 0
    for i in range(n):
        pub = req.publisher[i]
        w = res.winner[i]
        tally.pub_requests[pub] += 1
        floor_sum[pub] += req.floor_cpm[i]
        if anonymity and row_anonymous[req.target_row[i]]:
            tally.pub_anonymous_requests[pub] += 1
        if res.deal_won[i]:
            tally.pub_deal_impressions[pub] += 1
        if res.floor_hit[i]:
            tally.pub_floor_hits[pub] += 1
        if w == UNSOLD:
            continue
        # Sold: the price split as rtb.ledger.supply_split does it, cpm_to_micros's rounding.
        price = res.price_cpm[i]
        tally.pub_impressions[pub] += 1
        price_sum[pub] += price
        price_micros = np.int64(price * MICROS_PER_CPM + 0.5)
        exchange_fee = price_micros * exchange_fee_ppm // PPM
        ssp_fee = (price_micros - exchange_fee) * pub_ssp_fee_ppm[pub] // PPM
        publisher = price_micros - exchange_fee - ssp_fee
        money[EXCHANGE_FEES] += exchange_fee
        money[SSP_FEES] += ssp_fee
        money[PUBLISHER_REVENUE] += publisher
        tally.pub_revenue_micros[pub] += publisher
        if w < 0:
            money[MARKET_COST] += price_micros
            if w == MARKET:
                money[N_MARKET] += 1
            continue
        money[CAMPAIGN_MEDIA] += price_micros
        won[k] = i
        time_s[k], user[k], campaign[k] = req.time_s[i], req.user[i], w
        advertiser[k], prior_touch[k] = odds.advertiser[w], res.prior_touch[i]
        # The outcomes as dmp.behaviour.ad_outcomes computes them, product for product.
        fmt = req.format[i]
        p_click = (ctr_by_format[fmt] * req.user_ctr[i] * odds.ctr_multiplier[w]
                   * click_fatigue[res.prior_exposures[i]])
        if req.u_click[i] < p_click:
            clicked[k] = True
            tally.clicks[w] += 1
            p_convert = cvr_by_format[fmt] * odds.cvr_multiplier[w]
            segments, adv = req.user_segments[i], advertiser[k]
            for j in range(lift_bits.size):
                if (segments & lift_bits[j]) != 0 and lift_applies[j, adv]:
                    p_convert = p_convert * lift[j]
            converted[k] = req.u_convert[i] < p_convert
        k += 1
    for p in range(n_pub):
        tally.pub_floor_sum[p] += floor_sum[p]
        tally.pub_price_sum[p] += price_sum[p]
    wins = (time_s[:k], user[:k], advertiser[:k], campaign[:k], prior_touch[:k])
    return won[:k], wins, clicked[:k], converted[:k], time_s[:k].copy(), money
