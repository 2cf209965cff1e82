"""publishers[].advertisers[]: who bought each publisher's inventory, and, with
report.advertiser_bids, what they bid for it.

On a tiny market whose campaigns bid on every request (no targeting, no pacing, so
every bid made is a bid received), the report is checked against the bids the
exchange cleared (caught at the kernel's call) and the impression log: bids, wins and
spend to the unit and the micro, the mean to its rounding, the median to within 0.5 %.
"""

from __future__ import annotations

import copy
import csv
from collections import defaultdict

import numpy as np
import pytest

from rtb import simulate
from rtb.estimate import estimate
from rtb.scenario import parse_scenario
from rtb.shards import Clearing
from rtb.types import MAX_BID_CPM, cpm_to_micros

CAMPAIGN_ADVERTISER = {"shoes-random": "shoes", "shoes-fixed": "shoes", "bank-random": "bank",
                       "gadgets-small": "gadgets"}


def market(advertiser_bids: bool = True) -> dict:
    def pub(pid, category):
        return {"id": pid, "ssp": "ssp", "domain": f"{pid}.example", "category": category,
                "slots": [{"id": "banner", "format": "banner", "device": "mobile",
                           "daily_requests": 30_000, "floor_cpm": 0.5}]}

    def camp(cid, strategy, budget=5_000.0):
        return {"id": cid, "advertiser": CAMPAIGN_ADVERTISER[cid], "dsp": "dsp", "budget": budget,
                "pacing": "asap", "strategy": strategy}

    return {
        "name": "advertiser-bids",
        "simulation": {"seed": 3, "start": "2026-05-04T10:00:00Z", "duration": "1h", "tick": "60s"},
        "exchange": {"auction": "second", "fee": 0.1,
                     "market": {"kind": "lognormal", "median_cpm": 1.5, "sigma": 0.5,
                                "participation": 0.6}},
        "ssps": [{"id": "ssp", "fee": 0.15}],
        "publishers": [pub("news", "news"), pub("games", "games")],
        "dsps": [{"id": "dsp", "fee": 0.1}],
        "advertisers": [{"id": "shoes", "value_per_conversion": 60.0},
                        {"id": "gadgets", "value_per_conversion": 90.0},
                        {"id": "bank", "value_per_conversion": 50.0},
                        {"id": "idle", "value_per_conversion": 10.0}],
        "campaigns": [
            camp("shoes-random", {"kind": "random", "max_cpm": 4.0}),
            camp("shoes-fixed", {"kind": "fixed", "bid_cpm": 1.3}),
            camp("bank-random", {"kind": "random", "max_cpm": 2.5}),
            camp("gadgets-small", {"kind": "fixed", "bid_cpm": 3.1}, budget=0.5),  # runs out
        ],
        "dmp": {"users": 400, "devices": {"mobile": 1.0}},
        "report": {"advertiser_bids": advertiser_bids},
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The market with report.advertiser_bids (its kernel calls caught) and without."""
    folder = tmp_path_factory.mktemp("advertiser-bids")
    caught = []
    clear = Clearing.clear

    def spy(self, requests, bids, *args):
        caught.append((requests.publisher.copy(), bids.copy()))
        return clear(self, requests, bids, *args)

    Clearing.clear = spy
    try:
        report = simulate(parse_scenario(market(), "bids.toml"), log_path=folder / "imps.csv").to_dict()
    finally:
        Clearing.clear = clear
    plain = simulate(parse_scenario(market(False), "plain.toml")).to_dict()
    with open(folder / "imps.csv", newline="") as f:
        log = list(csv.DictReader(f))
    return report, plain, caught, log


def rows(report: dict) -> dict[tuple[str, str], dict]:
    return {(p["id"], a["advertiser"]): a for p in report["publishers"] for a in p["advertisers"]}


def test_bids_mean_and_median_against_the_bids_cleared(runs):
    report, _, caught, _ = runs
    ids = [c["id"] for c in report["campaigns"]]
    values = defaultdict(list)
    for pub, bids in caught:
        for c, cid in enumerate(ids):
            for p, name in enumerate(("news", "games")):
                b = bids[pub == p, c]
                values[name, CAMPAIGN_ADVERTISER[cid]].append(np.minimum(b[b >= 0.0], MAX_BID_CPM))
    got = rows(report)
    assert set(got) == {key for key, v in values.items() if sum(x.size for x in v)}
    for key, parts in values.items():
        bids = np.concatenate(parts)
        row = got[key]
        assert row["bids"] == bids.size, key
        assert row["mean_bid_cpm"] == pytest.approx(bids.mean(), abs=1.5e-6), key
        assert row["median_bid_cpm"] == pytest.approx(np.median(bids), rel=0.005), key
        assert row["win_rate"] == round(row["wins"] / row["bids"], 6), key
    # gadgets's one campaign bids 3.1 every time (until its budget runs out): its median
    # is its bin's middle, within 0.4 % of 3.1.
    assert ("news", "gadgets") in got and got["news", "gadgets"]["median_bid_cpm"] == pytest.approx(3.1, rel=0.004)
    assert "idle" not in {a for _, a in got}


def test_wins_and_spend_against_the_impression_log(runs):
    report, _, _, log = runs
    wins, micros = defaultdict(int), defaultdict(int)
    for row in log:
        key = row["publisher_id"], CAMPAIGN_ADVERTISER[row["campaign_id"]]
        wins[key] += 1
        micros[key] += int(cpm_to_micros(float(row["price_cpm"])))
    got = rows(report)
    for key, row in got.items():
        assert row["wins"] == wins[key], key
        assert row["spend"] == micros[key] / 1e6, key
    assert set(wins) <= set(got)
    # Over all publishers: the campaigns' bids and media, and the ledger's.
    assert sum(r["bids"] for r in got.values()) == sum(c["bids"] for c in report["campaigns"])
    assert sum(micros.values()) == round(report["ledger"]["campaign_media"] * 1e6)
    media = {c["id"]: round(c["media_cost"] * 1e6) for c in report["campaigns"]}
    for adv in ("shoes", "bank", "gadgets"):
        assert sum(micros[p, adv] for p in ("news", "games")) == sum(
            media[cid] for cid, a in CAMPAIGN_ADVERTISER.items() if a == adv)


def test_rows_are_sorted_and_without_the_option_only_buyers(runs):
    report, plain, _, _ = runs
    for p in report["publishers"]:
        names = [a["advertiser"] for a in p["advertisers"]]
        assert names == sorted(names)
        assert all(list(a) == ["advertiser", "bids", "mean_bid_cpm", "median_bid_cpm", "wins",
                               "spend", "win_rate"] for a in p["advertisers"])
    # The option only adds figures: the run is the same.
    stripped = copy.deepcopy(report)
    for p in stripped["publishers"]:
        p["advertisers"] = [{"advertiser": a["advertiser"], "wins": a["wins"], "spend": a["spend"]}
                            for a in p["advertisers"] if a["wins"]]
    assert stripped["campaigns"] == plain["campaigns"]
    assert stripped["publishers"] == plain["publishers"]


def test_the_option_is_counted_in_the_memory_estimate():
    plain = estimate(parse_scenario(market(False), "a.toml"))
    binned = estimate(parse_scenario(market(True), "b.toml"))
    assert binned.memory_bytes - plain.memory_bytes >= 2 * 4 * 6401 * 8  # (publisher, advertiser) bins
