"""An OpenRTB 2.6 bidder for the tests that behaves, or misbehaves, as it is told.

MisbehavingBidder serves POST /openrtb from an aiohttp application in a background
thread on a free port; its `behaviour` (BEHAVIOURS) decides every answer, and it records
every request body it got (`bodies`, `requests`) and every notice URL that reached it
(`notices`: any GET, path and query as sent). tests/test_external_bidders.py runs the
exchange against it (docs/openrtb.md is the contract it keeps or breaks).

"ok" bids once per seat of ext.rtbsim.seats, deterministically: `price` is a CPM or a
function of (seat, request); a bid names the request's deal when the deal admits its
seat, and carries nurl/burl/lurl with the OpenRTB macros when `notices` is set.
The others answer as their names say; a bid that must break one rule keeps every other
one (impid "1", a seat of the request, a valid price, no deal, an allowed adomain).
"two_bids" answers every seat with two valid bids: 0.01 CPM first, then the "ok" one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

PATH = "/openrtb"
BEHAVIOURS = ("ok", "nobid", "nobid_nbr", "slow", "http500", "malformed", "wrong_id",
              "unknown_imp", "unknown_seat", "negative_price", "string_price", "over_budget",
              "blocked_adomain", "blocked_cat", "bad_deal", "two_bids")
ADOMAIN = "bidder.example"  # the adomain of a well-behaved bid (no test blocks it)
WIN_QUERY = ("price=${AUCTION_PRICE}&id=${AUCTION_ID}&seat=${AUCTION_SEAT_ID}"
             "&bid=${AUCTION_BID_ID}&cur=${AUCTION_CURRENCY}")
LOSS_QUERY = "loss=${AUCTION_LOSS}&price=${AUCTION_PRICE}&id=${AUCTION_ID}&seat=${AUCTION_SEAT_ID}"


class MisbehavingBidder:
    """A bidder on 127.0.0.1 (port 0: a free one); start(), then `endpoint`; stop()."""

    def __init__(self, behaviour: str = "ok", price: float | Callable[[dict, dict], float] = 1.5,
                 notices: bool = False, sleep_s: float = 0.3):
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; one of {BEHAVIOURS}")
        self.behaviour = behaviour
        self.price = price
        self.with_notices = notices
        self.sleep_s = sleep_s  # "slow": how long it waits before answering
        self.bodies: list[bytes] = []  # every request body, in the order it came
        self.notices: list[str] = []  # every GET's path and query
        self.port: int | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    # ---- what it got ----------------------------------------------------------------

    @property
    def requests(self) -> list[dict]:
        """The request bodies as JSON."""
        with self._lock:
            bodies = list(self.bodies)
        return [orjson.loads(b) for b in bodies]

    def seats(self) -> int:
        """How many seats (ext.rtbsim.seats) the requests it got held, in all."""
        return sum(len(r["ext"]["rtbsim"]["seats"]) for r in self.requests)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return self.base + PATH

    # ---- the answers ----------------------------------------------------------------

    def _price(self, seat: dict, request: dict) -> float:
        return float(self.price(seat, request) if callable(self.price) else self.price)

    def _bid(self, seat: dict, request: dict, **changes: Any) -> dict:
        name = seat["seat"]
        bid = {"id": f"{name}-bid", "impid": "1", "price": self._price(seat, request),
               "adomain": [ADOMAIN], "crid": f"{name}-creative"}
        if self.with_notices:
            bid["nurl"] = f"{self.base}/win?{WIN_QUERY}"
            bid["burl"] = f"{self.base}/bill?{WIN_QUERY}"
            bid["lurl"] = f"{self.base}/loss?{LOSS_QUERY}"
        bid.update(changes)
        return bid

    def _ok_bid(self, seat: dict, request: dict) -> dict:
        deals = (request["imp"][0].get("pmp") or {}).get("deals") or []
        if deals and seat["seat"] in (deals[0].get("wseat") or []):
            return self._bid(seat, request, dealid=deals[0]["id"])
        return self._bid(seat, request)

    def answer(self, request: dict) -> tuple[int, bytes]:
        """(status, body) for a request read as JSON; "slow" answers as "ok" (late)."""
        b, rid = self.behaviour, request["id"]
        seats = request["ext"]["rtbsim"]["seats"]
        if b == "nobid":
            return 204, b""
        if b == "nobid_nbr":
            return 200, orjson.dumps({"id": rid, "nbr": 2})
        if b == "http500":
            return 500, b"internal error"
        if b == "malformed":
            return 200, b"{this is not json"
        if b in ("ok", "slow", "wrong_id"):
            bids = [[self._ok_bid(s, request)] for s in seats]
        elif b == "unknown_imp":
            bids = [[self._bid(s, request, impid="2")] for s in seats]
        elif b == "unknown_seat":
            bids = [[self._bid(s, request)] for s in seats]
        elif b == "negative_price":
            bids = [[self._bid(s, request, price=-1.0)] for s in seats]
        elif b == "string_price":
            bids = [[self._bid(s, request, price="1.5")] for s in seats]
        elif b == "over_budget":
            # One impression at this price costs more than all the budget left.
            bids = [[self._bid(s, request, price=(s["budget_left"] * 1000.0) * 2 + 1.0)]
                    for s in seats]
        elif b == "blocked_adomain":
            if not request.get("badv"):
                return 204, b""
            bids = [[self._bid(s, request, adomain=[request["badv"][0].upper()])] for s in seats]
        elif b == "blocked_cat":
            if not request.get("bcat"):
                return 204, b""
            bids = [[self._bid(s, request, cat=[request["bcat"][0]])] for s in seats]
        elif b == "bad_deal":
            bids = [[self._bid(s, request, dealid="no-such-deal")] for s in seats]
        elif b == "two_bids":  # per seat, a bid of 0.01 CPM first, then the "ok" one
            bids = [[self._bid(s, request, id=f"{s['seat']}-low", price=0.01),
                     self._ok_bid(s, request)] for s in seats]
        else:  # pragma: no cover
            raise AssertionError(b)
        names = [f"not-{s['seat']}" if b == "unknown_seat" else s["seat"] for s in seats]
        response = {"id": "not-the-request" if b == "wrong_id" else rid, "cur": request["cur"][0],
                    "seatbid": [{"seat": name, "bid": bid} for name, bid in zip(names, bids)]}
        return 200, orjson.dumps(response)

    # ---- the server -----------------------------------------------------------------

    def _app(self) -> web.Application:
        async def openrtb(http: web.Request) -> web.Response:
            body = await http.read()
            with self._lock:
                self.bodies.append(body)
            status, payload = self.answer(orjson.loads(body))
            if self.behaviour == "slow":
                await asyncio.sleep(self.sleep_s)
            if status == 204:
                return web.Response(status=204)
            return web.Response(status=status, body=payload,
                                content_type="application/json" if status == 200 else "text/plain")

        async def notice(http: web.Request) -> web.Response:
            with self._lock:
                self.notices.append(http.path_qs)
            return web.Response(status=200)

        app = web.Application()
        app.router.add_post(PATH, openrtb)
        app.router.add_get("/{tail:.*}", notice)
        return app

    def start(self) -> MisbehavingBidder:
        ready = threading.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            try:
                runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
                await site.start()
                self.port = site._server.sockets[0].getsockname()[1]
                self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            except OSError as exc:  # raised again in start()'s thread
                failure.append(exc)
                return
            finally:
                ready.set()
            try:
                await self._stop.wait()
            finally:
                await runner.cleanup()

        self._thread = threading.Thread(target=asyncio.run, args=(main(),),
                                        name="misbehaving-bidder", daemon=True)
        self._thread.start()
        ready.wait()
        if failure or self.port is None:
            self._thread.join()
            raise failure[0] if failure else RuntimeError("the bidder's thread failed to start")
        return self

    def stop(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=10)
