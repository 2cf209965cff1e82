"""rtb.tick_passes.settle_tick against the numpy formulation it replaced in
rtb/exchange.py (outcomes by dmp.behaviour.ad_outcomes, money by Ledger.settle, tallies
by np.bincount), on random ticks: every count, micro and float sum to the bit."""

from __future__ import annotations

import numpy as np
import pytest

from dmp.behaviour import Behaviour, ad_outcomes
from rtb.attribution import TickWins
from rtb.books import TickResult
from rtb.state import Tally
from rtb.tick_passes import CampaignOdds, settle_tick
from rtb.types import MARKET, UNSOLD, RequestBatch, cpm_to_micros

N_FORMATS, N_ADV, N_CAMP, N_PUB, N_SSP, N_ROWS = 3, 4, 7, 5, 3, 9


def _count(index, size, weights=None):
    return np.bincount(index, weights=weights, minlength=size)


def _int_sum(index, values, size):
    return np.rint(_count(index, size, values.astype(np.float64))).astype(np.int64)


def _settle_py(requests, result, beh, odds, row_anonymous, exchange_fee_ppm, ssp_fee_ppm,
               publisher_ssp, tally):
    """The tick's glue after the kernel as rtb/exchange.py had it (_outcomes,
    _settle_money, _tally), before settle_tick."""
    won = np.flatnonzero(result.winner >= 0)
    camp = result.winner[won]
    outcomes = ad_outcomes(beh, requests.time_s[won], requests.format[won],
                           requests.user_ctr[won], requests.user_segments[won],
                           odds.advertiser[camp], odds.ctr_multiplier[camp],
                           odds.cvr_multiplier[camp], result.prior_exposures[won],
                           requests.u_click[won], requests.u_convert[won], requests.u_delay[won])
    sold = np.flatnonzero(result.winner != -1)
    pub = requests.publisher[sold]
    pub_revenue = tally.ledger.settle(cpm_to_micros(result.price_cpm[sold]),
                                      result.winner[sold] >= 0, exchange_fee_ppm,
                                      ssp_fee_ppm[publisher_ssp[pub]])
    tally.pub_revenue_micros += _int_sum(pub, pub_revenue, tally.n_publishers)
    n_pub, pub, winner = tally.n_publishers, requests.publisher, result.winner
    sold = winner != -1
    tally.clicks += _count(winner[won][outcomes.clicked], tally.n_campaigns)
    tally.requests += winner.size
    tally.impressions_to_campaigns += won.size
    tally.impressions_to_market += int(np.count_nonzero(winner == MARKET))
    tally.pub_requests += _count(pub, n_pub)
    if row_anonymous is not None:
        tally.pub_anonymous_requests += _count(pub[row_anonymous[requests.target_row]], n_pub)
    tally.pub_impressions += _count(pub[sold], n_pub)
    tally.pub_deal_impressions += _count(pub[result.deal_won], n_pub)
    tally.pub_floor_sum += _count(pub, n_pub, requests.floor_cpm)
    tally.pub_price_sum += _count(pub[sold], n_pub, result.price_cpm[sold])
    tally.pub_floor_hits += _count(pub[result.floor_hit], n_pub)
    return won, outcomes


def _behaviour(rng) -> Behaviour:
    n_lift = int(rng.integers(0, 4))
    bits = rng.choice(64, n_lift, replace=False).astype(np.uint64)
    return Behaviour(
        ctr_by_format=rng.uniform(0.05, 0.5, N_FORMATS), cvr_by_format=rng.uniform(0.05, 0.6, N_FORMATS),
        click_fatigue=(1.0 - rng.uniform(0, 0.3)) ** np.arange(256),
        mean_delay_s=float(rng.uniform(60, 86_400)), organic_rate_per_s=0.0,
        attribution_window_s=86_400.0,
        lift_bits=np.array([np.uint64(1) << b for b in bits], dtype=np.uint64),
        lift=rng.uniform(0.5, 4.0, n_lift), lift_applies=rng.random((n_lift, N_ADV)) < 0.6)


def _tick(rng, n):
    """A random cleared tick: requests in time order, winners of every kind, prices near
    half-micro boundaries, floors of many magnitudes (so float sums depend on order)."""
    f8 = lambda lo, hi: rng.uniform(lo, hi, n)
    requests = RequestBatch(
        time_s=np.sort(f8(0, 3600)), slot=rng.integers(0, 20, n),
        target_row=rng.integers(0, N_ROWS, n), publisher=rng.integers(0, N_PUB, n).astype(np.int32),
        format=rng.integers(0, N_FORMATS, n).astype(np.uint8), deal=np.full(n, -1, dtype=np.int32),
        market_cpm=f8(0, 5), floor_cpm=np.exp(f8(-8, 4)), user=(user := rng.integers(0, 1000, n)),
        user_row=(user + 1).astype(np.int32), device_user=rng.integers(0, 1000, n), person=rng.integers(0, 1000, n),
        geo=np.zeros(n, dtype=np.uint8), user_ctr=np.exp(f8(-1, 1)).astype(np.float32),
        user_segments=rng.integers(0, 2**63, n, dtype=np.uint64) | rng.integers(0, 2, n, dtype=np.uint64) << np.uint64(63),
        u_pace=f8(0, 1), u_click=f8(0, 1), u_convert=f8(0, 1), u_delay=f8(0, 1))
    winner = rng.choice(np.array([UNSOLD, MARKET, *range(N_CAMP)], dtype=np.int32), n)
    half_micros = (rng.integers(0, 20_000, n) + rng.choice([0.5, 0.4999999, 0.25], n)) / 1000.0
    price = np.where(winner != UNSOLD, np.where(rng.random(n) < 0.5, half_micros, f8(0, 40)), 0.0)
    prior = np.where(rng.random(n) < 0.1, rng.integers(0, 256, n), rng.integers(0, 4, n))
    result = TickResult(winner, price, prior.astype(np.uint8),
                        (winner != UNSOLD) & (rng.random(n) < 0.2), rng.random(n) < 0.7,
                        rng.random(n) < 0.3, rng.integers(-1, 2**40, n),
                        np.zeros(n, dtype=np.int32), np.zeros(n, dtype=np.int64))
    return requests, result


def _tally(rng) -> Tally:
    tally = Tally(N_CAMP, N_PUB)
    tally.pub_floor_sum += rng.uniform(0, 1e6, N_PUB)  # a run already under way
    tally.pub_price_sum += rng.uniform(0, 1e6, N_PUB)
    tally.pub_requests += rng.integers(0, 1000, N_PUB)
    return tally


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("anonymity", [False, True])
def test_settle_tick_equals_the_numpy_formulation(seed, anonymity):
    rng = np.random.default_rng([77, seed, anonymity])
    beh = _behaviour(rng)
    odds = CampaignOdds(rng.integers(0, N_ADV, N_CAMP).astype(np.int32),
                        rng.uniform(0.5, 3.0, N_CAMP), rng.uniform(0.5, 3.0, N_CAMP))
    row_anonymous = (rng.random(N_ROWS) < 0.4) if anonymity else None
    exchange_fee_ppm = int(rng.integers(0, 300_000))
    ssp_fee_ppm = rng.integers(0, 300_000, N_SSP)
    publisher_ssp = rng.integers(0, N_SSP, N_PUB).astype(np.int32)
    state = rng.bit_generator.state
    expected, actual = _tally(rng), None
    rng.bit_generator.state = state
    actual = _tally(rng)
    for n in (0, 1, int(rng.integers(2, 50)), int(rng.integers(5000, 20_000))):  # ticks in a row
        requests, result = _tick(rng, n)
        won, outcomes = _settle_py(requests, result, beh, odds, row_anonymous, exchange_fee_ppm,
                                   ssp_fee_ppm, publisher_ssp, expected)
        settled = settle_tick(requests, result, beh, odds, row_anonymous, exchange_fee_ppm,
                              ssp_fee_ppm[publisher_ssp], actual)
        actual.requests += n
        actual.impressions_to_campaigns += settled.won.size
        actual.impressions_to_market += settled.impressions_to_market
        assert _same(settled.won, won)
        camp = result.winner[won]
        old_wins = TickWins(requests.time_s[won], requests.user[won], odds.advertiser[camp], camp,
                            result.prior_touch[won])  # as _settle_conversions gathered them
        for name in TickWins._fields:
            assert _same(getattr(settled.wins, name), getattr(old_wins, name)), name
        for name in ("clicked", "converted", "conversion_time_s"):
            assert _same(getattr(settled.outcomes, name), getattr(outcomes, name)), name
        if n > 1000:  # the random tick exercises what it should
            assert outcomes.clicked.sum() > 10 and outcomes.converted.sum() > 1
    for name in ("clicks", "pub_requests", "pub_anonymous_requests", "pub_impressions",
                 "pub_deal_impressions", "pub_revenue_micros", "pub_floor_sum", "pub_price_sum",
                 "pub_floor_hits"):
        assert _same(getattr(actual, name), getattr(expected, name)), name
    for name in ("requests", "impressions_to_campaigns", "impressions_to_market"):
        assert getattr(actual, name) == getattr(expected, name), name
    assert actual.ledger == expected.ledger
    assert actual.ledger.publisher_revenue > 0


def test_float_sums_keep_bincounts_order():
    """The tick's floors are summed on their own, then added to the run's sum: adding
    them one by one to the run's sum would round differently."""
    tally = Tally(1, 1)
    tally.pub_floor_sum[0] = 1.0
    n = 3
    requests = RequestBatch(*(np.zeros(n) for _ in RequestBatch._fields))._replace(
        publisher=np.zeros(n, dtype=np.int32), format=np.zeros(n, dtype=np.uint8),
        target_row=np.zeros(n, dtype=np.int64), user_segments=np.zeros(n, dtype=np.uint64),
        floor_cpm=np.array([2.0**-53, 2.0**-53, 0.0]))
    result = TickResult(np.full(n, UNSOLD, dtype=np.int32), np.zeros(n), np.zeros(n, dtype=np.uint8),
                        np.zeros(n, dtype=np.bool_), np.zeros(n, dtype=np.bool_),
                        np.zeros(n, dtype=np.bool_), np.zeros(n, dtype=np.int64),
                        np.zeros(n, dtype=np.int32), np.zeros(n, dtype=np.int64))
    beh = Behaviour(np.zeros(1), np.zeros(1), np.ones(256), 1.0, 0.0, 1.0,
                    np.zeros(0, dtype=np.uint64), np.zeros(0), np.zeros((0, 1), dtype=np.bool_))
    odds = CampaignOdds(np.zeros(1, dtype=np.int32), np.ones(1), np.ones(1))
    settle_tick(requests, result, beh, odds, None, 0, np.zeros(1, dtype=np.int64), tally)
    assert tally.pub_floor_sum[0] == 1.0 + 2.0**-52  # not (1 + 2**-53) + 2**-53 == 1.0
