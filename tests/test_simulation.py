"""Whole runs: the rules of DESIGN.md checked on reports and impression logs.

The quickstart runs once per session; a generator makes small random scenarios
(budgets that bind, daily budgets across UTC midnight, calendar and rolling caps,
flights, targeting, first and second price). On every run the impression log is read
back and each rule is recomputed from it: spend within the total and daily budgets to
the micro, no (user, campaign) over its cap in any window, prices above floors and
below bids, flights, targeting, the ledger's flows, and the report's derived metrics.
Determinism, common random numbers and --budget-scale are checked on small runs.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from rtb import simulate
from rtb.scenario import DEVICE_CODE, Scenario, load_scenario, parse_scenario
from rtb.types import cpm_to_micros
from rtb.market import build_market

REPO = Path(__file__).resolve().parents[1]
DAY = 86_400.0
PPM = 1_000_000


# ---- a generator of small valid scenarios ------------------------------------------

def random_scenario(seed: int) -> dict:
    """A small market in which budgets, daily budgets and caps bind within hours."""
    rng = np.random.default_rng([1234, seed])
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731
    start = datetime(2026, 3, 2, tzinfo=timezone.utc) + timedelta(
        days=int(rng.integers(0, 7)), hours=int(rng.integers(12, 24)))
    duration_h = int(pick([8, 14, 30]))
    iso = lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    categories = ["news", "sports", "food"]
    publishers = []
    for p in range(3):
        publishers.append({
            "id": f"pub-{p}", "ssp": f"ssp-{p % 2}", "category": categories[p],
            "slots": [{"id": f"slot-{k}", "format": pick(["banner", "video", "native"]),
                       "device": pick(["desktop", "mobile"]),
                       "daily_requests": float(rng.integers(15_000, 45_000)),
                       "floor_cpm": round(float(rng.uniform(0.0, 1.5)), 2)}
                      for k in range(int(rng.integers(1, 3)))]})
    segments = [{"id": f"seg-{k}", "share": round(float(rng.uniform(0.1, 0.5)), 2),
                 "data_cpm": pick([0.0, 0.25, 0.7]), "match_rate": pick([0.6, 1.0]),
                 "cvr_lift": 2.0} for k in range(2)]
    strategies = [
        lambda: {"kind": "fixed", "bid_cpm": round(float(rng.uniform(0.5, 4.0)), 2)},
        lambda: {"kind": "linear", "base_cpm": round(float(rng.uniform(1.0, 4.0)), 2),
                 "avg_ctr": 0.002},
        lambda: {"kind": "value", "shading": round(float(rng.uniform(0.5, 2.0)), 2)},
        lambda: {"kind": "mcpc", "target_cpc": round(float(rng.uniform(0.5, 2.0)), 2)},
        lambda: {"kind": "ortb", "c": 50.0, "lam": 1e-4},
        lambda: {"kind": "random", "max_cpm": round(float(rng.uniform(1.0, 5.0)), 2)},
    ]
    campaigns = []
    for c in range(5):
        budget = round(float(rng.uniform(0.5, 12.0)), 2)
        camp = {"id": f"camp-{c}", "advertiser": f"adv-{c % 2}", "dsp": f"dsp-{c % 2}",
                "budget": budget, "strategy": pick(strategies)(),
                "pacing": pick(["even", "asap"])}
        if rng.random() < 0.5:
            camp["daily_budget"] = round(budget * float(rng.uniform(0.15, 0.7)), 2)
        if rng.random() < 0.35:
            a = int(rng.integers(0, duration_h - 2))
            b = int(rng.integers(a + 1, duration_h + 1))
            camp["start"] = iso(start + timedelta(hours=a, minutes=17))
            camp["end"] = iso(start + timedelta(hours=b))
        targeting = {}
        if rng.random() < 0.4:
            targeting["segments"] = [s["id"] for s in segments if rng.random() < 0.6] or ["seg-0"]
        if rng.random() < 0.3:
            targeting["devices"] = [pick(["desktop", "mobile"])]
        if rng.random() < 0.3:
            targeting["categories"] = sorted({pick(categories), pick(categories)})
        if rng.random() < 0.2:
            targeting["geos"] = ["CA"]
        if targeting:
            camp["targeting"] = targeting
        if rng.random() < 0.75:
            camp["frequency_cap"] = {"impressions": int(rng.integers(1, 4)),
                                     "window": pick(["10m", "1h", "3h", "1d"]),
                                     "kind": pick(["calendar", "rolling"])}
        if rng.random() < 0.3:
            camp["max_bid_cpm"] = 3.0
        campaigns.append(camp)
    market = None
    if rng.random() < 0.8:
        market = {"kind": "lognormal", "median_cpm": round(float(rng.uniform(0.5, 2.0)), 2),
                  "sigma": 0.6, "participation": round(float(rng.uniform(0.3, 0.95)), 2)}
    return {
        "name": f"random-{seed}",
        "simulation": {"seed": seed, "start": iso(start), "duration": f"{duration_h}h",
                       "tick": pick(["60s", "120s", "300s"])},
        "exchange": {"auction": ("first", "second")[seed % 2], "fee": pick([0.0, 0.1, 0.15]),
                     **({"market": market} if market else {})},
        "ssps": [{"id": "ssp-0", "fee": 0.12}, {"id": "ssp-1", "fee": 0.2}],
        "publishers": publishers,
        "dsps": [{"id": "dsp-0", "fee": 0.1}, {"id": "dsp-1", "fee": 0.155}],
        "advertisers": [{"id": "adv-0", "value_per_conversion": 60.0, "margin": 0.4},
                        {"id": "adv-1", "value_per_conversion": 150.0, "margin": 0.25}],
        "campaigns": campaigns,
        "dmp": {"users": int(rng.integers(1500, 4000)), "devices": {"desktop": 0.4, "mobile": 0.6},
                "geos": {"US": 0.7, "CA": 0.3}, "consent_rate": 0.8, "segments": segments},
        "behaviour": {"ctr": {"banner": 0.002, "video": 0.01, "native": 0.005},
                      "conversion_delay": "2h", "attribution_window": "1d"},
    }


# ---- runs and their logs -------------------------------------------------------------

@dataclass
class Run:
    spec: Scenario
    report: dict
    log: dict  # column -> numpy array
    budget_scale: float = 1.0

    @property
    def campaigns(self) -> dict:
        return {c["id"]: c for c in self.report["campaigns"]}


def read_log(path: Path) -> dict:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    cols = dict(zip(header, zip(*rows))) if rows else {h: () for h in header}
    as_type = {"time_s": float, "user_id": int, "floor_cpm": float, "bid_cpm": float,
               "price_cpm": float, "clicked": int, "converted": int}
    return {h: np.array(v, dtype=as_type.get(h, object)) for h, v in cols.items()}


def run_scenario(spec: Scenario, path: Path, budget_scale: float = 1.0) -> Run:
    report = simulate(spec, log_path=path, budget_scale=budget_scale).to_dict()
    return Run(spec, report, read_log(path), budget_scale)


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory) -> Run:
    path = tmp_path_factory.mktemp("quickstart") / "impressions.csv"
    return run_scenario(load_scenario(REPO / "scenarios" / "quickstart.toml"), path)


RUNS = ["quickstart", 0, 1, 2, 3, 4, "2-scaled"]


@pytest.fixture(scope="module", params=RUNS, ids=[f"run-{p}" for p in RUNS])
def run(request, tmp_path_factory) -> Run:
    if request.param == "quickstart":
        return request.getfixturevalue("quickstart_run")
    seed, scale = (2, 2.0) if request.param == "2-scaled" else (request.param, 1.0)
    spec = parse_scenario(random_scenario(seed), f"random-{seed}.toml")
    path = tmp_path_factory.mktemp(f"random{request.param}") / "impressions.csv"
    return run_scenario(spec, path, scale)


def micros(units: float) -> int:
    return round(units * 1_000_000)


def per_impression_cost(run: Run) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(media, DSP fee, data) micros of every logged impression, from the scenario's rates."""
    spec = run.spec
    fee_ppm = {d.id: round(d.fee * PPM) for d in spec.dsps}
    seg_cpm = {s.id: s.data_cpm for s in spec.dmp.segments}
    camp_fee = {c.id: fee_ppm[c.dsp] for c in spec.campaigns}
    camp_data = {c.id: int(cpm_to_micros(sum(seg_cpm[s] for s in c.targeting.segments)))
                 for c in spec.campaigns}
    media = cpm_to_micros(run.log["price_cpm"]).astype(np.int64)
    fee = media * np.array([camp_fee[c] for c in run.log["campaign_id"]], dtype=np.int64) // PPM
    data = np.array([camp_data[c] for c in run.log["campaign_id"]], dtype=np.int64)
    return media, fee, data


def epoch_s(run: Run) -> np.ndarray:
    return run.spec.simulation.start.timestamp() + run.log["time_s"]


# ---- money -----------------------------------------------------------------------------

def test_log_reproduces_each_campaigns_costs(run):
    media, fee, data = per_impression_cost(run)
    camp = run.log["campaign_id"]
    for cid, c in run.campaigns.items():
        mine = camp == cid
        assert mine.sum() == c["impressions"] == c["wins"]
        # Prices are logged with 10 significant digits: at most a micro off per
        # impression in theory, none in practice.
        assert abs(int(media[mine].sum()) - micros(c["media_cost"])) <= 2, cid
        assert abs(int(fee[mine].sum()) - micros(c["fees"])) <= 2, cid
        assert int(data[mine].sum()) == micros(c["data_cost"]), cid
        assert micros(c["spend"]) == micros(c["media_cost"]) + micros(c["fees"]) + micros(c["data_cost"])


def test_spend_never_exceeds_budget(run):
    for c in run.spec.campaigns:
        r = run.campaigns[c.id]
        assert micros(r["budget"]) == round(c.budget * run.budget_scale * 1e6)
        assert micros(r["spend"]) <= micros(r["budget"]), c.id


def test_spend_per_utc_day_never_exceeds_daily_budget(run):
    media, fee, data = per_impression_cost(run)
    cost = media + fee + data
    day = np.floor(epoch_s(run) / DAY).astype(np.int64)
    for c in run.spec.campaigns:
        if c.daily_budget is None:
            continue
        limit = round(c.daily_budget * run.budget_scale * 1e6)
        mine = run.log["campaign_id"] == c.id
        for d in np.unique(day[mine]):
            spent = int(cost[mine & (day == d)].sum())
            assert spent <= limit + 2, (c.id, int(d), spent, limit)


def test_no_user_exceeds_a_frequency_cap_in_any_window(run):
    t = epoch_s(run)
    for c in run.spec.campaigns:
        cap = c.frequency_cap
        if cap is None:
            continue
        mine = run.log["campaign_id"] == c.id
        users, times = run.log["user_id"][mine], t[mine]
        order = np.lexsort((times, users))
        users, times = users[order], times[order]
        n = cap.impressions
        if cap.kind == "rolling":
            # Among any n + 1 consecutive impressions of one user, the first and the
            # last are at least a window apart (times are logged to the millisecond).
            same_user = users[n:] == users[:-n] if users.size > n else np.zeros(0, bool)
            gaps = (times[n:] - times[:-n])[same_user]
            assert (gaps >= cap.window - 0.002).all(), (c.id, gaps.min())
        else:
            window = np.floor(times / cap.window).astype(np.int64)
            _, counts = np.unique(np.stack([users, window]), axis=1, return_counts=True)
            assert counts.size == 0 or counts.max() <= n, (c.id, counts.max())
        report_cap = run.campaigns[c.id]["frequency_cap"]
        assert report_cap["impressions"] == n and report_cap["kind"] == cap.kind
        assert report_cap["window_seconds"] == cap.window


def test_prices_respect_floors_and_bids(run):
    log = run.log
    assert (log["price_cpm"] >= log["floor_cpm"]).all()
    assert (log["bid_cpm"] >= log["floor_cpm"]).all()
    if run.spec.exchange.auction == "second":
        assert (log["price_cpm"] <= log["bid_cpm"]).all()
    else:
        np.testing.assert_array_equal(log["price_cpm"], log["bid_cpm"])


def test_ledger_balances_and_matches_report(run):
    r = run.report
    ledger = {k: (v if k == "imbalance_micros" else micros(v)) for k, v in r["ledger"].items()}
    assert ledger["imbalance_micros"] == 0
    assert (ledger["advertiser_cost"] + ledger["market_cost"]
            == ledger["publisher_revenue"] + ledger["exchange_fees"] + ledger["ssp_fees"]
            + ledger["dsp_fees"] + ledger["data_costs"])
    # The supply side alone: every clearing price is split among exchange, SSP, publisher.
    assert (ledger["campaign_media"] + ledger["market_cost"]
            == ledger["exchange_fees"] + ledger["ssp_fees"] + ledger["publisher_revenue"])
    camps = run.report["campaigns"]
    assert ledger["campaign_media"] == sum(micros(c["media_cost"]) for c in camps)
    assert ledger["dsp_fees"] == sum(micros(c["fees"]) for c in camps)
    assert ledger["data_costs"] == sum(micros(c["data_cost"]) for c in camps)
    assert ledger["advertiser_cost"] == sum(micros(c["spend"]) for c in camps)
    assert ledger["exchange_fees"] == micros(r["exchange"]["fees"])
    assert ledger["publisher_revenue"] == sum(micros(p["revenue"]) for p in r["publishers"])
    media, _, _ = per_impression_cost(run)
    assert abs(int(media.sum()) - ledger["campaign_media"]) <= 2
    # The exchange's fee is its rate of every price, rounded down per impression.
    sold = r["exchange"]["impressions_to_campaigns"] + r["exchange"]["impressions_to_market"]
    gross = (ledger["campaign_media"] + ledger["market_cost"]) * run.spec.exchange.fee
    assert 0 <= gross - ledger["exchange_fees"] <= sold + 1


# ---- counts and derived metrics ----------------------------------------------------------

def test_counts_are_consistent(run):
    r, log = run.report, run.log
    ex = r["exchange"]
    assert ex["impressions_to_campaigns"] == log["time_s"].size
    assert ex["impressions_to_campaigns"] + ex["impressions_to_market"] + ex["unsold"] == ex["requests"]
    assert min(ex.values()) >= 0
    pubs = r["publishers"]
    assert sum(p["requests"] for p in pubs) == ex["requests"]
    assert sum(p["impressions"] for p in pubs) == ex["impressions_to_campaigns"] + ex["impressions_to_market"]
    for p in pubs:
        assert (log["publisher_id"] == p["id"]).sum() <= p["impressions"] <= p["requests"]
        if p["requests"]:
            assert p["fill_rate"] == pytest.approx(p["impressions"] / p["requests"], abs=1e-6)
    for cid, c in run.campaigns.items():
        mine = log["campaign_id"] == cid
        assert c["reach"] == np.unique(log["user_id"][mine]).size
        assert c["clicks"] == int(log["clicked"][mine].sum())
        # Both count the conversions before the end of the run (README), no more.
        assert c["incremental_conversions"] == int(log["converted"][mine].sum())
        assert (log["converted"][mine] <= log["clicked"][mine]).all()
        assert c["reach"] <= c["impressions"]
        assert c["wins"] <= c["bids"]
        if c["bids"]:
            assert c["win_rate"] == pytest.approx(c["wins"] / c["bids"], abs=1e-6)
    assert r["totals"]["reach"] == np.unique(log["user_id"]).size
    assert r["totals"]["impressions"] == log["time_s"].size


def check_metrics(m: dict, value: float | None, margin: float | None) -> None:
    spend = micros(m["spend"]) / 1e6
    approx = lambda x: pytest.approx(x, rel=1e-6, abs=1e-6)  # noqa: E731
    if m["reach"]:
        assert m["frequency"] == approx(m["impressions"] / m["reach"])
    else:
        assert m["frequency"] is None and m["impressions"] == 0
    if value is not None:
        assert m["revenue"] == approx(m["conversions"] * value)
        assert m["incremental_revenue"] == approx(m["incremental_conversions"] * value)
    if spend > 0:
        assert m["roas"] == approx(m["revenue"] / spend)
        if margin is not None:
            assert m["romi"] == approx((m["revenue"] * margin - spend) / spend)
            assert m["incremental_romi"] == approx(
                (m["incremental_revenue"] * margin - spend) / spend)
    else:
        assert m["romi"] is None and m["roas"] is None and m["incremental_romi"] is None
    assert m["cpc"] == (approx(spend / m["clicks"]) if m["clicks"] else None)
    assert m["cpa"] == (approx(spend / m["conversions"]) if m["conversions"] else None)
    assert m["ecpm"] == (approx(m["media_cost"] * 1000 / m["impressions"])
                         if m["impressions"] else None)


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
