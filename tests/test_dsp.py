"""Demand side: the strategies' bid formulas, campaigns as arrays, and even pacing.

Pacing is checked end to end: over one day an even-paced campaign that could spend its
budget by noon spends nearly all of it, never more, and keeps buying until the evening,
while the same campaign paced "asap" runs dry early.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from dsp.campaigns import NO_LIMIT_MICROS
from dsp.pacing import PACING_ASAP, PACING_EVEN
from dsp.strategies import (BidView, ConstantBid, LinearBid, McpcBid, OrtbBid, RandomBid,
                            ValueBid, from_spec)
from rtb import simulate
from rtb.scenario import parse_scenario
from rtb.seeding import unit_fraction
from rtb.market import build_market


def view(n=5, seed=0) -> BidView:
    rng = np.random.default_rng(seed)
    return BidView(pctr=rng.uniform(0.0005, 0.01, n), pcvr=rng.uniform(0.01, 0.1, n),
                   floor_cpm=rng.uniform(0, 2, n), uniform=rng.random(n))


# ---- strategies ---------------------------------------------------------------------------

def test_constant_bid():
    v = view()
    np.testing.assert_array_equal(ConstantBid(2.5).bid(v), np.full(5, 2.5))


def test_linear_bid():
    v = view()
    np.testing.assert_allclose(LinearBid(3.0, 0.002).bid(v), 3.0 * v.pctr / 0.002)
    # At the average CTR the bid is the base bid.
    at_avg = v._replace(pctr=np.full(5, 0.002))
    np.testing.assert_allclose(LinearBid(3.0, 0.002).bid(at_avg), 3.0)


def test_mcpc_bid_is_expected_cost_per_mille_at_target_cpc():
    v = view()
    np.testing.assert_allclose(McpcBid(0.8).bid(v), 0.8 * v.pctr * 1000)


def test_value_bid():
    v = view()
    np.testing.assert_allclose(ValueBid(90.0, 0.8).bid(v), 0.8 * v.pctr * v.pcvr * 90.0 * 1000)


def test_ortb_bid_concave_formula():
    v = view()
    c, lam = 50.0, 1e-4
    expected = [math.sqrt(c / lam * p + c * c) - c for p in v.pctr]
    bid = OrtbBid(c, lam).bid(v)
    np.testing.assert_allclose(bid, expected)
    order = np.argsort(v.pctr)
    assert (np.diff(bid[order]) >= 0).all()  # monotone in pCTR
    assert (bid <= c / lam * v.pctr / (2 * c) + 1e-12).all()  # concave: below its tangent at 0


def test_random_bid_uniform_below_max():
    rng = np.random.default_rng(3)
    n = 100_000
    v = BidView(np.zeros(n), np.zeros(n), np.zeros(n), rng.random(n))
    bid = RandomBid(4.0).bid(v)
    assert bid.min() >= 0 and bid.max() < 4.0
    assert bid.mean() == pytest.approx(2.0, abs=5 * 4 / math.sqrt(12 * n))


# ---- campaigns as arrays ---------------------------------------------------------------------

SCENARIO = {
    "name": "pacing",
    "simulation": {"seed": 5, "start": "2026-03-02T00:00:00Z", "duration": "1d", "tick": "120s"},
    "exchange": {"auction": "second", "fee": 0.1,
                 "market": {"kind": "lognormal", "median_cpm": 1.0, "sigma": 0.5,
                            "participation": 0.6}},
    "ssps": [{"id": "ssp", "fee": 0.1}],
    "publishers": [{"id": "pub", "ssp": "ssp", "category": "news",
                    "slots": [{"id": "slot", "format": "banner", "device": "mobile",
                               "daily_requests": 60_000, "floor_cpm": 0.3}]}],
    "dsps": [{"id": "dsp", "fee": 0.1}],
    "advertisers": [{"id": "adv", "value_per_conversion": 50.0}],
    "campaigns": [
        {"id": "even", "advertiser": "adv", "dsp": "dsp", "budget": 12.0, "pacing": "even",
         "strategy": {"kind": "fixed", "bid_cpm": 2.0}},
        {"id": "asap", "advertiser": "adv", "dsp": "dsp", "budget": 12.0, "pacing": "asap",
         "strategy": {"kind": "fixed", "bid_cpm": 2.0}},
    ],
    "dmp": {"users": 5_000, "devices": {"desktop": 0.5, "mobile": 0.5},
            "segments": [{"id": "s1", "share": 0.5, "data_cpm": 0.25},
                         {"id": "s2", "share": 0.5, "data_cpm": 0.4}]},
}


def test_strategies_from_specs():
    data = SCENARIO
    spec = parse_scenario(data, "dsp.toml")
    table = build_market(spec).campaigns
    kinds = [type(s) for s in table.strategies]
    assert kinds == [ConstantBid, ConstantBid]
    value = from_spec(
        parse_scenario({**data, "campaigns": [{**data["campaigns"][0],
                                               "strategy": {"kind": "value", "shading": 0.5}}]},
                       "v.toml").campaigns[0].strategy, 40.0)
    assert isinstance(value, ValueBid) and value.value_per_conversion == 40.0


def test_campaign_money_arrays():
    data = {**SCENARIO, "campaigns": [
        {**SCENARIO["campaigns"][0], "daily_budget": 3.5, "targeting": {"segments": ["s1", "s2"]},
         "start": "2026-03-02T06:00:00Z", "end": "2026-03-02T18:30:00Z"},
        SCENARIO["campaigns"][1]]}
    table = build_market(parse_scenario(data, "t.toml"), budget_scale=1.5).campaigns
    assert table.ids == ("even", "asap")
    assert table.budget_micros.tolist() == [18_000_000, 18_000_000]
    assert table.daily_budget_micros.tolist() == [5_250_000, NO_LIMIT_MICROS]
    assert table.data_micros.tolist() == [650, 0]  # both segments' data CPMs, per impression
    assert table.dsp_fee_ppm.tolist() == [100_000, 100_000]
    assert table.flight_start_s.tolist() == [6 * 3600.0, 0.0]
    assert table.flight_end_s.tolist() == [18.5 * 3600.0, 86_400.0]
    assert table.pacing_kind.tolist() == [PACING_EVEN, PACING_ASAP]


def test_pacing_offsets_depend_on_campaign_id_only():
    table = build_market(parse_scenario(SCENARIO, "t.toml")).campaigns
    more = {**SCENARIO, "campaigns": [{**SCENARIO["campaigns"][0], "id": "new"},
                                      *SCENARIO["campaigns"]]}
    bigger = build_market(parse_scenario(more, "t.toml")).campaigns
    assert bigger.pace_offset[1:].tolist() == table.pace_offset.tolist()
    assert table.pace_offset.tolist() == [unit_fraction("campaign/even"),
                                          unit_fraction("campaign/asap")]
    assert len(set(bigger.pace_offset.tolist())) == 3


# ---- pacing --------------------------------------------------------------------------------

def test_even_pacing_spreads_budget_over_the_day(tmp_path):
    log_path = tmp_path / "log.csv"
    report = simulate(parse_scenario(SCENARIO, "pacing.toml"), log_path=log_path).to_dict()
    with open(log_path, newline="") as f:
        rows = list(csv.DictReader(f))
    times = {cid: np.array([float(r["time_s"]) for r in rows if r["campaign_id"] == cid])
             for cid in ("even", "asap")}
    camps = {c["id"]: c for c in report["campaigns"]}
    budget = 12_000_000
    for cid in ("even", "asap"):
        assert round(camps[cid]["spend"] * 1e6) <= budget
    # asap: the budget is gone well before the evening, so pacing has something to do.
    assert round(camps["asap"]["spend"] * 1e6) > 0.99 * budget
    assert times["asap"].max() < 0.7 * 86_400
    # even: nearly all of the budget, and still buying in the last two hours.
    assert round(camps["even"]["spend"] * 1e6) >= 0.9 * budget
    assert (times["even"] > 22 * 3600).sum() > 0
    hours = np.bincount((times["even"] // 3600).astype(int), minlength=24)
    assert hours[:12].sum() < 0.75 * hours.sum()  # not front-loaded like asap


class _Shifted:
    """A strategy without formula(): bid() on the numpy view is its only path."""

    def bid(self, view):
        return view.pctr * 2000.0 + view.floor_cpm

    def observe(self, feedback):
        return None


def test_fused_formulas_give_the_strategies_numpy_bits():
    """The exchange's one-pass bids equal each strategy's own numpy bid() bit for bit,
    max bids and inactive campaigns included; a custom strategy keeps its bid()."""
    from dsp.bidding import CampaignView, bid_formulas, finish_bids, formula_bids

    base = build_market(parse_scenario(SCENARIO, "dsp.toml")).campaigns
    strategies = (ConstantBid(1.7), RandomBid(3.0), LinearBid(2.0, 0.003), McpcBid(0.9),
                  OrtbBid(40.0, 2e-6), ValueBid(40.0, 0.8), _Shifted(), ConstantBid(9.0))
    nc = len(strategies)
    rng = np.random.default_rng(7)
    table = base._replace(
        ids=tuple(f"c{c}" for c in range(nc)), strategies=strategies,
        dsp=np.arange(nc, dtype=np.int32) % 2, ctr_multiplier=rng.uniform(0.5, 1.5, nc),
        cvr_multiplier=rng.uniform(0.5, 1.5, nc),
        max_bid_cpm=(None, 2.5, None, 3.0, None, None, 4.0, None))
    n, n_users = 300, 50
    user_factor = rng.uniform(0.5, 2.0, (n_users, 2)).astype(np.float32)
    user = rng.integers(0, n_users, n)
    base_ctr, base_cvr = rng.uniform(0.001, 0.01, n), rng.uniform(0.01, 0.1, n)
    floor = rng.uniform(0, 2, n)
    active = np.ones(nc, bool)
    active[7] = False
    # Each campaign's own stream (the exchange's dsp/campaign/ID/bids), twice: once for
    # the exchange's path, once for the strategies' own bid().
    def campaign_streams():
        return tuple(np.random.default_rng(100 + c) for c in range(nc))

    # The exchange's two steps: formulas for all (ahead of the tick), then the tick's
    # active set and the custom strategies.
    formulas = bid_formulas(table)
    streams = campaign_streams()
    uniforms = np.array([streams[c].random(n) for c in np.flatnonzero(formulas.uniform_row >= 0)])
    got, predicted_nb = formula_bids(table, formulas, user_factor, base_ctr, base_cvr, user, uniforms)
    got = finish_bids(table, formulas, active, got, predicted_nb, base_cvr, floor, streams)
    predicted = (user_factor[user] * base_ctr[:, None]).T
    for c, (strategy, own) in enumerate(zip(strategies, campaign_streams())):
        want = strategy.bid(CampaignView(predicted[table.dsp[c]], table.ctr_multiplier[c],
                                         base_cvr, table.cvr_multiplier[c], floor, own))
        if table.max_bid_cpm[c] is not None:
            want = np.minimum(want, table.max_bid_cpm[c])
        if not active[c]:
            want = np.full(n, np.nan)
        np.testing.assert_array_equal(got[:, c], want, err_msg=type(strategy).__name__)
    assert (got[:, 1] == 2.5).any() and (got[:, 1] < 2.5).any()  # the max bid bound some


def _random_bidders(second_strategy: dict):
    """Two campaigns on the same traffic: a `random` one, and the second as given."""
    from rtb.exchange import Exchange
    from rtb.state import new_run_state

    camps = [{**SCENARIO["campaigns"][1], "id": "r1", "strategy": {"kind": "random", "max_cpm": 5.0}},
             {**SCENARIO["campaigns"][1], "id": "r2", "strategy": second_strategy}]
    market = build_market(parse_scenario({**SCENARIO, "campaigns": camps}, "r.toml"), 3)
    exchange = Exchange(market, new_run_state(market))
    try:
        return exchange._prepare(0.0, 4 * 3600.0).formula_bids
    finally:
        exchange.close()


def test_random_bidders_are_independent_and_keep_their_draws():
    """Two `random` campaigns bid from their own streams: uncorrelated bids (the old
    shared uniform shifted per campaign made them move together), and one campaign's
    draws stay the same whatever the other's strategy (common random numbers)."""
    both = _random_bidders({"kind": "random", "max_cpm": 5.0})
    n = both.shape[0]
    assert n > 2000
    r = np.corrcoef(both[:, 0], both[:, 1])[0, 1]
    assert abs(r) < 4 / np.sqrt(n), r  # about 4 standard errors of a zero correlation
    assert not np.array_equal(both[:, 0], both[:, 1])
    fixed = _random_bidders({"kind": "fixed", "bid_cpm": 1.0})
    np.testing.assert_array_equal(fixed[:, 0], both[:, 0])
    assert (fixed[:, 1] == 1.0).all()
