"""The exchange's HTTP client: CPU per bid request, libcurl (what rtbsim uses) against
aiohttp's client, to the same bidder.

Run: pytest benchmarks/bench_http_clients.py --benchmark-only -s
The reference bidder (`rtb bidder`, fixed bids) runs in its own process; each client
sends the same bid request REQUESTS times with 64 in flight on keep-alive connections,
alternately, ROUNDS times each. The figure is this process's CPU time (the thread that
sends: for aiohttp its event loop) per request, which bounds how many requests a second
the exchange can send from one core.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp
import orjson

from bench_openrtb import bidder_process  # benchmarks/ is on the path under pytest
from rtb.openrtb_client import HEADERS, BidderClient

REQUESTS = 5_000
ROUNDS = 3
IN_FLIGHT = 64
BODY = orjson.dumps({
    "id": "7-1", "imp": [{"id": "1", "tagid": "top", "banner": {}, "bidfloor": 0.5,
                          "bidfloorcur": "USD"}],
    "site": {"id": "news", "cat": ["news"], "publisher": {"id": "news"}},
    "device": {"devicetype": 2, "geo": {"country": "US"}}, "user": {"id": "u1"},
    "at": 2, "tmax": 100, "cur": ["USD"],
    "ext": {"rtbsim": {"time_s": 1.0, "tick_start_s": 0.0, "tick_end_s": 60.0, "seats": [
        {"seat": "a", "pctr": 0.002, "pcvr": 0.02, "budget_left": 100.0,
         "daily_budget_left": None, "spend": 0.0, "flight_left_s": 3600.0,
         "day_left_s": 3600.0, "paced_in": True, "value_per_conversion": 50.0}]}}})


def _libcurl_us(url: str) -> float:
    client = BidderClient(url, IN_FLIGHT)
    try:
        start = time.thread_time()
        answers = client.post_all([BODY] * REQUESTS, 10.0)
        cpu = time.thread_time() - start
    finally:
        client.close()
    assert all(a.status == 200 for a in answers)
    return cpu / REQUESTS * 1e6


def _aiohttp_us(url: str) -> float:
    async def send() -> float:
        connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
        async with aiohttp.ClientSession(connector=connector, headers={
                h.split(": ")[0]: h.split(": ")[1] for h in HEADERS if ": " in h}) as session:
            async def one() -> int:
                async with session.post(url, data=BODY) as response:
                    await response.read()
                    return response.status
            start = time.thread_time()
            statuses = await asyncio.gather(*(one() for _ in range(REQUESTS)))
            cpu = time.thread_time() - start
        assert all(s == 200 for s in statuses)
        return cpu / REQUESTS * 1e6
    return asyncio.run(send())


def test_http_client_cpu_per_request(benchmark):
    with bidder_process("fixed:bid_cpm=2") as url:
        _libcurl_us(url), _aiohttp_us(url)  # connections and imports: untimed
        figures: dict[str, list[float]] = {"libcurl": [], "aiohttp": []}

        def rounds() -> None:
            for _ in range(ROUNDS):
                figures["libcurl"].append(_libcurl_us(url))
                figures["aiohttp"].append(_aiohttp_us(url))

        benchmark.pedantic(rounds, rounds=1, iterations=1)
    curl, aio = statistics.median(figures["libcurl"]), statistics.median(figures["aiohttp"])
    benchmark.extra_info.update(figures)
    print(f"\nCPU per bid request, {IN_FLIGHT} in flight: libcurl {curl:.0f} us"
          f" ({', '.join(f'{x:.0f}' for x in figures['libcurl'])}), aiohttp {aio:.0f} us"
          f" ({', '.join(f'{x:.0f}' for x in figures['aiohttp'])}): {aio / curl:.1f}x")
    assert curl < aio
