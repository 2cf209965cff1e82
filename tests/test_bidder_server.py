"""The reference OpenRTB bidder (rtb.bidder_server, `rtb bidder`): a request per
docs/openrtb.md gets the bids the strategy gives on the same view, no bid is 204, a bad
request 400, deals, micro-batches answer as one-by-one, and the command's errors."""

from __future__ import annotations

import asyncio
import http.client
import math
import os
import signal
import subprocess
import sys
from urllib.parse import urlsplit

import numpy as np
import orjson
import pytest
from conftest import REPO
from typer.testing import CliRunner

from dsp.strategies import BidView, from_spec
from rtb.bidder_server import OpenRtbBidder, serve_in_thread
from rtb.cli import app
from rtb.strategy_spec import parse_strategy

SCENARIOS = REPO / "scenarios"
# Two seats with values whose products need every bit of a float: an exact match
# with the strategy's own bid() is a real check.
SEAT_A = {"seat": "prospecting", "pctr": 0.00123, "pcvr": 0.0217, "budget_left": 812.5,
          "daily_budget_left": None, "spend": 187.5, "flight_left_s": 86000.0,
          "day_left_s": 3000.0, "paced_in": True, "value_per_conversion": 90.0}
SEAT_B = {"seat": "retargeting", "pctr": 0.0041, "pcvr": 0.0333, "budget_left": 50.0,
          "daily_budget_left": 12.25, "spend": 0.75, "flight_left_s": 3600.0,
          "day_left_s": 3000.0, "paced_in": False, "value_per_conversion": 37.5}
STRATEGIES = ["fixed:bid_cpm=2.2", "linear:base_cpm=2.5,avg_ctr=0.0013", "value:shading=0.7",
              "python:class=my_bidders:Shaded,value_per_conversion=90,shade=0.65"]


def bid_request(seats=(SEAT_A, SEAT_B), n: int = 0, floor: float = 0.5, deal: dict | None = None,
                tick_start: float = 5400.0, at: int = 2) -> dict:
    """A BidRequest as docs/openrtb.md says rtbsim sends it."""
    imp = {"id": "1", "tagid": "front-top", "banner": {}, "bidfloor": floor, "bidfloorcur": "EUR",
           "secure": 1}
    if deal is not None:
        imp["pmp"] = {"private_auction": 0, "deals": [deal]}
    return {
        "id": f"7-{n}", "imp": [imp],
        "site": {"id": "news", "domain": "news.example", "cat": ["IAB12"],
                 "publisher": {"id": "news"}},
        "device": {"devicetype": 1, "geo": {"country": "FR"}},
        "user": {"id": "u12", "ext": {"consent": 1}, "data": [
            {"id": "rtbsim-dmp", "name": "rtbsim-dmp", "segment": [{"id": "sports"}]}]},
        "regs": {"gdpr": 1}, "at": at, "tmax": 100, "cur": ["EUR"], "source": {"tid": f"7-{n}"},
        "ext": {"rtbsim": {"time_s": tick_start + 0.25 + n, "tick_start_s": tick_start,
                           "tick_end_s": tick_start + 60.0, "seats": list(seats)}},
    }


def expected_bid(text: str, seat: dict, floor: float = 0.5) -> float:
    """The bid the strategy gives in process on the view of this seat and request."""
    spec = parse_strategy(text, "strategy")
    if spec.kind == "python":
        spec = spec.model_copy(update={"folder": str(SCENARIOS)})
    strategy = from_spec(spec, value_per_conversion=seat["value_per_conversion"])
    view = BidView(pctr=np.array([seat["pctr"]]), pcvr=np.array([seat["pcvr"]]),
                   floor_cpm=np.array([floor]), uniform=np.array([0.5]))
    return float(strategy.bid(view)[0])


def post(url: str, body: bytes) -> tuple[int, bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("POST", parts.path, body, {"Content-Type": "application/json",
                                                      "x-openrtb-version": "2.6"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture
def serve():
    """serve(strategy, **kw) -> url; every server started is stopped after the test."""
    stops = []

    def start(strategy, **kw) -> str:
        url, stop = serve_in_thread(strategy, **kw)
        stops.append(stop)
        return url

    yield start
    for stop in stops:
        stop()


@pytest.mark.parametrize("text", STRATEGIES)
def test_each_seat_gets_the_bid_its_strategy_gives_on_the_same_view(serve, text):
    url = serve(text, base_dir=SCENARIOS)
    status, body = post(url, orjson.dumps(bid_request()))
    assert status == 200
    answer = orjson.loads(body)
    assert answer["id"] == "7-0" and answer["cur"] == "EUR"
    assert [seatbid["seat"] for seatbid in answer["seatbid"]] == ["prospecting", "retargeting"]
    for seatbid, seat in zip(answer["seatbid"], (SEAT_A, SEAT_B)):
        (bid,) = seatbid["bid"]
        assert bid["price"] == expected_bid(text, seat)  # exactly: orjson writes floats round-trip
        assert bid["impid"] == "1" and bid["crid"] == f"{seat['seat']}-1" and "dealid" not in bid


def test_no_bid_from_any_seat_is_204_with_no_body(serve):
    url = serve("python:class=my_bidders:Shaded,value_per_conversion=90", base_dir=SCENARIOS)
    assert post(url, orjson.dumps(bid_request(floor=500.0))) == (204, b"")  # all under the floor
    no_ext = bid_request()
    del no_ext["ext"]  # a production exchange's request: no predicted CTR to bid on
    assert post(url, orjson.dumps(no_ext)) == (204, b"")
    assert post(url, orjson.dumps(bid_request(seats=()))) == (204, b"")


def test_one_seat_without_a_bid_is_left_out():
    text = "python:class=my_bidders:Shaded,value_per_conversion=90"  # no bid under the floor
    bids = [expected_bid(text, seat, floor=5.0) for seat in (SEAT_A, SEAT_B)]
    assert math.isnan(bids[0]) and bids[1] > 5.0
    [(status, body)] = OpenRtbBidder(text, base_dir=SCENARIOS).answer(
        [orjson.dumps(bid_request(floor=5.0))])
    assert status == 200
    assert orjson.loads(body)["seatbid"] == [{"seat": "retargeting", "bid": [
        {"id": "7-0/retargeting", "impid": "1", "price": bids[1], "crid": "retargeting-1"}]}]


def test_malformed_requests_are_400_naming_the_problem(serve):
    url = serve("fixed:bid_cpm=2")
    status, body = post(url, b'{"id": "1", "imp": [')
    assert status == 400 and body.startswith(b"not JSON")
    bad = bid_request()
    bad["ext"]["rtbsim"]["seats"] = [dict(SEAT_A, pctr="high")]
    assert post(url, orjson.dumps(bad)) == (400, b"ext.rtbsim.seats[0].pctr: 'high' is not a number")
    assert post(url, b"[1, 2]")[0] == 400
    no_value = bid_request(seats=[{k: v for k, v in SEAT_A.items() if k != "value_per_conversion"}])
    assert OpenRtbBidder("value:shading=0.7").answer([orjson.dumps(no_value)]) == [
        (400, b"ext.rtbsim.seats[0].value_per_conversion: required by the value strategy")]


def test_health_answers_ok(serve):
    parts = urlsplit(serve("fixed:bid_cpm=2"))
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("GET", "/health")
    response = connection.getresponse()
    assert (response.status, response.read()) == (200, b"ok")
    connection.close()


def test_a_deal_that_admits_the_seat_and_whose_floor_the_bid_meets_sets_dealid():
    bidder = OpenRtbBidder("fixed:bid_cpm=2")

    def dealids(deal: dict) -> dict:
        [(status, body)] = bidder.answer([orjson.dumps(bid_request(deal=deal))])
        assert status == 200
        return {s["seat"]: s["bid"][0].get("dealid") for s in orjson.loads(body)["seatbid"]}

    deal = {"id": "pmp-1", "bidfloor": 1.5, "bidfloorcur": "EUR", "at": 2, "wseat": ["prospecting"]}
    assert dealids(deal) == {"prospecting": "pmp-1", "retargeting": None}
    assert dealids(dict(deal, bidfloor=2.0)) == {"prospecting": "pmp-1", "retargeting": None}
    assert dealids(dict(deal, bidfloor=2.5)) == {"prospecting": None, "retargeting": None}
    assert dealids(dict(deal, wseat=[])) == {"prospecting": None, "retargeting": None}
    no_wseat = {k: v for k, v in deal.items() if k != "wseat"}  # no restriction (OpenRTB 3.2.12)
    assert dealids(no_wseat) == {"prospecting": "pmp-1", "retargeting": "pmp-1"}


PROBE = '''
import numpy as np

views = []


class Probe:
    """Bids the request's time in minutes; keeps every view it is given."""

    def bid(self, view):
        views.append(view)
        return view.time_s / 60.0

    def observe(self, feedback):
        pass
'''


def test_the_view_holds_the_requests_fields(tmp_path):
    (tmp_path / "bidder_probe.py").write_text(PROBE)
    bidder = OpenRtbBidder("python:class=bidder_probe:Probe", base_dir=tmp_path)
    deal = {"id": "pmp-1", "bidfloor": 1.5, "at": 2, "wseat": ["prospecting"]}
    bidder.answer([orjson.dumps(bid_request(deal=deal)), orjson.dumps(bid_request(n=1))])
    import bidder_probe

    a, b = bidder_probe.views  # one view per seat over both requests
    assert a.labels.campaign == "prospecting" and b.labels.campaign == "retargeting"
    assert a.pctr.tolist() == [0.00123] * 2 and a.pcvr.tolist() == [0.0217] * 2
    assert a.time_s.tolist() == [5400.25, 5401.25] and a.floor_cpm.tolist() == [0.5, 0.5]
    assert a.deal.tolist() == [0, -1] and a.deal_floor_cpm[0] == 1.5 and math.isnan(a.deal_floor_cpm[1])
    assert b.deal.tolist() == [-1, -1]  # the deal does not admit retargeting
    assert a.labels.deals == ("pmp-1",) and a.labels.currency == "EUR"
    assert (a.spend, a.budget_left, a.daily_budget_left, a.flight_left_s, a.day_left_s) == \
           (187.5, 812.5, math.inf, 86000.0, 3000.0)
    assert (b.daily_budget_left, a.tick_start_s, a.tick_end_s) == (12.25, 5400.0, 5460.0)
    assert a.paced_in.tolist() == [True, True] and b.paced_in.tolist() == [False, False]
    labels = a.labels
    assert labels.slots[a.slot[0]] == "news,front-top" and labels.publishers[a.publisher[0]] == "news"
    assert labels.formats[a.format[0]] == "banner" and labels.devices[a.device[0]] == "mobile"
    assert labels.geos[a.geo[0]] == "FR"
    assert a.segments.tolist() == [1 << labels.segments.index("sports")] * 2
    assert ((0 <= a.uniform) & (a.uniform < 1)).all()


def test_a_batch_answers_as_one_request_at_a_time_and_splits_ticks(tmp_path):
    (tmp_path / "bidder_probe.py").write_text(PROBE)
    bodies = [orjson.dumps(bid_request(
        seats=[dict(SEAT_A, pctr=0.001 + n * 1e-5), dict(SEAT_B, spend=0.75 + n // 2 % 2)][: 1 + n % 2],
        n=n, tick_start=5400.0 + 60.0 * (n % 3))) for n in range(50)]
    for text in [*STRATEGIES, "python:class=bidder_probe:Probe"]:
        folder = tmp_path if "probe" in text else SCENARIOS
        one_by_one = OpenRtbBidder(text, base_dir=folder)
        alone = [one_by_one.answer([body])[0] for body in bodies]
        assert OpenRtbBidder(text, base_dir=folder).answer(bodies) == alone
    import bidder_probe

    batched = bidder_probe.views[75:]  # after the one-by-one views (25 + 2 x 25 seats)
    assert sum(len(v.pctr) for v in batched) == 75
    for view in batched:  # a view never mixes two ticks or two states of a seat
        assert ((view.time_s >= view.tick_start_s) & (view.time_s < view.tick_end_s)).all()
    assert len(batched) == 3 + 6  # prospecting: one per tick; retargeting: per tick and spend


def test_concurrent_requests_over_http_get_the_one_by_one_answers(serve):
    text = "linear:base_cpm=2.5,avg_ctr=0.0013"
    bodies = [orjson.dumps(bid_request(seats=[dict(SEAT_A, pctr=0.001 + n * 1e-5), SEAT_B][: 1 + n % 2],
                                       n=n)) for n in range(50)]
    alone = OpenRtbBidder(text)
    expected = [alone.answer([body])[0] for body in bodies]
    url = serve(text)

    async def send_all() -> list[tuple[int, bytes]]:
        import aiohttp

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
            async def one(body: bytes) -> tuple[int, bytes]:
                async with session.post(url, data=body) as response:
                    return response.status, await response.read()

            return await asyncio.gather(*(one(body) for body in bodies))

    assert asyncio.run(send_all()) == expected


def invoke(*args: str):
    return CliRunner().invoke(app, ["bidder", *args])


@pytest.mark.parametrize("text, message", [
    ("linear:base_cpm=2", "command line: --strategy.avg_ctr: required"),
    ("cheap:bid_cpm=1", "command line: --strategy: unknown strategy kind 'cheap'"),
    ("python:class=no_such_module:X", "command line: --strategy.class: no module 'no_such_module'"),
])
def test_a_bad_strategy_exits_2_naming_the_option(text, message):
    result = invoke("--strategy", text, "--port", "0")
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_a_port_in_use_exits_2_naming_the_address(serve):
    port = urlsplit(serve("fixed:bid_cpm=2")).port
    result = invoke("--strategy", "fixed:bid_cpm=2", "--port", str(port))
    assert result.exit_code == 2, result.output
    assert f"--port: cannot listen on 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output


def test_the_command_serves_until_sigterm_and_exits_0(tmp_path):
    (tmp_path / "scenario.toml").write_text("")  # --scenario: only its folder is used
    (tmp_path / "bidder_probe.py").write_text(PROBE)
    process = subprocess.Popen(
        [sys.executable, "-m", "rtb", "bidder", "--strategy", "python:class=bidder_probe:Probe",
         "--port", "0", "--scenario", str(tmp_path / "scenario.toml")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "COLUMNS": "200"})
    try:
        line = process.stdout.readline()
        assert line.startswith("rtb bidder: serving python:class=bidder_probe:Probe on http://127.0.0.1:")
        assert line.endswith("/openrtb (Ctrl-C stops)\n")
        url = line.split(" on ")[1].split()[0]
        status, body = post(url, orjson.dumps(bid_request()))
        assert status == 200 and orjson.loads(body)["seatbid"][0]["bid"][0]["price"] == 5400.25 / 60
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert err == ""


def test_serve_in_thread_stops_and_frees_its_port(serve):
    url, stop = serve_in_thread("fixed:bid_cpm=2")
    stop()
    stop()  # twice is harmless
    again = serve("fixed:bid_cpm=2", port=urlsplit(url).port)
    assert post(again, orjson.dumps(bid_request()))[0] == 200


def test_help_lists_the_command():
    result = CliRunner().invoke(app, ["bidder", "--help"])
    assert result.exit_code == 0 and "--strategy" in result.output
