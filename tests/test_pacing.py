"""Pacing against theory: traffic-following even, PID and dual pacing (dsp/pacing.py).

One market throughout: a day of one slot (60,000 requests, the default hourly shape),
a competing market bid on every request (lognormal, median 1, sigma 0.5), no floor and
no fees, so a campaign pays the market's bid when its own is higher: the price
distribution is known, and so is everything a budget-constrained bidder should do.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dsp.pacing import ExpectedTraffic, Pacer
from rtb import simulate
from rtb.engine import _run
from rtb.exchange import Exchange
from rtb.market import build_market
from rtb.scenario import parse_scenario
from markets import ONE_SLOT_DAILY_REQUESTS, ONE_SLOT_MEDIAN_CPM, ONE_SLOT_SIGMA, one_slot_market
from rtb.state import new_run_state
from rtb.supply_spec import DEFAULT_HOURLY_SHAPE

DAILY_REQUESTS, MEDIAN_CPM, SIGMA = ONE_SLOT_DAILY_REQUESTS, ONE_SLOT_MEDIAN_CPM, ONE_SLOT_SIGMA
BUDGET = 20.0  # about a third of what bidding 3.00 CPM on everything would spend


def scenario(*campaigns: dict, duration: str = "1d") -> dict:
    return one_slot_market(*campaigns, duration=duration, name="pacing-theory")


def campaign(cid: str, pacing, strategy=None, budget: float = BUDGET) -> dict:
    return {"id": cid, "advertiser": "adv", "dsp": "dsp", "budget": budget, "pacing": pacing,
            "strategy": strategy or {"kind": "fixed", "bid_cpm": 3.0}}


def run_with_history(data: dict):
    """(report dict, per tick: (t, pace_share copy, bid_multiplier copy)) of a run."""
    market = build_market(parse_scenario(data, "pacing.toml"))
    state = new_run_state(market)
    history = []
    exchange = Exchange(market, state)
    try:
        _run(market, state, exchange, lambda f: history.append(
            (f * market.duration_s, state.pace_share.copy(), state.bid_multiplier.copy())))
    finally:
        exchange.close()
    from rtb.report import build_report
    return build_report(market, state).to_dict(), history


def hourly_spend(tmp_path, data: dict, cid: str) -> np.ndarray:
    """f8[24]: the campaign's spend by hour of the day, from the impression log."""
    import csv

    log = tmp_path / f"{cid}.csv"
    simulate(parse_scenario(data, "pacing.toml"), log_path=log)
    with open(log, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["campaign_id"] == cid]
    hour = np.array([float(r["time_s"]) // 3600 for r in rows]).astype(int)
    price = np.array([float(r["price_cpm"]) for r in rows]) / 1000
    return np.bincount(hour, weights=price, minlength=24)


def traffic_share() -> np.ndarray:
    shape = np.array(DEFAULT_HOURLY_SHAPE)
    return shape / shape.sum()


# ---- expected traffic ------------------------------------------------------------------

def test_expected_traffic_is_the_generators_rate_integrated():
    market = build_market(parse_scenario(scenario(campaign("a", "even")), "p.toml"))
    traffic = ExpectedTraffic(market.inventory, market.start.timestamp(), market.duration_s,
                              market.campaigns.slot_words)
    hours = np.arange(25) * 3600.0
    upto = np.array([traffic.upto(np.array([t]))[0] for t in hours])
    np.testing.assert_allclose(np.diff(upto), DAILY_REQUESTS * traffic_share(), rtol=1e-12)
    half = traffic.upto(np.array([5.5 * 3600]))[0]
    assert half == pytest.approx((upto[5] + upto[6]) / 2)


# ---- even follows the traffic ------------------------------------------------------------

def test_even_spend_follows_the_hourly_traffic_share(tmp_path):
    spend = hourly_spend(tmp_path, scenario(campaign("even", "even")), "even")
    total = spend.sum()
    assert total >= 0.98 * BUDGET
    share = spend / total
    expected = traffic_share()
    # Each hour's spend is a sum over its impressions: its relative noise is about
    # sqrt((1 + cv^2) / n) with n = the hour's impressions and cv the price's coefficient
    # of variation (below 1 here); the controller's lag adds a little, hence 4 sigma + 2 %.
    n_impressions = total / (MEDIAN_CPM / 1000) * expected  # a rough count per hour
    sigma = expected * np.sqrt(2.0 / n_impressions)
    assert np.all(np.abs(share - expected) <= 4 * sigma + 0.02 * expected), (
        np.round(share / expected, 3))


def test_hour_zero_takes_its_share_not_twice(tmp_path):
    spend = hourly_spend(tmp_path, scenario(campaign("even", "even")), "even")
    ratio = spend[0] / spend.sum() / traffic_share()[0]
    assert 0.8 < ratio < 1.2  # it was about 2 when the first 15 minutes ran unthrottled


# ---- pid and dual spend a binding budget -------------------------------------------------

@pytest.mark.parametrize("pacing", ["pid", "dual", {"kind": "pid", "kp": 1.0, "ki": 1.0, "kd": 0.1},
                                    {"kind": "dual", "step": 1.0}])
def test_adaptive_pacing_spends_a_binding_budget(tmp_path, pacing):
    kind = pacing if isinstance(pacing, str) else pacing["kind"]
    spend = hourly_spend(tmp_path, scenario(campaign(kind, pacing)), kind)
    assert 0.98 * BUDGET <= spend.sum() <= BUDGET + 1e-6
    # and spread over the day, not spent by the morning
    assert spend[20:].sum() > 0.5 * BUDGET * traffic_share()[20:].sum()


# ---- dual pacing converges to the fluid optimum ------------------------------------------

def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def _spend_per_request(m: float, max_value: float) -> float:
    """Expected spend (CPM units) per request bidding m * v, v ~ U(0, max_value), against
    p ~ lognormal(ln median, sigma), second price: E_v[E[p; p <= m v]]."""
    v = (np.arange(20_000) + 0.5) / 20_000 * max_value
    mu_ln = math.log(MEDIAN_CPM)
    x = np.log(m * v)
    partial = math.exp(mu_ln + SIGMA**2 / 2) * _normal_cdf((x - mu_ln - SIGMA**2) / SIGMA)
    return float(partial.mean())


def test_dual_multiplier_converges_to_the_fluid_optimum():
    """The fluid problem: maximise E[(v - p) 1{b >= p}] over bids b(v), subject to
    N * E[p 1{b >= p}] / 1000 <= budget. Its Lagrangian is maximised by b = v / (1 + mu)
    (a constant multiplier), with mu* the smallest mu >= 0 that meets the budget:
    N * S(1 / (1 + mu*)) / 1000 = budget, S(m) the expected spend per request at m.
    Values: the random strategy's U(0, 6) draws."""
    max_value = 6.0
    data = scenario(campaign("dual", "dual", {"kind": "random", "max_cpm": max_value}))
    report, history = run_with_history(data)
    per_request = BUDGET * 1000 / DAILY_REQUESTS
    lo, hi = 1e-3, 1.0
    assert _spend_per_request(hi, max_value) > per_request  # the budget binds
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _spend_per_request(mid, max_value) < per_request else (lo, mid)
    optimal = (lo + hi) / 2
    later = np.array([m[0] for t, _, m in history if 6 * 3600 <= t < 22 * 3600])
    assert later.mean() == pytest.approx(optimal, rel=0.05), (later.mean(), optimal)
    assert np.abs(later / optimal - 1).max() < 0.25  # it stays near, not just on average
    assert all(s[0] == 1.0 for _, s, _ in history)  # dual never throttles
    spend = report["campaigns"][0]["spend"]
    assert 0.98 * BUDGET <= spend <= BUDGET


# ---- pacing moves no other draw ----------------------------------------------------------

def assert_same_draws(reports: list[dict], other: str) -> None:
    """The runs saw the same requests and organic conversions, and campaign `other` the
    same opportunities (requests it could bid on: all but the untargeted)."""
    def opportunities(r: dict) -> int:
        c = next(c for c in r["campaigns"] if c["id"] == other)
        return sum(c["bid_outcomes"].values()) - c["bid_outcomes"]["not_targeted"]

    first = reports[0]
    for r in reports[1:]:
        assert r["exchange"]["requests"] == first["exchange"]["requests"]
        assert [p["requests"] for p in r["publishers"]] == [p["requests"] for p in first["publishers"]]
        assert r["audience"]["organic_conversions"] == first["audience"]["organic_conversions"]
        assert opportunities(r) == opportunities(first)


def test_swapping_one_campaigns_pacing_leaves_the_draws_alone():
    other = campaign("other", "even", {"kind": "fixed", "bid_cpm": 2.0}, budget=15.0)
    reports = [simulate(parse_scenario(scenario(campaign("a", p, budget=4.0), other, duration="6h"), "p.toml")
                        ).to_dict() for p in ("asap", "even", "pid", "dual")]

    assert_same_draws(reports, "other")
    assert len({r["campaigns"][0]["spend"] for r in reports}) == 4  # the pacing did act


def test_swapping_one_campaigns_strategy_leaves_the_draws_alone():
    """Built-in, learning and Python strategies alike: the request stream, the audience's
    organic conversions and the other campaign's opportunities do not move."""
    other = campaign("other", "even", {"kind": "fixed", "bid_cpm": 2.0}, budget=15.0)
    strategies = [{"kind": "fixed", "bid_cpm": 3.0}, {"kind": "value", "shading": 0.5},
                  {"kind": "budget_ortb"}, {"kind": "shaded"}, {"kind": "random", "max_cpm": 6.0}]
    reports = [simulate(parse_scenario(scenario(campaign("a", "even", s, budget=4.0), other,
                                                duration="6h"), "p.toml")).to_dict()
               for s in strategies]

    assert_same_draws(reports, "other")
    assert len({r["campaigns"][0]["impressions"] for r in reports}) > 1  # the strategies did act


def test_pacer_starts_throttled():
    market = build_market(parse_scenario(
        scenario(campaign("a", "asap"), campaign("e", "even"), campaign("p", "pid"),
                 campaign("d", "dual")), "p.toml"))
    share, multiplier = np.zeros(4), np.zeros(4)
    table = market.campaigns
    Pacer(table, ExpectedTraffic(market.inventory, market.start.timestamp(), market.duration_s,
                                 table.slot_words), share, multiplier)
    assert share.tolist()[0] == 1.0 and share[1] < 1 and share[2] < 1 and share[3] == 1.0
    assert multiplier.tolist() == [1.0] * 4
