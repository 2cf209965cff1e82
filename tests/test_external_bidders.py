"""External OpenRTB bidders (dsps[].endpoint, docs/openrtb.md) against a bidder that
misbehaves on purpose (tests/misbehaving_bidder.py).

Every fault is counted under its reason, exactly once per bid or request it spoils, and
costs the bidder its own bids and nothing else: every other campaign, built-in or of
another external bidder, buys what it buys when the faulty bidder answers 204 to
everything, to the byte of the impression log. A bidder down at the start is an input
error (`rtb run` exits 2) unless allowed; timeouts by the latency model are
deterministic, by the wall clock counted; a deterministic bidder gives byte-identical
reports; the requests keep docs/openrtb.md; budgets and max_bid_cpm stay the
exchange's; notices carry the clearing price and loss codes; --openrtb-log writes one
line per request whose messages validate and whose outcome is the impression log's.
"""

from __future__ import annotations

import json
import socket
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from markets import Run, check_all, micros, read_log
from misbehaving_bidder import MisbehavingBidder
from test_cli import rtb_in_process

from rtb import openrtb as O
from rtb import simulate
from rtb.errors import InputError
from rtb.scenario import Scenario, parse_scenario

SEED = 11
EXT = 1  # the faulty bidder's index in dsps[] (the report's bidders[0])
EXT_CAMPAIGNS = ("ext-a", "ext-b")
FLOORS = {"top": 0.3, "feed": 0.5}  # slot -> its floor
SLOT_PUBLISHER = {"top": "news", "feed": "blog"}
DEAL = "news-pmp"


def pctr_price(seat: dict, request: dict) -> float:
    """A deterministic bid that differs by seat and request: 1 CPM plus 500 x pCTR, and
    half a CPM more for ext-b on every other request (so that both seats win some)."""
    odd = int(request["id"].rsplit("-", 1)[1]) % 2
    return round(1.0 + 500.0 * seat["pctr"] + (0.5 if odd and seat["seat"] == "ext-b" else 0.0), 4)


# ---- the market ----------------------------------------------------------------------

def market(endpoint: str, other: str | None = None, *, ext: dict | None = None,
           ext_a: dict | None = None, ext_b: dict | None = None, auction: str = "second",
           hours: int = 1) -> dict:
    """Two publishers (news blocks a category and a domain and carries an open deal for
    "ext" and "house"; blog blocks nothing), about 670 requests an hour (one by default); a
    built-in DSP "house" with two campaigns, the external DSP "ext" at `endpoint` with
    two seats (ext-b targets a segment), and, if `other` is given, a second external
    DSP "ext2" there with one seat on blog only. The external campaigns pace "asap"."""
    dsps = [{"id": "house", "fee": 0.1},
            {"id": "ext", "fee": 0.12, "endpoint": endpoint, "tmax": "80ms",
             "latency_spread": 0.0, **(ext or {})}]
    campaigns = [
        {"id": "house-fixed", "advertiser": "shop", "dsp": "house", "budget": 20.0,
         "strategy": {"kind": "fixed", "bid_cpm": 1.9}, "pacing": "asap"},
        {"id": "house-linear", "advertiser": "brand", "dsp": "house", "budget": 20.0,
         "strategy": {"kind": "linear", "base_cpm": 2.0, "avg_ctr": 0.003},
         "frequency_cap": {"impressions": 3, "window": "1h", "kind": "rolling"}},
        {"id": "ext-a", "advertiser": "shop", "dsp": "ext", "budget": 15.0, "pacing": "asap",
         **(ext_a or {})},
        {"id": "ext-b", "advertiser": "brand", "dsp": "ext", "budget": 15.0, "pacing": "asap",
         "targeting": {"segments": ["sports"]}, **(ext_b or {})},
    ]
    if other is not None:
        dsps.append({"id": "ext2", "fee": 0.05, "endpoint": other, "latency_spread": 0.0})
        campaigns.append({"id": "ext2-c", "advertiser": "brand", "dsp": "ext2", "budget": 15.0,
                          "pacing": "asap", "targeting": {"categories": ["food"]}})
    return {
        "name": "external",
        "simulation": {"seed": SEED, "start": "2026-03-02T08:00:00Z", "duration": f"{hours}h",
                       "tick": "300s"},
        "exchange": {"auction": auction, "fee": 0.1,
                     "market": {"kind": "lognormal", "median_cpm": 1.0, "sigma": 0.5,
                                "participation": 0.6}},
        "ssps": [{"id": "ssp", "fee": 0.15}],
        "publishers": [
            {"id": "news", "ssp": "ssp", "domain": "news.example", "category": "news",
             "blocked_categories": ["gambling"], "blocked_domains": ["rival.example"],
             "slots": [{"id": "top", "format": "banner", "device": "desktop",
                        "daily_requests": 8000, "floor_cpm": FLOORS["top"]}],
             "deals": [{"id": DEAL, "floor_cpm": 1.0, "share": 0.3, "private": False,
                        "dsps": ["ext", "house"]}]},
            {"id": "blog", "ssp": "ssp", "category": "food",
             "slots": [{"id": "feed", "format": "native", "device": "mobile",
                        "daily_requests": 8000, "floor_cpm": FLOORS["feed"]}]}],
        "dsps": dsps,
        "advertisers": [
            {"id": "shop", "domain": "shop.example", "category": "retail",
             "value_per_conversion": 60.0},
            {"id": "brand", "domain": "brand.example", "category": "auto",
             "value_per_conversion": 120.0},
            {"id": "rival", "domain": "rival.example", "category": "gambling",
             "value_per_conversion": 10.0}],
        "campaigns": campaigns,
        "dmp": {"users": 2000, "devices": {"desktop": 0.5, "mobile": 0.5}, "consent_rate": 0.9,
                "segments": [{"id": "sports", "share": 0.4, "data_cpm": 0.2}]},
    }


def spec(data: dict) -> Scenario:
    return parse_scenario(data, "external.json")


@dataclass
class Outcome:
    run: Run  # spec, report dict, impression log columns (tests/markets.py)
    json: bytes  # the report as written
    log: bytes  # the impression log's bytes

    @property
    def bidders(self) -> list[dict]:
        return self.run.report["bidders"]

    def without_bidders(self) -> dict:
        return {k: v for k, v in self.run.report.items() if k != "bidders"}


def run(scenario: Scenario, folder: Path, name: str = "impressions.csv", **options) -> Outcome:
    path = folder / name
    report = simulate(scenario, log_path=path, **options)
    return Outcome(Run(scenario, report.to_dict(), read_log(path)), report.to_json(),
                   path.read_bytes())


def sold_by_time(log: dict) -> dict[tuple[str, str], float]:
    """The impression log as {(time_s to the millisecond, campaign): price CPM}."""
    return {(f"{t:.3f}", c): p
            for t, c, p in zip(log["time_s"], log["campaign_id"], log["price_cpm"])}


def dead_endpoint() -> str:
    """An address nothing listens on: a port the system just gave out, closed again."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/openrtb"


# ---- fixtures ----------------------------------------------------------------------------

@pytest.fixture
def bidder():
    """start(behaviour, **options): a MisbehavingBidder serving; all stopped after the test."""
    started: list[MisbehavingBidder] = []

    def start(behaviour: str = "ok", **options) -> MisbehavingBidder:
        b = MisbehavingBidder(behaviour, **options).start()
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


@pytest.fixture(scope="module")
def other():
    """The second external bidder ("ext2"), well-behaved, for the whole module."""
    b = MisbehavingBidder("ok", price=pctr_price).start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def baseline(other, tmp_path_factory) -> Outcome:
    """The market with "ext" answering 204 to everything: what its faults must not change."""
    b = MisbehavingBidder("nobid").start()
    try:
        out = run(spec(market(b.endpoint, other.endpoint)), tmp_path_factory.mktemp("baseline"))
        out.received = b.requests
    finally:
        b.stop()
    return out


def test_the_baseline_is_a_market_where_everyone_else_buys(baseline):
    """The comparison means something: the other campaigns buy, "ext" is asked on
    every eligible request and answers no bid."""
    check_all(baseline.run)
    (ext, ext2), camps = baseline.bidders, baseline.run.campaigns
    assert ext["requests"] == len(baseline.received) == ext["no_bids"] > 400
    assert ext["bids"] == 0 and not any(ext["faults"].values())
    assert ext2["bids"] > 0 and camps["ext2-c"]["impressions"] > 0
    for cid in ("house-fixed", "house-linear"):
        assert camps[cid]["impressions"] > 0
    assert camps["ext-a"]["bids"] == camps["ext-b"]["bids"] == 0


# ---- 1. every fault --------------------------------------------------------------------------

def seats_in(requests: list[dict], where=lambda r: True) -> int:
    return sum(len(r["ext"]["rtbsim"]["seats"]) for r in requests if where(r))


# behaviour -> (the fault reason, its expected count from the requests the bidder received)
FAULTS = {
    "http500": ("http_error", len),
    "malformed": ("malformed", len),
    "wrong_id": ("malformed", len),
    "unknown_imp": ("unknown_imp", seats_in),
    "unknown_seat": ("unknown_seat", seats_in),
    "negative_price": ("invalid_price", seats_in),
    "string_price": ("invalid_price", seats_in),
    "over_budget": ("over_budget", seats_in),
    "bad_deal": ("invalid_deal", seats_in),
    "blocked_adomain": ("blocked_adomain", lambda rs: seats_in(rs, lambda r: r.get("badv"))),
    "blocked_cat": ("blocked_category", lambda rs: seats_in(rs, lambda r: r.get("bcat"))),
}
TIMEOUTS = {  # behaviour and the DSP's options: every request a timeout
    "model": ("ok", {"latency_median": "1s", "latency_spread": 0.3, "tmax": "100ms"}),
    "wall": ("slow", {"latency": "wall", "tmax": "30ms"}),
}


def check_only_the_bidder_lost(out: Outcome, baseline: Outcome) -> None:
    """The faulty bidder's campaigns bought nothing, the ledger balances, and everything
    else is the baseline's: every other campaign, the publishers, the impression log."""
    check_all(out.run)
    for cid in EXT_CAMPAIGNS:
        c = out.run.campaigns[cid]
        assert c["bids"] == c["impressions"] == 0 and c["spend"] == 0.0, cid
    assert out.without_bidders() == baseline.without_bidders()
    assert out.log == baseline.log
    assert out.bidders[1] == baseline.bidders[1]  # the other external bidder's tally
    assert out.bidders[0]["requests"] == baseline.bidders[0]["requests"]


@pytest.mark.parametrize("behaviour", list(FAULTS))
def test_a_fault_drops_its_bids_and_nothing_else(behaviour, bidder, other, baseline, tmp_path):
    b = bidder(behaviour, price=pctr_price)
    out = run(spec(market(b.endpoint, other.endpoint)), tmp_path)
    received = b.requests
    reason, expected = FAULTS[behaviour]
    tally = out.bidders[0]
    assert tally["requests"] == len(received)
    assert tally["faults"] == {name: (expected(received) if name == reason else 0)
                               for name in tally["faults"]}
    assert tally["faults"][reason] > 250
    assert tally["bids"] == 0 and tally["notices_failed"] == 0
    # Only the block-list misbehaviours answer 204 (where there is nothing to break).
    key = {"blocked_adomain": "badv", "blocked_cat": "bcat"}.get(behaviour)
    assert tally["no_bids"] == (0 if key is None else sum(not r.get(key) for r in received))
    check_only_the_bidder_lost(out, baseline)


@pytest.mark.parametrize("latency", list(TIMEOUTS))
def test_every_late_answer_is_a_timeout(latency, bidder, other, baseline, tmp_path):
    """latency "model" with a median far above tmax: every request a timeout, whatever
    the bidder's real speed; "wall" with a bidder slower than tmax: the same, measured."""
    behaviour, options = TIMEOUTS[latency]
    b = bidder(behaviour, price=pctr_price)
    out = run(spec(market(b.endpoint, other.endpoint, ext=options)), tmp_path)
    tally = out.bidders[0]
    assert tally["latency"] == latency
    assert tally["faults"] == {name: (tally["requests"] if name == "timeout" else 0)
                               for name in tally["faults"]}
    assert tally["bids"] == tally["no_bids"] == 0
    if latency == "model":  # every request was still answered, and awaited
        assert len(b.requests) == tally["requests"]
    check_only_the_bidder_lost(out, baseline)


def test_timeouts_by_the_latency_model_are_deterministic(bidder, tmp_path):
    b = bidder("ok", price=pctr_price)
    data = market(b.endpoint, ext={"latency_median": "70ms", "latency_spread": 0.5})
    first = run(spec(data), tmp_path, "first.csv")
    second = run(spec(data), tmp_path, "second.csv")
    assert first.json == second.json and first.log == second.log
    tally = first.bidders[0]
    # A median near tmax (80ms): some late, most not.
    assert 0 < tally["faults"]["timeout"] < tally["requests"] / 2
    assert tally["bids"] > 0


def test_a_no_bid_with_a_reason_is_counted_not_a_fault(bidder, other, baseline, tmp_path):
    b = bidder("nobid_nbr")
    out = run(spec(market(b.endpoint, other.endpoint)), tmp_path)
    tally = out.bidders[0]
    assert tally["requests"] == tally["no_bids"] == len(b.requests)
    assert tally["no_bid_reasons"] == {"2": tally["requests"]}
    assert not any(tally["faults"].values()) and tally["bids"] == 0
    check_only_the_bidder_lost(out, baseline)


# ---- 2. a bidder that is down ------------------------------------------------------------------

def test_a_bidder_down_at_the_start_is_an_input_error(other, tmp_path):
    endpoint = dead_endpoint()
    address = urlsplit(endpoint).netloc
    with pytest.raises(InputError) as caught:
        simulate(spec(market(endpoint, other.endpoint)))
    message = str(caught.value)
    assert f"dsps[{EXT}].endpoint" in message and address in message
    assert "dsps[2]" not in message  # the other bidder answers

    path = tmp_path / "external.json"
    path.write_text(json.dumps(market(endpoint, other.endpoint)))
    out = tmp_path / "report.json"
    cli = rtb_in_process("run", path, "-q", "--out", out)
    assert cli.returncode == 2, cli.stderr
    assert f"dsps[{EXT}].endpoint" in cli.stderr and address in cli.stderr
    assert "Traceback" not in cli.stderr and not out.exists()


def test_allow_unreachable_counts_every_request_as_unreachable(other, baseline, tmp_path):
    endpoint = dead_endpoint()
    out = run(spec(market(endpoint, other.endpoint)), tmp_path, allow_unreachable=True)
    tally = out.bidders[0]
    assert tally["requests"] == baseline.bidders[0]["requests"]
    assert tally["faults"] == {name: (tally["requests"] if name == "unreachable" else 0)
                               for name in tally["faults"]}
    check_only_the_bidder_lost(out, baseline)

    # The command line too: it runs, and writes its report and its OpenRTB log.
    path = tmp_path / "external.json"
    path.write_text(json.dumps(market(endpoint, other.endpoint)))
    report, log = tmp_path / "report.json", tmp_path / "openrtb.jsonl"
    cli = rtb_in_process("run", path, "-q", "--allow-unreachable", "--out", report,
                         "--openrtb-log", log, "--openrtb-sample", "0.5")
    assert cli.returncode == 0, cli.stderr
    assert json.loads(report.read_text())["bidders"] == out.bidders
    lines = [orjson.loads(line) for line in log.read_bytes().splitlines()]
    ext = [e for line in lines for e in line["bidders"] if e["dsp"] == "ext"]
    assert ext and all(e["fault"] == "unreachable" and e["status"] is None
                       and e["response"] is None for e in ext)


# ---- 4. determinism ------------------------------------------------------------------------

def test_a_deterministic_bidder_gives_byte_identical_reports(bidder, other, tmp_path):
    b = bidder("ok", price=pctr_price)
    data = market(b.endpoint, other.endpoint)
    first = run(spec(data), tmp_path, "first.csv")
    second = run(spec(data), tmp_path, "second.csv")
    assert first.json == second.json and first.log == second.log
    check_all(first.run)
    tally, camps = first.bidders[0], first.run.campaigns
    assert tally["bids"] == seats_in(b.requests) / 2 > 0  # every seat of both runs bid
    assert tally["bids"] == sum(camps[c]["bids"] for c in EXT_CAMPAIGNS)
    assert not any(tally["faults"].values())
    assert camps["ext-a"]["impressions"] > 0 and camps["ext-b"]["impressions"] > 0


# ---- 5. the messages -------------------------------------------------------------------------

def test_the_requests_keep_the_contract(bidder, other, tmp_path):
    b = bidder("ok", price=pctr_price)
    out = run(spec(market(b.endpoint, other.endpoint)), tmp_path)
    received = b.requests
    assert len(received) == out.bidders[0]["requests"] > 400
    ids = [r["id"] for r in received]
    assert len(set(ids)) == len(ids)
    total = out.run.report["exchange"]["requests"]
    with_deal = 0
    for body, r in zip(b.bodies, received):
        model = O.parse_request(body)
        assert model.id == r["id"] and model.source.tid == r["id"]
        seed, n = r["id"].split("-")
        assert int(seed) == SEED and 0 <= int(n) < total
        assert len(model.imp) == 1
        imp = model.imp[0]
        assert imp.id == "1" and imp.tagid in FLOORS
        assert imp.bidfloor == FLOORS[imp.tagid] and imp.bidfloorcur == "USD"
        assert model.at == 2 and model.tmax == 80 and model.cur == ["USD"]
        pub = SLOT_PUBLISHER[imp.tagid]
        assert model.site.id == model.site.publisher.id == pub
        assert (imp.banner is not None) == (pub == "news") == (model.device.devicetype == 2)
        assert (imp.native is not None) == (pub == "blog") == (model.device.devicetype == 1)
        # Blocked categories and domains: news blocks, blog does not.
        if pub == "news":
            assert model.bcat == ["gambling"] and model.badv == ["rival.example"]
        else:
            assert model.bcat is None and model.badv is None
            assert "bcat" not in r and "badv" not in r
        assert model.regs.gdpr == 1 and r["user"]["ext"]["consent"] in (0, 1)
        # The seats: this DSP's campaigns only, in the scenario's order, each once.
        rtbsim = r["ext"]["rtbsim"]
        seats = [s["seat"] for s in rtbsim["seats"]]
        assert seats and seats == [c for c in EXT_CAMPAIGNS if c in seats]
        segments = {s.id for d in model.user.data or [] for s in d.segment or []}
        if "ext-b" in seats:  # it targets sports
            assert "sports" in segments
        assert rtbsim["tick_start_s"] <= rtbsim["time_s"] < rtbsim["tick_end_s"]
        for s in rtbsim["seats"]:
            assert 0 < s["pctr"] < 1 and 0 < s["pcvr"] < 1 and s["paced_in"] is True
            assert 0 < s["budget_left"] <= 15.0 and s["daily_budget_left"] is None
            assert s["value_per_conversion"] == (60.0 if s["seat"] == "ext-a" else 120.0)
        # The deal: on news only, admitting both seats.
        if imp.pmp is not None:
            with_deal += 1
            assert pub == "news" and imp.pmp.private_auction == 0
            (deal,) = imp.pmp.deals
            assert deal.id == DEAL and deal.bidfloor == 1.0 and deal.at == 2
            assert deal.wseat == list(EXT_CAMPAIGNS)
    news = sum(r["imp"][0]["tagid"] == "top" for r in received)
    assert 0.2 * news < with_deal < 0.4 * news  # the deal's share, 0.3
    # The other external DSP never sees this one's seats, nor this one its.
    assert {s["seat"] for r in other.requests for s in r["ext"]["rtbsim"]["seats"]} == {"ext2-c"}
    # Deal bids were taken: the ok bidder names the deal for its admitted seats.
    assert out.bidders[0]["bids"] == seats_in(received)
    assert out.run.report["publishers"][0]["deal_share"] > 0


# ---- 6. budgets and caps stay the exchange's ---------------------------------------------------

def test_a_bidder_bidding_high_cannot_overspend_and_is_capped(bidder, tmp_path):
    """First price, every seat bidding 20 CPM: ext-a's budget of 0.5 lasts a couple of
    dozen impressions, so it runs out inside a tick (the kernel stops it, to the micro);
    bids whose one impression would cost more than the budget left are dropped as
    over_budget, exactly those. ext-b's max_bid_cpm 3 clips its bids to 3."""
    b = bidder("ok", price=20.0)
    data = market(b.endpoint, auction="first", ext_a={"budget": 0.5},
                  ext_b={"max_bid_cpm": 3.0})
    out = run(spec(data), tmp_path, openrtb_log=tmp_path / "openrtb.jsonl", openrtb_sample=1.0)
    check_all(out.run)
    a, bb = out.run.campaigns["ext-a"], out.run.campaigns["ext-b"]
    assert micros(a["spend"]) <= micros(a["budget"]) == 500_000
    one = 20.0 / 1000 * 1.12  # one impression at 20 CPM with the DSP's fee
    assert a["spend"] > 0.5 - one
    # Over budget: a bid at 20 CPM costs 20,000 + 2,400 micros; those above the budget left.
    received = b.requests
    over = sum(1 for r in received for s in r["ext"]["rtbsim"]["seats"]
               if s["seat"] == "ext-a" and 22_400 > round(s["budget_left"] * 1e6))
    tally = out.bidders[0]
    assert tally["faults"]["over_budget"] == over > 0
    assert tally["bids"] == seats_in(received) - over
    # ext-b: bid 20, capped at 3 (first price: the price is the bid).
    log = out.run.log
    mine = log["campaign_id"] == "ext-b"
    assert bb["impressions"] == mine.sum() > 0
    assert (log["bid_cpm"][mine] == 3.0).all() and (log["price_cpm"][mine] == 3.0).all()
    assert (log["bid_cpm"][log["campaign_id"] == "ext-a"] == 20.0).all()
    prices = Counter(bid["price"] for line in (tmp_path / "openrtb.jsonl").read_bytes().splitlines()
                     for bid in orjson.loads(line)["outcome"]["bids"] if bid["seat"] == "ext-b")
    assert set(prices) == {3.0}


def test_a_bid_above_the_budget_is_clipped_to_max_bid_cpm_not_dropped(bidder, tmp_path):
    b = bidder("ok", price=20_000.0)  # one impression: 22.4 at the bid, budget 15
    out = run(spec(market(b.endpoint, ext_b={"max_bid_cpm": 3.0})), tmp_path)
    tally, camps = out.bidders[0], out.run.campaigns
    received = b.requests
    # ext-a has no cap: its bids cost more than its budget, rightly over budget.
    assert tally["faults"]["over_budget"] == sum(
        s["seat"] == "ext-a" for r in received for s in r["ext"]["rtbsim"]["seats"])
    # ext-b's are capped at 3 CPM, which its budget pays.
    assert camps["ext-b"]["bids"] > 0 and camps["ext-b"]["impressions"] > 0


# ---- 7. notices ------------------------------------------------------------------------------

def test_win_and_loss_notices(bidder, tmp_path):
    b = bidder("ok", price=pctr_price, notices=True)
    out = run(spec(market(b.endpoint, ext={"notices": True})), tmp_path)
    tally = out.bidders[0]
    assert tally["notices_failed"] == 0 and tally["bids"] > 0
    by_kind: dict[str, list[dict]] = {"win": [], "bill": [], "loss": []}
    for path_qs in b.notices:
        assert "${" not in path_qs and "%24%7B" not in path_qs
        parts = urlsplit(path_qs)
        query = parse_qs(parts.query, keep_blank_values=True)
        by_kind[parts.path.strip("/")].append({k: v[0] for k, v in query.items()})
    wins, bills, losses = by_kind["win"], by_kind["bill"], by_kind["loss"]
    camps, log = out.run.campaigns, out.run.log
    assert len(wins) + len(losses) == tally["bids"]
    assert sorted(map(str, wins)) == sorted(map(str, bills))
    for cid in EXT_CAMPAIGNS:
        assert sum(w["seat"] == cid for w in wins) == camps[cid]["impressions"] > 0, cid
    # ${AUCTION_PRICE}: the clearing price, as the impression log has it (10 digits).
    ext = [c in EXT_CAMPAIGNS for c in log["campaign_id"]]
    assert sorted(float(f"{float(w['price']):.10g}") for w in wins) == sorted(
        log["price_cpm"][ext].tolist())
    # Per request: the win notice's id is a request whose time and seat the log shows
    # sold to that seat at that price.
    time_of = {r["id"]: r["ext"]["rtbsim"]["time_s"] for r in b.requests}
    sold = sold_by_time(log)
    for w in wins:
        assert w["cur"] == "USD" and w["bid"] == f"{w['seat']}-bid"
        assert sold[f"{time_of[w['id']]:.3f}", w["seat"]] == float(f"{float(w['price']):.10g}")
    codes = Counter(int(x["loss"]) for x in losses)
    assert codes and set(codes) <= set(O.LOSS_REASONS) and O.LOSS_WON not in codes
    assert O.LOSS_HIGHER_BID in codes


def test_two_bids_of_one_seat_win_at_most_once(bidder, tmp_path):
    b = bidder("two_bids", price=pctr_price, notices=True)
    out = run(spec(market(b.endpoint, ext={"notices": True})), tmp_path)
    camps = out.run.campaigns
    impressions = sum(camps[c]["impressions"] for c in EXT_CAMPAIGNS)
    assert impressions > 0
    wins = [n for n in b.notices if n.startswith("/win")]
    bills = [n for n in b.notices if n.startswith("/bill")]
    # The 0.01 CPM bids are below every floor: none of them can have won.
    assert not [n for n in wins if "-low" in n]
    assert len(wins) == len(bills) == impressions


def test_no_notices_unless_asked(bidder, tmp_path):
    b = bidder("ok", price=pctr_price, notices=True)
    out = run(spec(market(b.endpoint)), tmp_path)
    assert out.bidders[0]["bids"] > 0 and b.notices == []


# ---- 8. --openrtb-log --------------------------------------------------------------------------

MONEY = ("budget_left", "daily_budget_left", "spend")


def without_money(request: dict) -> dict:
    """The request with its seats' money fields left out."""
    rtbsim = request["ext"]["rtbsim"]
    seats = [{k: v for k, v in seat.items() if k not in MONEY} for seat in rtbsim["seats"]]
    return {**request, "ext": {**request["ext"], "rtbsim": {**rtbsim, "seats": seats}}}


def test_the_openrtb_log(bidder, other, tmp_path):
    """With sample 1.0, one line per request of the run, in order: also for a request no
    campaign may bid on (here the first 20 minutes, before every campaign's flight),
    with no bidders. Each bidder's request validates and is, for an external bidder,
    what it got; each response validates and is, for an external bidder, its answer;
    the outcome is the impression log's."""
    b = bidder("ok", price=pctr_price)
    other_before = len(other.bodies)
    data = market(b.endpoint, other.endpoint)
    for c in data["campaigns"]:
        c["start"] = "2026-03-02T08:20:00Z"
    path = tmp_path / "openrtb.jsonl"
    out = run(spec(data), tmp_path, openrtb_log=path, openrtb_sample=1.0)
    check_all(out.run)
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    report = out.run.report
    total = report["exchange"]["requests"]
    assert [x["id"] for x in lines] == [f"{SEED}-{n}" for n in range(total)]
    unbid = [x for x in lines if not x["bidders"]]
    assert unbid and unbid == [x for x in lines if x["time_s"] < 1200.0]
    assert all(x["outcome"]["winner"] in (None, "market") and x["outcome"]["bids"] == []
               for x in unbid)
    received = {r["id"]: r for r in b.requests}
    received_other = {r["id"]: r for r in other.requests[other_before:]}
    sent = {"ext": received, "ext2": received_other}
    bidders = {"ext": b, "ext2": other}
    counted = Counter()
    for line in lines:
        for entry in line["bidders"]:
            dsp = entry["dsp"]
            counted[dsp] += 1
            request = O.parse_request(O.dumps(entry["request"]))
            assert request.id == line["id"] and request.ext["rtbsim"]["time_s"] == line["time_s"]
            assert entry["external"] == (dsp in sent)
            if dsp in sent:  # what the bidder really got and answered (but the money:
                # test_the_openrtb_log_shows_the_requests_as_sent)
                assert without_money(entry["request"]) == without_money(sent[dsp][line["id"]])
                assert entry["status"] == 200 and entry["fault"] is None
                O.parse_response(O.dumps(entry["response"]))
                _, answer = bidders[dsp].answer(sent[dsp][line["id"]])
                assert entry["response"] == orjson.loads(answer)
                offered = {sb["seat"]: sb["bid"][0]["price"] for sb in entry["response"]["seatbid"]}
                assert offered == {bid["seat"]: bid["price"] for bid in line["outcome"]["bids"]
                                   if bid["dsp"] == dsp}
            else:
                seats = {s["seat"] for s in entry["request"]["ext"]["rtbsim"]["seats"]}
                assert seats <= {"house-fixed", "house-linear"}
                if entry["response"] is not None:
                    assert entry["status"] == 200
                    response = O.parse_response(O.dumps(entry["response"]))
                    assert response.id == line["id"]
                    assert {sb.seat for sb in response.seatbid} <= seats
                else:
                    assert entry["status"] == 204
    # Every request an external bidder got has its line, and no other.
    assert counted["ext"] == len(received) and counted["ext2"] == len(received_other)
    assert counted["house"] > 0
    # The outcome is the impression log's: per request, the winner and the price.
    log = out.run.log
    sold = sold_by_time(log)
    won = [x for x in lines if x["outcome"]["winner"] not in (None, "market")]
    assert len(won) == len(sold) == log["time_s"].size
    for x in won:
        o = x["outcome"]
        assert sold[f"{x['time_s']:.3f}", o["winner"]] == float(f"{o['price']:.10g}")
        (win,) = [bid for bid in o["bids"] if bid["loss"] == O.LOSS_WON]
        assert win["seat"] == o["winner"]
    market_won = sum(x["outcome"]["winner"] == "market" for x in lines)
    assert market_won == report["exchange"]["impressions_to_market"]
    assert all(bid["loss"] in O.LOSS_REASONS for x in lines for bid in x["outcome"]["bids"])


def test_the_openrtb_log_shows_the_requests_as_sent(bidder, tmp_path):
    b = bidder("ok", price=pctr_price)
    path = tmp_path / "openrtb.jsonl"
    simulate(spec(market(b.endpoint)), openrtb_log=path, openrtb_sample=1.0)
    sent = {r["id"]: r for r in b.requests}
    logged = {line["id"]: e["request"] for line in map(orjson.loads, path.read_bytes().splitlines())
              for e in line["bidders"] if e["dsp"] == "ext"}
    assert logged.keys() == sent.keys()
    assert [i for i in sent if logged[i] != sent[i]] == []


def test_an_interrupted_run_leaves_no_openrtb_log(bidder, tmp_path):
    b = bidder("ok", price=pctr_price)

    def stop(fraction: float) -> None:
        if fraction > 0.5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        simulate(spec(market(b.endpoint)), openrtb_log=tmp_path / "openrtb.jsonl",
                 openrtb_sample=1.0, progress=stop)
    assert list(tmp_path.iterdir()) == [] and b.requests



def test_an_anonymous_request_shows_its_category_not_its_domain(bidder, tmp_path):
    """A publisher that sells anonymously: the bidder sees an anonymous id, no domain."""
    b = bidder("ok")
    data = market(b.endpoint)
    data["publishers"][0]["anonymous"] = True  # news
    run(spec(data), tmp_path)
    sites = [r["site"] for r in b.requests]
    anonymous = [s for s in sites if s["cat"] == ["news"]]
    assert anonymous and all("domain" not in s and s["id"] != "news" for s in anonymous)
    assert all(s["publisher"]["id"] == s["id"] for s in anonymous)
    assert all(s["id"] == "blog" for s in sites if s["cat"] == ["food"])
