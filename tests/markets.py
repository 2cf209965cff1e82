"""Random small markets, their runs and the rules every run must obey, for the tests.

random_scenario() makes small valid scenarios (budgets that bind, daily budgets across
UTC midnight, calendar and rolling caps, flights, targeting, first and second price);
the check_* functions recompute each rule of DESIGN.md from a run's report and its
impression log. tests/test_simulation.py applies them to the quickstart and a few
random markets, tests/test_invariants.py to hundreds of tiny ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from rtb import simulate
from rtb.scenario import Scenario
from rtb.types import cpm_to_micros

DAY = 86_400.0
PPM = 1_000_000


# ---- a generator of small valid scenarios ------------------------------------------

def random_scenario(seed: int, small: bool = False) -> dict:
    """A small market in which budgets, daily budgets and caps bind within hours.

    small: a few hours, a few hundred users, a tenth of the traffic and budgets, longer
    ticks (a run takes about a tenth of a second). The same draws in the same order
    either way, so a seed's scenario keeps its structure (campaigns, caps, targeting).
    """
    rng = np.random.default_rng([1234, seed])
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731
    scale = 0.1 if small else 1.0
    start = datetime(2026, 3, 2, tzinfo=timezone.utc) + timedelta(
        days=int(rng.integers(0, 7)), hours=int(rng.integers(12, 24)))
    duration_h = int(pick([3, 4, 6] if small else [8, 14, 30]))
    iso = lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    categories = ["news", "sports", "food"]
    publishers = []
    for p in range(3):
        publishers.append({
            "id": f"pub-{p}", "ssp": f"ssp-{p % 2}", "category": categories[p],
            "slots": [{"id": f"slot-{k}", "format": pick(["banner", "video", "native"]),
                       "device": pick(["desktop", "mobile"]),
                       "daily_requests": float(rng.integers(15_000, 45_000)) * scale,
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
        budget = round(float(rng.uniform(0.5, 12.0)) * scale, 2)
        camp = {"id": f"camp-{c}", "advertiser": f"adv-{c % 2}", "dsp": f"dsp-{c % 2}",
                "budget": budget, "strategy": pick(strategies)(),
                "pacing": pick(["even", "asap"])}
        if rng.random() < 0.5:
            camp["daily_budget"] = max(0.01, round(budget * float(rng.uniform(0.15, 0.7)), 2))
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
                       "tick": pick(["120s", "300s", "600s"] if small else ["60s", "120s", "300s"])},
        "exchange": {"auction": ("first", "second")[seed % 2], "fee": pick([0.0, 0.1, 0.15]),
                     **({"market": market} if market else {})},
        "ssps": [{"id": "ssp-0", "fee": 0.12}, {"id": "ssp-1", "fee": 0.2}],
        "publishers": publishers,
        "dsps": [{"id": "dsp-0", "fee": 0.1}, {"id": "dsp-1", "fee": 0.155}],
        "advertisers": [{"id": "adv-0", "value_per_conversion": 60.0, "margin": 0.4},
                        {"id": "adv-1", "value_per_conversion": 150.0, "margin": 0.25}],
        "campaigns": campaigns,
        "dmp": {"users": int(rng.integers(200, 600) if small else rng.integers(1500, 4000)), "devices": {"desktop": 0.4, "mobile": 0.6},
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


LOG_FLOATS = ("time_s", "floor_cpm", "bid_cpm", "price_cpm")
LOG_INTS = ("user_id", "clicked", "converted")


def read_log(path: Path) -> dict:
    """The CSV impression log as columns: floats, ints, and the ids as str objects.

    numpy's C reader, not the csv module: on the quickstart's 424,059 rows the csv
    module and zip(*rows) took 3.5-7 s against 0.9 s, the same values (the log's ids
    never need quoting: rtb/impression_log.py). A row cut short, or a cell that is not
    a number where one is due, raises.
    """
    with open(path, newline="") as f:
        header = f.readline().rstrip("\n").split(",")
        empty = f.read(1) == ""
    cols = {}
    for names, dtype in ((LOG_FLOATS, np.float64), (LOG_INTS, np.int64), (None, object)):
        index = [i for i, h in enumerate(header)
                 if (h in names if names else h not in LOG_FLOATS + LOG_INTS)]
        if empty:
            cols.update({header[i]: np.array((), dtype=dtype) for i in index})
            continue
        table = np.loadtxt(path, delimiter=",", skiprows=1, usecols=index, dtype=dtype,
                           comments=None, ndmin=2)
        cols.update({header[i]: table[:, j].copy() for j, i in enumerate(index)})
    return {h: cols[h] for h in header}


def run_scenario(spec: Scenario, path: Path, budget_scale: float = 1.0) -> Run:
    report = simulate(spec, log_path=path, budget_scale=budget_scale).to_dict()
    return Run(spec, report, read_log(path), budget_scale)


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


# ---- the rules -----------------------------------------------------------------------

def check_costs_match_log(run: Run) -> None:
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


def check_spend_within_budget(run: Run) -> None:
    for c in run.spec.campaigns:
        r = run.campaigns[c.id]
        assert micros(r["budget"]) == round(c.budget * run.budget_scale * 1e6)
        assert micros(r["spend"]) <= micros(r["budget"]), c.id


def check_daily_budgets(run: Run) -> None:
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


def check_frequency_caps(run: Run) -> None:
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


def check_prices(run: Run) -> None:
    log = run.log
    assert (log["price_cpm"] >= log["floor_cpm"]).all()
    assert (log["bid_cpm"] >= log["floor_cpm"]).all()
    if run.spec.exchange.auction == "second":
        assert (log["price_cpm"] <= log["bid_cpm"]).all()
    else:
        np.testing.assert_array_equal(log["price_cpm"], log["bid_cpm"])


def check_ledger(run: Run) -> None:
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


def check_counts(run: Run) -> None:
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


def check_all(run: Run) -> None:
    """Every rule above that the report and the log alone decide."""
    for check in (check_costs_match_log, check_spend_within_budget, check_daily_budgets,
                  check_frequency_caps, check_prices, check_ledger, check_counts):
        check(run)
    advertisers = {a.id: a for a in run.spec.advertisers}
    for c in run.report["campaigns"]:
        a = advertisers[c["advertiser"]]
        check_metrics(c, a.value_per_conversion, a.margin)


# ---- a one-slot market with a known competing bid, for theory checks ---------------------------

ONE_SLOT_DAILY_REQUESTS = 60_000
ONE_SLOT_MEDIAN_CPM, ONE_SLOT_SIGMA = 1.0, 0.5  # the rest of the market's lognormal bid


def one_slot_market(*campaigns: dict, auction: str = "second", duration: str = "1d",
                    name: str = "theory", value_per_conversion: float = 50.0) -> dict:
    """One banner slot, 60,000 requests a day, every one also bid on by the rest of the
    market with a lognormal bid of median 1.0 and sigma 0.5; advertiser "adv", DSP "dsp"."""
    return {
        "name": name,
        "simulation": {"seed": 3, "start": "2026-03-02T00:00:00Z", "duration": duration,
                       "tick": "60s"},
        "exchange": {"auction": auction, "fee": 0.0,
                     "market": {"kind": "lognormal", "median_cpm": ONE_SLOT_MEDIAN_CPM,
                                "sigma": ONE_SLOT_SIGMA, "participation": 1.0}},
        "ssps": [{"id": "ssp", "fee": 0.0}],
        "publishers": [{"id": "pub", "ssp": "ssp", "category": "news",
                        "slots": [{"id": "slot", "format": "banner", "device": "mobile",
                                   "daily_requests": ONE_SLOT_DAILY_REQUESTS, "floor_cpm": 0.0}]}],
        "dsps": [{"id": "dsp", "fee": 0.0}],
        "advertisers": [{"id": "adv", "value_per_conversion": value_per_conversion}],
        "campaigns": list(campaigns),
        "dmp": {"users": 20_000, "devices": {"mobile": 1.0}},
    }


def interrupt_run_at(monkeypatch, n: int) -> list:
    """Make rtb.sweep.run_one raise KeyboardInterrupt (a Ctrl-C) on its n-th call; the
    list returned collects the run of every call."""
    import rtb.sweep as sw

    real, calls = sw.run_one, []

    def interrupted(scenario, run, threads=None):
        calls.append(run)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(scenario, run, threads)

    monkeypatch.setattr(sw, "run_one", interrupted)
    return calls
