"""People and their ids (dmp/identity.py) in the run: churn, devices, logins, consent by geo.

The expectations are derived here from the model's stated rules (exponential id
lifetimes, Poisson request streams, consent per geo), not copied from a run.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dmp.identity import build_identity, churn_starts, current_ids, group_people
from rtb.books import all_touches
from rtb.engine import Run
from rtb.errors import InputError
from rtb.scenario import Scenario, load_scenario, reference_problems

HOUR, DAY = 3_600.0, 86_400.0


def market_dict(*, users=300, daily_requests=216_000.0, duration="1d", geos=None,
                consent=1.0, identity=None, campaigns=None, segments=None, behaviour=None,
                devices=None) -> dict:
    """One flat-traffic desktop banner slot, no floor, no rest of the market: a campaign
    that bids on everything wins every request it targets."""
    dmp = {"users": users, "activity_skew": 0.0, "devices": devices or {"desktop": 1.0},
           "geos": geos or {"US": 1.0}, "consent_rate": consent,
           "segments": segments or []}
    if identity is not None:
        dmp["identity"] = identity
    slot_device = "desktop" if devices is None else "mobile"
    slots = [{"id": "s", "format": "banner", "device": "desktop", "daily_requests": daily_requests,
              "floor_cpm": 0.0}]
    if devices is not None:
        slots.append({"id": "m", "format": "banner", "device": slot_device,
                      "daily_requests": daily_requests, "floor_cpm": 0.0})
    return {
        "name": "identity",
        "simulation": {"seed": 3, "start": "2026-03-02T00:00:00Z", "duration": duration,
                       "tick": "600s"},
        "exchange": {"auction": "first", "fee": 0.0},
        "ssps": [{"id": "x", "fee": 0.0}],
        "publishers": [{"id": "p", "ssp": "x", "category": "news", "hourly_shape": [1.0] * 24,
                        "weekly_shape": [1.0] * 7, "slots": slots}],
        "dsps": [{"id": "d", "fee": 0.0}],
        "advertisers": [{"id": "a", "value_per_conversion": 10.0, "margin": 0.5}],
        "campaigns": campaigns or [
            {"id": "all", "advertiser": "a", "dsp": "d", "budget": 1e6, "pacing": "asap",
             "strategy": {"kind": "fixed", "bid_cpm": 1.0}}],
        "dmp": dmp,
        "behaviour": behaviour or {},
    }


def run(spec: dict) -> Run:
    r = Run(Scenario.model_validate(spec))
    r.report = r.finish().to_dict()
    return r


def by_id(report: dict) -> dict:
    return {c["id"]: c for c in report["campaigns"]}


# ---- (a) churn only: ids per person from the lifetime distribution ----------------------

def expected_ids_seen(request_rate: float, churn_rate: float, duration: float) -> float:
    """Distinct ids seen on one device over [0, D] when its requests are Poisson (rate λ)
    and its id changes Poisson (rate μ: exponential lifetimes).

    A request at t is its id's first when no request came since the id began:
    P = e^{-(λ+μ)t} (the start's id, no request yet) + ∫_0^t μ e^{-μs} e^{-λs} ds. Summed
    over the requests: E = λμD/(λ+μ) + λ²/(λ+μ)² (1 - e^{-(λ+μ)D}); μ = 0 gives
    1 - e^{-λD} (seen at all), λ → ∞ gives 1 + μD (every id of the run).
    """
    lam, mu, d = request_rate, churn_rate, duration
    s = lam + mu
    return lam * mu * d / s + (lam / s) ** 2 * (1.0 - math.exp(-s * d))


def test_churn_ids_per_person_match_the_exponential_lifetime():
    users, lifetime, daily = 300, 4 * HOUR, 216_000.0
    r = run(market_dict(users=users, daily_requests=daily, identity={"id_lifetime": "4h"}))
    identity = r.market.audience.identity
    # Every id the run holds: 1 + D / lifetime per device on average (Poisson changes).
    mu_d = DAY / lifetime
    assert abs((identity.no_id_row / users) - (1 + mu_d)) < 5 * math.sqrt(mu_d / users)
    assert identity.n_people == users and not identity.login.any()
    # The ids the campaign reached: every request is won, so reach = ids seen.
    lam = daily / users / DAY  # every device-user's request rate (equal activity, flat traffic)
    per_device_seen = expected_ids_seen(lam, 1 / lifetime, DAY)
    p_seen = 1.0 - math.exp(-lam * DAY)
    c = by_id(r.report)["all"]
    assert c["impressions"] == r.report["exchange"]["requests"]
    assert c["reach_people"] == pytest.approx(users * p_seen, abs=2)
    expected_ratio = per_device_seen / p_seen
    measured = c["reach"] / c["reach_people"]
    assert abs(measured - expected_ratio) < 5 * math.sqrt((1 + mu_d) / users), (measured, expected_ratio)
    assert expected_ratio > 6.0  # the churn is seen: about 7 ids per person, not 1


def test_churn_draws_are_a_poisson_count_of_uniform_times():
    count, start = churn_starts(2 * HOUR, DAY, 20_000, root_seed=1)
    assert count.mean() == pytest.approx(12.0, abs=5 * math.sqrt(12 / 20_000))
    assert count.var() == pytest.approx(12.0, rel=0.05)  # Poisson: variance = mean
    assert start.size == count.sum() and (start >= 0).all() and (start < DAY).all()
    assert start.mean() == pytest.approx(DAY / 2, rel=0.01)
    owner = np.repeat(np.arange(count.size), count)
    assert (np.diff(start)[np.diff(owner) == 0] >= 0).all()  # each device's in time order
    none, _ = churn_starts(None, DAY, 10, root_seed=1)
    assert (none == 0).all()


def test_a_request_carries_the_id_alive_at_its_time():
    n = 50
    ident = build_identity(HOUR, [1.0], 0.0, DAY, n, np.ones(n, bool), np.zeros(n, np.uint8), 1,
                           root_seed=4)
    u = np.repeat(np.arange(n), 200)
    t = np.tile(np.linspace(0.0, DAY - 1.0, 200), n)
    ids = current_ids(ident, u, t)
    # The id is one of the device's and the latest started at or before t.
    assert (ids >= ident.first_id[u]).all() and (ids < ident.first_id[u + 1]).all()
    assert (ident.id_start_s[ids] <= t).all()
    following = ids + 1
    later_one = following < ident.first_id[u + 1]
    assert (ident.id_start_s[following[later_one]] > t[later_one]).all()
    assert (ident.person[ids] == u).all()


# ---- (b) consent by geo ------------------------------------------------------------

def test_consent_by_geo_hides_segments_and_ids_only_where_it_is_refused():
    segment = [{"id": "all", "share": 1.0, "match_rate": 1.0}]
    geos, consent = {"US": 0.5, "DE": 0.5}, {"US": 1.0, "DE": 0.0}

    def camp(cid, geo, segments):
        targeting = {"geos": [geo], **({"segments": ["all"]} if segments else {})}
        return {"id": cid, "advertiser": "a", "dsp": "d", "budget": 1e6, "pacing": "asap",
                "targeting": targeting, "strategy": {"kind": "fixed", "bid_cpm": 1.0}}

    kw = {"users": 400, "daily_requests": 20_000.0, "duration": "6h", "geos": geos,
          "consent": consent, "segments": segment, "identity": {}}
    seg = by_id(run(market_dict(**kw, campaigns=[camp("seg-us", "US", True),
                                                 camp("seg-de", "DE", True)])).report)
    ctx = by_id(run(market_dict(**kw, campaigns=[camp("ctx-us", "US", False),
                                                 camp("ctx-de", "DE", False)])).report)
    assert seg["seg-us"]["impressions"] > 1000 and seg["seg-de"]["impressions"] == 0
    assert seg["seg-de"]["bid_outcomes"]["not_targeted"] > 1000  # it did bid there
    assert ctx["ctx-us"]["impressions"] > 1000 and ctx["ctx-de"]["impressions"] > 1000
    # Without consent no id: every impression is one more id to the platform, while the
    # people are the few hundred of the geo.
    de = ctx["ctx-de"]
    assert de["reach"] == de["impressions"] and de["reach_people"] <= 400 < de["reach"]
    assert ctx["ctx-us"]["reach"] == ctx["ctx-us"]["reach_people"]  # one stable id each


def test_consent_table_must_list_every_geo():
    spec = market_dict(geos={"US": 0.5, "DE": 0.3, "FR": 0.2}, consent={"US": 0.9, "DE": 0.4})
    problems = reference_problems(Scenario.model_validate(spec))
    message = "no consent rate for geo 'FR': a table by geo lists every geo of dmp.geos"
    assert ("dmp.consent_rate", message) in problems
    spec = market_dict(consent={"US": 0.9, "XX": 0.4})
    assert ("dmp.consent_rate", "geo 'XX' not in dmp.geos") in reference_problems(
        Scenario.model_validate(spec))


def test_identity_fields_are_validated(tmp_path):
    path = tmp_path / "s.json"
    for identity, message in [({"devices_per_person": {"11": 1.0}}, "dmp.identity.devices_per_person"),
                              ({"devices_per_person": {"2": 0.0}}, "positive weight"),
                              ({"login_share": 1.5}, "dmp.identity.login_share"),
                              ({"id_lifetime": "0s"}, "dmp.identity.id_lifetime"),
                              ({"lifetime": "1d"}, "dmp.identity.lifetime")]:
        path.write_text(json.dumps(market_dict(identity=identity)))
        with pytest.raises(InputError) as err:
            load_scenario(path)
        assert message in str(err.value), (identity, str(err.value))


# ---- (c) no churn, one device, consent 1: ids are people ------------------------------

def test_trivial_identity_changes_no_figure():
    spec = market_dict(users=300, daily_requests=30_000.0, duration="6h", campaigns=[
        {"id": "capped", "advertiser": "a", "dsp": "d", "budget": 1e6, "pacing": "asap",
         "frequency_cap": {"impressions": 3, "window": "1h"},
         "strategy": {"kind": "fixed", "bid_cpm": 1.0}},
        {"id": "other", "advertiser": "a", "dsp": "d", "budget": 20.0,
         "strategy": {"kind": "fixed", "bid_cpm": 2.0}}],
        behaviour={"ctr": {"banner": 0.05}, "cvr": {"banner": 0.3}, "conversion_delay": "10m",
                   "organic_conversion_rate": 0.5})
    plain = run(spec)
    spec["dmp"]["identity"] = {}
    people = run(spec)
    ident = people.market.audience.identity
    n = people.market.n_device_users
    assert (ident.person[:n] == np.arange(n)).all() and (ident.first_id == np.arange(n + 1)).all()
    assert ident.no_id_row == n and not ident.login.any()
    strip = ("identity", "audience")  # the identity block says which model ran
    a = {k: v for k, v in plain.report.items() if k not in strip}
    b = {k: v for k, v in people.report.items() if k not in strip}
    assert a == b
    for c in b["campaigns"]:
        assert c["reach"] == c["reach_people"] and c["cap_leakage"] == 0
    assert b["campaigns"][0]["impressions"] > 0 and b["totals"]["conversions"] > 0


# ---- (d) login ids ------------------------------------------------------------------

def test_login_ids_never_churn_and_span_a_persons_devices():
    n = 3_000
    person = group_people([0.0, 0.5, 0.5], n, root_seed=8)
    sizes = np.bincount(person)
    assert set(np.unique(sizes[:-1])) == {2, 3}  # (the last person may be cut short)
    consent = np.ones(n, bool)
    ident = build_identity(HOUR, [0.0, 0.5, 0.5], 0.5, DAY, n, consent, np.zeros(n, np.uint8), 1,
                           root_seed=8, device_person=person)
    assert ident.login.mean() == pytest.approx(0.5, abs=5 * math.sqrt(0.25 / ident.n_people))
    u = np.repeat(np.arange(n), 48)
    t = np.tile(np.arange(48) * HOUR / 2, n)
    ids = current_ids(ident, u, t)
    logged = ident.login[person[u]]
    # A login person: one id on every device at every time; its rows are the person's.
    for p in np.flatnonzero(ident.login)[:200]:
        assert np.unique(ids[person[u] == p]).size == 1
    assert (ident.person[ids] == person[u]).all()
    # The others churn (a mean lifetime of an hour over a day) and never share ids.
    churned = ids[~logged].reshape(-1, 48)
    assert np.mean([np.unique(row).size for row in churned]) > 10
    owner = np.full(ident.n_rows, -1)
    owner[ids[~logged]] = u[~logged]
    assert (owner[ids[~logged]] == u[~logged]).all()


def test_login_people_are_reached_once_across_devices():
    spec = market_dict(users=200, daily_requests=20_000.0, duration="6h",
                       devices={"desktop": 0.5, "mobile": 0.5},
                       identity={"id_lifetime": "1h", "devices_per_person": {"2": 1.0},
                                 "login_share": 1.0})
    c = by_id(run(spec).report)["all"]
    assert c["impressions"] > 1000 and c["reach"] == c["reach_people"] <= 100


# ---- (e) no consent: never capped, never attributed -----------------------------------

def test_a_request_without_consent_is_never_capped_nor_attributed():
    spec = market_dict(users=100, daily_requests=20_000.0, duration="6h", consent=0.0,
                       identity={}, campaigns=[
                           {"id": "capped", "advertiser": "a", "dsp": "d", "budget": 1e6,
                            "pacing": "asap", "frequency_cap": {"impressions": 1, "window": "1d"},
                            "strategy": {"kind": "fixed", "bid_cpm": 1.0}}],
                       behaviour={"ctr": {"banner": 0.2}, "cvr": {"banner": 0.5},
                                  "conversion_delay": "5m", "organic_conversion_rate": 1.0})
    r = run(spec)
    c = by_id(r.report)["capped"]
    assert c["bid_outcomes"]["frequency_capped"] == 0
    assert c["impressions"] == r.report["exchange"]["requests"] > 100 * 10  # far past 1 per person
    assert c["reach"] == c["impressions"] and c["reach_people"] == 100
    assert c["cap_leakage"] == c["impressions"] - 100  # the person-level truth sees it
    assert c["incremental_conversions"] > 20 and r.report["audience"]["organic_conversions"] > 20
    assert c["conversions"] == 0  # attributed: none, no id ever carried a touch
    assert not r.state.users.exposures.any() and (all_touches(r.state.users) == -1).all()
