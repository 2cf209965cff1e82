"""Anonymous inventory: a publisher, or a deal, that sells requests without their domain.

Buyers of an anonymous request see the category, not the domain: a campaign's
targeting.domains never matches it and its exclude_domains cannot keep it off it,
while category targeting, exclude_categories and the publisher's own block lists still
hold. Checked on the impression log, on the kernel's requests (an anonymous deal makes
only the requests carrying it anonymous), and on the report's anonymity figures.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from dsp.pacing import ExpectedTraffic
from rtb import simulate
from rtb.changes import Change, apply_changes
from rtb.errors import InputError
from rtb.market import build_market
from rtb.scenario import parse_scenario
from rtb.shards import Clearing
from rtb.types import cpm_to_micros


def market(**changes) -> dict:
    """Three publishers ("style": stylemag.example, fashion; "news"; "sports"), each with a
    banner and a native slot; campaigns that bid at a fixed price, budgets that last."""
    def pub(pid, domain, category, **extra):
        return {"id": pid, "ssp": "ssp", "domain": domain, "category": category,
                "slots": [{"id": "banner", "format": "banner", "device": "mobile",
                           "daily_requests": 20_000, "floor_cpm": 0.2},
                          {"id": "native", "format": "native", "device": "mobile",
                           "daily_requests": 20_000, "floor_cpm": 0.2}], **extra}

    def camp(cid, adv, bid, **targeting):
        return {"id": cid, "advertiser": adv, "dsp": "dsp", "budget": 5_000.0, "pacing": "asap",
                "strategy": {"kind": "fixed", "bid_cpm": bid}, "targeting": targeting}

    data = {
        "name": "anonymity",
        "simulation": {"seed": 5, "start": "2026-05-04T10:00:00Z", "duration": "1h", "tick": "60s"},
        "exchange": {"auction": "second"},
        "ssps": [{"id": "ssp"}],
        "publishers": [pub("style", "StyleMag.example", "fashion"),
                       pub("news", "news.example", "news"),
                       pub("sports", "sports.example", "sports")],
        "dsps": [{"id": "dsp"}],
        "advertisers": [{"id": "shoes", "domain": "shoes.example", "value_per_conversion": 60.0},
                        {"id": "gadgets", "domain": "gadgets.example", "value_per_conversion": 90.0},
                        {"id": "bank", "domain": "bank.example", "category": "finance",
                         "value_per_conversion": 50.0}],
        "campaigns": [
            camp("by-domain", "shoes", 3.0, domains=["stylemag.example", "news.example"]),
            camp("by-category", "gadgets", 2.0, categories=["fashion", "sports"]),
            camp("no-style", "bank", 4.0, formats=["banner"], exclude_domains=["STYLEMAG.example"]),
        ],
        "dmp": {"users": 500, "devices": {"mobile": 1.0}},
    }
    for path, value in changes.items():
        node = data
        *head, last = path.split("__")
        for key in head:
            node = node[int(key)] if key.isdigit() else node[key]
        node[last] = value
    return data


def run(data: dict, tmp_path: Path, name: str = "imps.csv") -> tuple[dict, list[dict]]:
    path = tmp_path / name
    report = simulate(parse_scenario(data, "anonymity.toml"), log_path=path).to_dict()
    with open(path, newline="") as f:
        return report, list(csv.DictReader(f))


def bought(log: list[dict]) -> set[tuple[str, str]]:
    return {(row["publisher_id"], row["campaign_id"]) for row in log}


def publisher(report: dict, pid: str) -> dict:
    return next(p for p in report["publishers"] if p["id"] == pid)


@pytest.fixture(scope="module")
def named_and_anonymous(tmp_path_factory):
    """The market as is, and with "style" selling anonymously."""
    folder = tmp_path_factory.mktemp("anonymity")
    return run(market(), folder, "named.csv"), run(market(publishers__0__anonymous=True), folder)


def test_anonymous_publisher_shuts_out_domain_targeting_not_category(named_and_anonymous):
    (_, named), (_, anonymous) = named_and_anonymous
    assert ("style", "by-domain") in bought(named)
    assert ("style", "by-domain") not in bought(anonymous)
    assert ("news", "by-domain") in bought(anonymous)  # the named publisher it targets
    assert ("style", "by-category") in bought(anonymous)  # the category is still shown


def test_domain_block_list_is_blind_to_anonymous_requests(named_and_anonymous):
    (named_report, named), (anonymous_report, anonymous) = named_and_anonymous
    assert ("style", "no-style") not in bought(named)  # case-insensitive domains
    assert {("news", "no-style"), ("sports", "no-style")} <= bought(named)
    assert ("style", "no-style") in bought(anonymous)
    # Named, its bids there are brand-safety blocks; anonymous, ordinary bids.
    named_outcomes = {c["id"]: c["bid_outcomes"] for c in named_report["campaigns"]}["no-style"]
    outcomes = {c["id"]: c["bid_outcomes"] for c in anonymous_report["campaigns"]}["no-style"]
    assert named_outcomes["blocked"] > 0 and outcomes["blocked"] == 0
    assert outcomes["not_targeted"] == named_outcomes["not_targeted"]  # native requests, both


def test_anonymity_figures_of_the_report(named_and_anonymous):
    (named_report, _), (report, log) = named_and_anonymous
    style = publisher(report, "style")
    assert style["anonymous"] == 1.0
    assert publisher(named_report, "style")["anonymous"] == 0.0
    assert publisher(named_report, "style")["anonymity"] is None
    assert publisher(report, "news")["anonymity"] is None
    facts = style["anonymity"]
    assert facts["requests"] == style["requests"]
    # by-domain bids (a fixed price, a budget that lasts) on every request: all lost.
    assert facts["domain_targeting_bids_lost"] == style["requests"]
    mine = [row for row in log if row["publisher_id"] == "style" and row["campaign_id"] == "no-style"]
    assert facts["impressions_past_domain_blocks"] == len(mine) > 0
    micros = sum(int(cpm_to_micros(float(row["price_cpm"]))) for row in mine)
    assert facts["spend_past_domain_blocks"] == micros / 1e6
    by_domain = {c["id"]: c["bid_outcomes"] for c in report["campaigns"]}["by-domain"]
    assert by_domain["not_targeted"] == style["requests"] + publisher(report, "sports")["requests"]


def test_an_anonymous_deal_makes_only_its_requests_anonymous(tmp_path, monkeypatch):
    """Half of "news"'s native slot carries an open anonymous deal: by-domain buys the
    native requests without the deal, never those with it."""
    deal = {"id": "blind", "slots": ["native"], "share": 0.5, "floor_cpm": 0.5, "private": False,
            "anonymous": True, "advertisers": ["gadgets"]}
    data = market(publishers__1__deals=[deal])
    seen = []
    clear = Clearing.clear

    def spy(self, requests, bids, *args):
        result = clear(self, requests, bids, *args)
        seen.append((requests.publisher.copy(), requests.slot.copy(), requests.deal.copy(),
                     result.winner.copy()))
        return result

    monkeypatch.setattr(Clearing, "clear", spy)
    report, _ = run(data, tmp_path)
    _, slot, deal_of, winner = (np.concatenate(x) for x in zip(*seen))
    by_domain = 0  # the campaigns' order in the file
    native = 3  # news's native slot: publishers' slots in order
    assert (slot == native).any() and ((slot == native) & (deal_of == 0)).any()
    assert not (winner[deal_of == 0] == by_domain).any()
    assert (winner[(slot == native) & (deal_of < 0)] == by_domain).any()
    news = publisher(report, "news")
    assert news["anonymity"]["requests"] == int((deal_of == 0).sum())
    assert news["anonymous"] == round(int((deal_of == 0).sum()) / news["requests"], 6)
    assert news["anonymity"]["domain_targeting_bids_lost"] == int((deal_of == 0).sum())
    assert publisher(report, "style")["anonymity"] is None


def test_deal_anonymity_weighs_expected_traffic(tmp_path):
    """Pacing expects a domain-targeting campaign to see only the requests of its slots
    that do not carry an anonymous deal."""
    deal = {"id": "blind", "share": 0.25, "floor_cpm": 0.5, "anonymous": True,
            "advertisers": ["gadgets"]}
    m = build_market(parse_scenario(market(publishers__1__deals=[deal]), "a.toml"))
    table, inv = m.campaigns, m.inventory
    plain = ExpectedTraffic(inv, m.start.timestamp(), 3600.0, table.slot_words)
    mixed = ExpectedTraffic(inv, m.start.timestamp(), 3600.0, table.slot_words,
                            table.anonymous_row, m.deals.slot_anonymous_share)
    news = inv.slot_publisher == 1
    share = np.where(news, 0.75, 1.0)  # by-domain targets style and news: news's slots at 3/4
    rate = inv.slot_rate  # a flat hour: every slot's rate times the same shape
    want = (plain.rate[0, 0] * (rate * share * (inv.slot_publisher != 2)).sum()
            / (rate * (inv.slot_publisher != 2)).sum())
    assert mixed.rate[0, 0] == pytest.approx(want)
    assert mixed.rate[0, 1] == plain.rate[0, 1]  # by-category: domains play no part


def test_set_anonymous_in_a_plan_change():
    """`rtb plan --set publishers[ID].anonymous=false` (or publishers.ID.anonymous) is the
    paired counterfactual: the same scenario, anonymity off."""
    deal = {"id": "blind", "share": 0.25, "floor_cpm": 0.5, "anonymous": True,
            "advertisers": ["gadgets"]}
    scenario = parse_scenario(market(publishers__0__anonymous=True, publishers__1__deals=[deal]),
                              "a.toml")
    for text in ("publishers[style].anonymous=false", "publishers.style.anonymous=false",
                 "publishers[0].anonymous=false"):
        named = apply_changes(scenario, [Change("set", text)])
        assert [p.anonymous for p in named.publishers] == [False, False, False]
    named = apply_changes(scenario, [Change("set", "publishers[news].deals[blind].anonymous=false")])
    assert not named.publishers[1].deals[0].anonymous and named.publishers[0].anonymous
    with pytest.raises(InputError, match=r"publishers\.style\.anonimous"):
        apply_changes(scenario, [Change("set", "publishers[style].anonimous=false")])


def test_view_shows_an_anonymous_id_not_the_publisher(tmp_path):
    """A strategy's view of an anonymous request names an anonymous id and slot."""
    seen: dict[str, set] = {"publishers": set(), "slots": set()}

    class Recorder:
        def bid(self, view):
            labels = view.labels
            seen["publishers"] |= {labels.publishers[p] for p in view.publisher}
            seen["slots"] |= {labels.slots[s] for s in view.slot}
            return np.full(view.pctr.size, 1.0)

        def observe(self, feedback):
            pass

    spec = parse_scenario(market(publishers__0__anonymous=True), "a.toml")
    simulate(spec, strategies={"by-category": Recorder()})
    assert seen["publishers"] == {"anonymous-1", "sports"}
    assert seen["slots"] == {"anonymous-1,1", "anonymous-1,2", "sports,banner", "sports,native"}


def test_domain_targeting_fields_are_checked():
    data = market()
    data["campaigns"][0]["targeting"] = {"domains": ["stylemag.example", "ghost.example"],
                                         "exclude_domains": ["STYLEMAG.EXAMPLE", "nobody.example"]}
    with pytest.raises(InputError) as exc:
        parse_scenario(data, "bad.toml")
    got = dict(exc.value.problems)
    assert set(got) == {"campaigns[0].targeting.domains[1]", "campaigns[0].targeting.exclude_domains[0]",
                        "campaigns[0].targeting.exclude_domains[1]"}
    assert "no publisher has domain 'ghost.example'" in got["campaigns[0].targeting.domains[1]"]
    assert "both targeted and excluded" in got["campaigns[0].targeting.exclude_domains[0]"]
    bad = market(publishers__0__anonymous="sometimes")
    with pytest.raises(InputError) as exc:
        parse_scenario(bad, "bad.toml")
    assert "publishers[0].anonymous" in dict(exc.value.problems)


def test_plan_gives_the_publisher_the_paired_cost_of_anonymity(tmp_path):
    """The variant `publishers[style].anonymous=false` against the scenario as written, on
    the same seeds: each publisher's figures and their paired change, in plan.json and in
    the plan's table (shown when a variant changes a publisher)."""
    from rich.console import Console

    from rtb.changes import variant_from_options
    from rtb.plan import run_plan
    from rtb.plan_tables import plan_table
    from rtb.sweep import SweepRun

    scenario = parse_scenario(market(publishers__0__anonymous=True), "a.toml")
    named = variant_from_options("named", [], [], [], ["publishers[style].anonymous=false"])
    summary = run_plan(scenario, [named], [1, 2], tmp_path)
    current, variant = summary["variants"]
    style = next(p for p in variant["publishers"] if p["id"] == "style")
    revenue = [[publisher(json.loads((tmp_path / folder / SweepRun(1.0, seed).file_name).read_bytes()),
                          "style")["revenue"] for seed in (1, 2)] for folder in ("current", "named")]
    assert style["revenue"]["vs_current"]["mean"] == pytest.approx(
        (revenue[1][0] - revenue[0][0] + revenue[1][1] - revenue[0][1]) / 2, abs=1e-6)
    assert style["anonymous"]["mean"] == 0.0 and style["anonymous"]["vs_current"]["mean"] == -1.0
    assert next(p for p in current["publishers"] if p["id"] == "style")["anonymous"]["mean"] == 1.0
    console = Console(width=100, record=True)
    console.print(plan_table(summary, 100))
    text = console.export_text()
    assert "Publishers" in text and "anonymous" in text and "style" in text


def test_folders_made_before_anonymity_keep_their_digest():
    """A scenario that uses none of the fields added with anonymity (and report options)
    digests as before, so sweep and plan folders made before still resume; one that uses
    them digests differently."""
    from rtb import load_scenario
    from rtb.sweep import scenario_digest

    quickstart = load_scenario(Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.toml")
    assert scenario_digest(quickstart) == "df14a6b9e0fcdc605b6addc885caa5450e41172a4cb7a1dea3456dc0221a8c9d"
    blind = apply_changes(quickstart, [Change("set", "publishers[style-mag].anonymous=true")])
    assert scenario_digest(blind) != scenario_digest(quickstart)
