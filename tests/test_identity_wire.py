"""Ids on the wire (docs/openrtb.md, user.id): with dmp.identity, a request without
consent carries no id (a no-id row, dmp/identity.py) and so no user.id and no
segments; a request with consent carries its id, and nothing about the person behind
it. The scenario: consent 1 in US and 0 in DE, ids that churn, two devices for some
people; an external bidder (tests/misbehaving_bidder.py) records what it is sent and
--openrtb-log shows the built-in DSP's requests as they would be sent.
"""

from __future__ import annotations

import json

import pytest
from misbehaving_bidder import MisbehavingBidder

from rtb import simulate
from rtb.market import build_market
from rtb.scenario import parse_scenario


def scenario(endpoint: str) -> dict:
    """About 1,300 requests over an hour, half from DE (no consent); a built-in and an
    external DSP, each with one contextual campaign (no segment targeting: it may bid
    on requests without consent too)."""
    return {
        "name": "identity-wire",
        "simulation": {"seed": 5, "start": "2026-03-02T08:00:00Z", "duration": "1h", "tick": "300s"},
        "ssps": [{"id": "ssp"}],
        "publishers": [{"id": "news", "ssp": "ssp", "domain": "news.example", "category": "news",
                        "slots": [{"id": "top", "format": "banner", "device": "desktop",
                                   "daily_requests": 30_000}]}],
        "dsps": [{"id": "house"},
                 {"id": "ext", "endpoint": endpoint, "tmax": "200ms", "latency_spread": 0.0}],
        "advertisers": [{"id": "shop", "domain": "shop.example", "value_per_conversion": 50.0}],
        "campaigns": [
            {"id": "house-c", "advertiser": "shop", "dsp": "house", "budget": 50.0,
             "strategy": {"kind": "fixed", "bid_cpm": 1.0}},
            {"id": "ext-c", "advertiser": "shop", "dsp": "ext", "budget": 50.0, "pacing": "asap"}],
        "dmp": {"users": 500, "devices": {"desktop": 1.0}, "geos": {"US": 0.5, "DE": 0.5},
                "consent_rate": {"US": 1.0, "DE": 0.0},
                "segments": [{"id": "sports", "share": 0.5, "data_cpm": 0.1}],
                "identity": {"id_lifetime": "20m", "devices_per_person": {"1": 0.5, "2": 0.5}}},
    }


def check_users(requests: list[dict]) -> None:
    """Every DE request has a user without id and segments; every US one an id "u<row>"
    (not a person's number: the ids outnumber the people), segments where it has them."""
    by_geo = {"US": [], "DE": []}
    for r in requests:
        by_geo[r["device"]["geo"]["country"]].append(r["user"])
    assert by_geo["US"] and by_geo["DE"], {g: len(u) for g, u in by_geo.items()}
    for user in by_geo["DE"]:
        assert user == {"ext": {"consent": 0}}, user
    for user in by_geo["US"]:
        assert user["id"].startswith("u") and user["ext"] == {"consent": 1}, user
        assert set(user) <= {"id", "ext", "data"}
    assert any("data" in user for user in by_geo["US"])  # consented ids keep their segments


@pytest.fixture(scope="module")
def bidder():
    b = MisbehavingBidder("ok", price=0.5)
    b.start()
    yield b
    b.stop()


def test_requests_without_consent_carry_no_id(bidder, tmp_path):
    path = tmp_path / "openrtb.jsonl"
    spec = parse_scenario(scenario(bidder.endpoint), "identity-wire.json")
    market = build_market(spec)  # the run's own market: the same draws
    identity = market.audience.identity
    assert identity.no_id_row < market.n_users  # the run has no-id rows
    simulate(spec, openrtb_log=path, openrtb_sample=1.0)
    # The external bidder: what went over HTTP.
    sent = bidder.requests
    check_users(sent)
    # The ids sent are id rows (never a no-id row), and ids churned (a 20 minutes' mean
    # lifetime over an hour): some are not a device's first id.
    rows = {int(r["user"]["id"][1:]) for r in sent if "id" in r["user"]}
    assert max(rows) < identity.no_id_row
    assert rows - set(identity.first_id[:-1].tolist())
    # --openrtb-log: the built-in DSP's requests and the external one's, as sent.
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    logged = [b["request"] for line in lines for b in line["bidders"]]
    assert {b["dsp"] for line in lines for b in line["bidders"]} == {"house", "ext"}
    check_users(logged)
