"""Whole runs: the rules of DESIGN.md checked on reports and impression logs.

The quickstart runs once per session; tests/markets.py makes small random scenarios
(budgets that bind, daily budgets across UTC midnight, calendar and rolling caps,
flights, targeting, first and second price) and holds the rules' checks. On every run
the impression log is read back and each rule is recomputed from it: spend within the
total and daily budgets to the micro, no (user, campaign) over its cap in any window,
prices above floors and below bids, flights, targeting, the ledger's flows, and the
report's derived metrics. Determinism, common random numbers and --budget-scale are
checked on small runs; tests/test_invariants.py checks the rules on hundreds of tiny
markets.
"""

from __future__ import annotations

import math
from pathlib import Path

import markets
import numpy as np
import pytest
from markets import DAY, Run, check_metrics, micros, random_scenario, run_scenario

from rtb import simulate
from rtb.market import build_market
from rtb.scenario import DEVICE_CODE, Scenario, parse_scenario

REPO = Path(__file__).resolve().parents[1]


# ---- runs and their logs -------------------------------------------------------------

RUNS = ["quickstart", 0, 1, 2, 3, 4, "2-scaled"]


@pytest.fixture(scope="module", params=RUNS, ids=[f"run-{p}" for p in RUNS])
def run(request, tmp_path_factory) -> Run:
    if request.param == "quickstart":
        return request.getfixturevalue("quickstart_run")  # tests/conftest.py
    seed, scale = (2, 2.0) if request.param == "2-scaled" else (request.param, 1.0)
    spec = parse_scenario(random_scenario(seed), f"random-{seed}.toml")
    path = tmp_path_factory.mktemp(f"random{request.param}") / "impressions.csv"
    return run_scenario(spec, path, scale)


# ---- money -----------------------------------------------------------------------------

def test_log_reproduces_each_campaigns_costs(run):
    markets.check_costs_match_log(run)


def test_spend_never_exceeds_budget(run):
    markets.check_spend_within_budget(run)


def test_spend_per_utc_day_never_exceeds_daily_budget(run):
    markets.check_daily_budgets(run)


def test_no_user_exceeds_a_frequency_cap_in_any_window(run):
    markets.check_frequency_caps(run)


def test_prices_respect_floors_and_bids(run):
    markets.check_prices(run)


def test_ledger_balances_and_matches_report(run):
    markets.check_ledger(run)


# ---- counts and derived metrics ----------------------------------------------------------

def test_counts_are_consistent(run):
    markets.check_counts(run)


def test_roas_romi_and_ratios_recomputed(run):
    advertisers = {a.id: a for a in run.spec.advertisers}
    for c in run.report["campaigns"]:
        a = advertisers[c["advertiser"]]
        check_metrics(c, a.value_per_conversion, a.margin)
    totals = run.report["totals"]
    check_metrics(totals, None, None)
    camps = run.report["campaigns"]
    for key in ("impressions", "clicks", "conversions", "incremental_conversions"):
        assert totals[key] == sum(c[key] for c in camps), key
    assert micros(totals["spend"]) == sum(micros(c["spend"]) for c in camps)
    assert micros(totals["budget"]) == sum(micros(c["budget"]) for c in camps)
    gross = sum(c["revenue"] * advertisers[c["advertiser"]].margin for c in camps)
    inc_gross = sum(c["incremental_revenue"] * advertisers[c["advertiser"]].margin for c in camps)
    spend = micros(totals["spend"]) / 1e6
    if spend:
        assert totals["romi"] == pytest.approx((gross - spend) / spend, abs=1e-6)
        assert totals["incremental_romi"] == pytest.approx((inc_gross - spend) / spend, abs=1e-6)


# ---- flights and targeting ------------------------------------------------------------------

def test_campaigns_buy_only_inside_their_flight(run):
    start = run.spec.simulation.start.timestamp()
    for c in run.spec.campaigns:
        times = run.log["time_s"][run.log["campaign_id"] == c.id]
        lo = 0.0 if c.start is None else c.start.timestamp() - start
        hi = run.spec.simulation.duration if c.end is None else c.end.timestamp() - start
        # The log rounds times to the millisecond.
        assert (times >= lo - 0.0005).all() and (times < hi + 0.0005).all(), c.id


def test_campaigns_buy_only_what_they_target(run):
    spec, log = run.spec, run.log
    slots = {(p.id, s.id): (p.category, s.format, s.device) for p in spec.publishers
             for s in p.slots}
    world = build_market(spec, budget_scale=run.budget_scale)  # the same audience, rebuilt
    audience = world.audience
    seg_bit = {s.id: i for i, s in enumerate(spec.dmp.segments)}
    for c in spec.campaigns:
        mine = np.flatnonzero(log["campaign_id"] == c.id)
        tg = c.targeting
        for i in mine[:: max(1, mine.size // 2000)]:  # a sample of each campaign's rows
            category, fmt, device = slots[(log["publisher_id"][i], log["slot_id"][i])]
            assert not tg.categories or category in tg.categories
            assert not tg.formats or fmt in tg.formats
            assert not tg.devices or device in tg.devices
        users = log["user_id"][mine]
        assert (audience.device[users] == [DEVICE_CODE[slots[(p, s)][2]] for p, s in
                                           zip(log["publisher_id"][mine], log["slot_id"][mine])]).all()
        if tg.geos:
            allowed = [audience.geo_names.index(g) for g in tg.geos]
            assert np.isin(audience.geo[users], allowed).all(), c.id
        if tg.segments:
            mask = np.uint64(sum(1 << seg_bit[s] for s in tg.segments))
            assert ((audience.visible_segments[users] & mask) != 0).all(), c.id
            assert audience.consent[users].all(), c.id


def test_generator_makes_budgets_and_caps_bind(tmp_path):
    """Across the random scenarios budgets, daily budgets and caps all bind somewhere."""
    bound = {"out_of_budget": 0, "frequency_capped": 0, "below_floor": 0, "lost_to_market": 0}
    daily_hit = 0
    for seed in (0, 1, 3):
        spec = parse_scenario(random_scenario(seed), "r.toml")
        report = simulate(spec).to_dict()
        for c, r in zip(spec.campaigns, report["campaigns"]):
            for k in bound:
                bound[k] += r["bid_outcomes"][k]
            if c.daily_budget is not None and r["bid_outcomes"]["out_of_budget"]:
                daily_hit += 1
    assert all(v > 0 for v in bound.values()), bound
    assert daily_hit > 0


# ---- determinism, common random numbers, budget scale -----------------------------------------

@pytest.fixture(scope="module")
def small_spec() -> Scenario:
    return parse_scenario(random_scenario(1), "random-1.toml")


def test_same_seed_gives_byte_identical_report_and_log(small_spec, tmp_path):
    a = simulate(small_spec, log_path=tmp_path / "a.csv").to_json()
    b = simulate(small_spec, log_path=tmp_path / "b.csv").to_json()
    assert a == b
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_drawing_ahead_in_a_second_thread_changes_nothing(small_spec, tmp_path, monkeypatch):
    """The look-ahead thread draws the next tick's inputs from their own streams, in
    tick order: report and log are the same bytes as drawing them in line."""
    import rtb.exchange

    runs = []
    for threshold in (0.0, math.inf):  # always draw ahead, never
        monkeypatch.setattr(rtb.exchange, "LOOK_AHEAD_MIN_REQUESTS", threshold)
        log = tmp_path / f"{threshold}.csv"
        runs.append((simulate(small_spec, log_path=log).to_json(), log.read_bytes()))
    assert runs[0] == runs[1]
    assert runs[0][1].count(b"\n") > 100


def test_other_seed_gives_other_report(small_spec):
    a = simulate(small_spec).to_dict()
    b = simulate(small_spec, seed=small_spec.simulation.seed + 1).to_dict()
    assert b["scenario"]["seed"] == small_spec.simulation.seed + 1
    assert a != b
    assert a["exchange"]["requests"] != b["exchange"]["requests"]


def test_changing_one_strategy_keeps_the_traffic(small_spec):
    """Common random numbers: the requests, users and organic conversions do not move."""
    base = simulate(small_spec).to_dict()
    campaigns = list(small_spec.campaigns)
    old = campaigns[0].strategy
    new = {"kind": "random", "max_cpm": 7.0} if old.kind != "random" else {"kind": "fixed", "bid_cpm": 6.0}
    data = small_spec.model_dump(mode="json")
    data["campaigns"][0]["strategy"] = new
    other = simulate(parse_scenario(data, "changed.toml")).to_dict()
    assert other["campaigns"][0] != base["campaigns"][0]
    assert other["exchange"]["requests"] == base["exchange"]["requests"]
    assert [p["requests"] for p in other["publishers"]] == [p["requests"] for p in base["publishers"]]
    assert [p["avg_floor_cpm"] for p in other["publishers"]] == [p["avg_floor_cpm"] for p in base["publishers"]]
    assert other["audience"] == base["audience"]


def test_budget_scale_doubles_every_budget(small_spec):
    base = simulate(small_spec).to_dict()
    scaled = simulate(small_spec, budget_scale=2.0).to_dict()
    assert scaled["scenario"]["budget_scale"] == 2.0
    for b, s, spec in zip(base["campaigns"], scaled["campaigns"], small_spec.campaigns):
        assert micros(s["budget"]) == round(spec.budget * 2 * 1e6) >= micros(b["budget"])
        assert micros(s["spend"]) <= micros(s["budget"])
    assert scaled["exchange"]["requests"] == base["exchange"]["requests"]


def test_budget_scale_must_be_positive(small_spec):
    with pytest.raises(ValueError):
        simulate(small_spec, budget_scale=0.0)


def test_quickstart_sells_to_everyone(quickstart_run):
    """The quickstart is a showcase: every campaign buys and the market takes the rest."""
    r = quickstart_run.report
    assert all(c["impressions"] > 0 for c in r["campaigns"])
    assert r["exchange"]["impressions_to_market"] > 0
    assert r["scenario"]["name"] == "quickstart" and r["scenario"]["seed"] == 7
    assert math.isclose(r["scenario"]["duration"], DAY)
