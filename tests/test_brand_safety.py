"""Brand safety: publishers' and SSPs' blocked advertiser categories and domains,
campaigns' excluded content categories.

A blocked pair never appears in the impression log (not even through a deal), the
campaigns still buy everywhere else, and the report's `blocked` bid outcome counts
the blocked bids exactly.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from rtb import simulate
from rtb.errors import InputError
from rtb.scenario import parse_scenario
from rtb.market import build_market
from dsp.campaigns import brand_safety_blocks


def market() -> dict:
    """Three publishers, four advertisers, campaigns that bid on every request."""
    def pub(pid, ssp, domain, category, **extra):
        return {"id": pid, "ssp": ssp, "domain": domain, "category": category,
                "slots": [{"id": "banner", "format": "banner", "device": "mobile",
                           "daily_requests": 40_000, "floor_cpm": 0.2},
                          {"id": "video", "format": "video", "device": "desktop",
                           "daily_requests": 20_000, "floor_cpm": 1.0}], **extra}

    def camp(cid, adv, **extra):
        return {"id": cid, "advertiser": adv, "dsp": "dsp", "budget": 2_000.0, "pacing": "asap",
                "strategy": {"kind": "random", "max_cpm": 8.0}, **extra}

    return {
        "name": "brand-safety",
        "simulation": {"seed": 9, "start": "2026-05-04T10:00:00Z", "duration": "2h", "tick": "60s"},
        "exchange": {"auction": "second",
                     "market": {"kind": "lognormal", "median_cpm": 1.0, "sigma": 0.5,
                                "participation": 0.7}},
        "ssps": [{"id": "ssp-a"}, {"id": "ssp-b", "blocked_categories": ["gambling"]}],
        "publishers": [
            pub("kids", "ssp-a", "kids.example", "family",
                blocked_categories=["alcohol", "gambling"]),
            pub("news", "ssp-a", "news.example", "news", blocked_domains=["RIVAL-NEWS.example"]),
            pub("games", "ssp-b", "games.example", "games"),
        ],
        "dsps": [{"id": "dsp"}],
        "advertisers": [
            {"id": "brewery", "domain": "beer.example", "category": "alcohol",
             "value_per_conversion": 30.0},
            {"id": "casino", "domain": "casino.example", "category": "gambling",
             "value_per_conversion": 80.0},
            {"id": "rival", "domain": "rival-news.example", "category": "media",
             "value_per_conversion": 10.0},
            {"id": "shoes", "domain": "shoes.example", "category": "apparel",
             "value_per_conversion": 60.0},
        ],
        "campaigns": [
            camp("beer", "brewery"),
            camp("poker", "casino"),
            camp("subscribe", "rival"),
            camp("sneakers", "shoes", targeting={"exclude_categories": ["games", "news"]}),
            camp("sneakers-video", "shoes", targeting={"formats": ["video"],
                                                       "exclude_categories": ["family"]}),
        ],
        "dmp": {"users": 4000, "geos": {"US": 1.0}},
    }


# (publisher, campaign) pairs market() forbids, and why.
BLOCKED = {
    ("kids", "beer"),  # kids blocks alcohol
    ("kids", "poker"),  # kids blocks gambling
    ("games", "poker"),  # games' SSP blocks gambling
    ("news", "subscribe"),  # news blocks the rival's domain (case-insensitive)
    ("games", "sneakers"), ("news", "sneakers"),  # the campaign excludes games and news
    ("kids", "sneakers-video"),  # the campaign excludes family content
}
PUBLISHERS = ("kids", "news", "games")
CAMPAIGNS = ("beer", "poker", "subscribe", "sneakers", "sneakers-video")


def read_log(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def blocked_run(tmp_path_factory):
    spec = parse_scenario(market(), "bs.toml")
    path = tmp_path_factory.mktemp("bs") / "imps.csv"
    report = simulate(spec, log_path=path).to_dict()
    return spec, report, read_log(path)


def test_block_matrix(blocked_run):
    spec, _, _ = blocked_run
    world = build_market(spec)
    blocked = brand_safety_blocks(spec, world.inventory)
    pub_of_slot = world.inventory.slot_publisher
    for row, p in enumerate(pub_of_slot):
        for c, cid in enumerate(CAMPAIGNS):
            assert blocked[row, c] == ((PUBLISHERS[p], cid) in BLOCKED), (PUBLISHERS[p], cid)
    # Targeting bitsets: a blocked pair's bit is clear.
    words = world.campaigns.slot_words
    for row, p in enumerate(pub_of_slot):
        for c, cid in enumerate(CAMPAIGNS):
            if (PUBLISHERS[p], cid) in BLOCKED:
                assert (int(words[row, c // 64]) >> (c % 64)) & 1 == 0


def test_blocked_pairs_never_appear_in_the_log(blocked_run):
    _, _, log = blocked_run
    pairs = {(row["publisher_id"], row["campaign_id"]) for row in log}
    assert not pairs & BLOCKED
    # Not vacuous: every allowed pair bought something (video-only campaign: video slots).
    allowed = {(p, c) for p in PUBLISHERS for c in CAMPAIGNS} - BLOCKED
    assert pairs == allowed
    assert {row["slot_id"] for row in log if row["campaign_id"] == "sneakers-video"} == {"video"}


def test_blocked_bids_are_counted_exactly(blocked_run):
    spec, report, _ = blocked_run
    requests = {p["id"]: p["requests"] for p in report["publishers"]}
    camps = {c["id"]: c for c in report["campaigns"]}
    # Random bidders bid on every request, with budgets that last: each blocked
    # pair's requests are blocked bids; campaigns without other targeting are targeted
    # everywhere else, so nothing of theirs is "not targeted".
    for cid in ("beer", "poker", "subscribe", "sneakers"):
        outcomes = camps[cid]["bid_outcomes"]
        want = sum(requests[p] for p in PUBLISHERS if (p, cid) in BLOCKED)
        assert outcomes["blocked"] == want > 0, cid
        assert outcomes["not_targeted"] == 0, cid
        assert sum(outcomes.values()) == sum(requests.values()), cid
        assert outcomes["out_of_budget"] == 0, cid
    # A video-only campaign: banner requests are not targeted, and of the blocked
    # publisher's requests only the video ones count as blocked.
    world = build_market(spec)
    video = camps["sneakers-video"]["bid_outcomes"]
    assert 0 < video["blocked"] < requests["kids"]
    assert video["blocked"] + video["not_targeted"] + sum(
        v for k, v in video.items() if k not in ("blocked", "not_targeted")) == sum(requests.values())
    assert list(camps["beer"]["bid_outcomes"])[:3] == ["not_targeted", "blocked", "paced"]
    blocked_pairs = np.unpackbits(world.campaigns.slot_blocked_words.view(np.uint8), axis=1).sum()
    assert blocked_pairs == 2 * len(BLOCKED) - 1  # video-only: one slot of kids


def test_blocked_video_count_matches_the_requests_it_would_have_bid_on(tmp_path):
    """Without the exclusion, the video campaign's bids on kids' video slot are visited."""
    data = market()
    data["campaigns"][4]["targeting"] = {"formats": ["video"]}
    free = simulate(parse_scenario(data, "free.toml")).to_dict()
    blocked = simulate(parse_scenario(market(), "bs.toml")).to_dict()
    f = {c["id"]: c["bid_outcomes"] for c in free["campaigns"]}["sneakers-video"]
    b = {c["id"]: c["bid_outcomes"] for c in blocked["campaigns"]}["sneakers-video"]
    assert f["blocked"] == 0
    assert b["not_targeted"] == f["not_targeted"]  # the banner requests, in both runs
    assert sum(b.values()) == sum(f.values())


def test_a_deal_does_not_bypass_a_block(tmp_path):
    data = market()
    data["publishers"][0]["deals"] = [{"id": "kids-pmp", "floor_cpm": 0.5, "share": 0.5,
                                       "private": True, "advertisers": ["brewery", "shoes"]}]
    spec = parse_scenario(data, "deal.toml")
    path = tmp_path / "imps.csv"
    report = simulate(spec, log_path=path).to_dict()
    pairs = {(row["publisher_id"], row["campaign_id"]) for row in read_log(path)}
    assert ("kids", "beer") not in pairs
    assert ("kids", "sneakers") in pairs
    kids = [p for p in report["publishers"] if p["id"] == "kids"][0]
    assert kids["deal_share"] > 0


def test_case_insensitive_domains_and_ssp_lists():
    data = market()
    data["ssps"][0]["blocked_domains"] = ["SHOES.Example"]
    spec = parse_scenario(data, "ssp.toml")
    world = build_market(spec)
    blocked = brand_safety_blocks(spec, world.inventory)
    shoes = [CAMPAIGNS.index("sneakers"), CAMPAIGNS.index("sneakers-video")]
    ssp_a = np.isin(world.inventory.slot_publisher, [0, 1])
    assert blocked[ssp_a][:, shoes].all()
    assert not blocked[~ssp_a][:, shoes[1]].any()


# ---- validation ------------------------------------------------------------------------------------

def problems(data: dict) -> dict[str, str]:
    with pytest.raises(InputError) as exc:
        parse_scenario(data, "bad.toml")
    return dict(exc.value.problems)


def test_block_lists_must_name_existing_categories_and_domains():
    data = market()
    data["publishers"][0]["blocked_categories"] = ["alcohol", "tobacco"]
    data["publishers"][1]["blocked_domains"] = ["rival-news.example", "nobody.example"]
    data["ssps"][1]["blocked_domains"] = ["casino.example", "ghost.example"]
    data["ssps"][0]["blocked_categories"] = ["crypto"]
    got = problems(data)
    assert set(got) == {"publishers[0].blocked_categories[1]", "publishers[1].blocked_domains[1]",
                        "ssps[1].blocked_domains[1]", "ssps[0].blocked_categories[0]"}
    assert "no advertiser has category 'tobacco'" in got["publishers[0].blocked_categories[1]"]
    assert "no advertiser has domain 'ghost.example'" in got["ssps[1].blocked_domains[1]"]


def test_excluded_categories_are_checked():
    data = market()
    data["campaigns"][0]["targeting"] = {"categories": ["news", "games"],
                                         "exclude_categories": ["sports", "games"]}
    got = problems(data)
    assert set(got) == {"campaigns[0].targeting.exclude_categories[0]",
                        "campaigns[0].targeting.exclude_categories[1]"}
    assert "no publisher has category 'sports'" in got["campaigns[0].targeting.exclude_categories[0]"]
    assert "both targeted and excluded" in got["campaigns[0].targeting.exclude_categories[1]"]


@pytest.mark.parametrize("where, key, value, path", [
    ("publishers", "blocked_domains", [""], "publishers[0].blocked_domains[0]"),
    ("publishers", "blocked_domain", ["x.example"], "publishers[0].blocked_domain"),
    ("ssps", "blocked_categories", "alcohol", "ssps[0].blocked_categories"),
    ("ssps", "blocks", [], "ssps[0].blocks"),
])
def test_bad_block_fields_are_reported_with_their_path(where, key, value, path):
    data = market()
    data[where][0][key] = value
    assert path in problems(data)
