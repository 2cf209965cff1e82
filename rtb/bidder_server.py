"""The reference OpenRTB 2.6 bidder: any rtbsim strategy answering BidRequests over HTTP.

`rtb bidder --strategy SPEC` serves it at `POST /openrtb` (the wire contract:
docs/openrtb.md). Each campaign of the request's `ext.rtbsim.seats` is a seat with
its own strategy instance; the answer is the seats' bids as a BidResponse, or HTTP 204
when no seat bids.

Requests are micro-batched: those that reach the handler while the event loop is busy
are answered together, one BidView (arrays of m requests) and one bid() call per seat
per batch, so a request costs its JSON and HTTP handling and a few dictionary reads.
The batch is flushed with loop.call_soon after the first request arrives: aiohttp's
handlers for everything one poll of the sockets delivered run before the flush (they
are already queued), so at 64 requests in flight a batch holds tens of requests.
Requests of one seat are grouped by everything a view holds as a scalar (the tick,
budgets, spend, the currency, the auction), so a batch never mixes two ticks' states in
one view.

Randomised strategies (`random`, `shaded`'s exploration, a user's class reading
`view.uniform`) draw from the bidder's own stream per seat (seeded by --seed), not the
simulation's: only deterministic strategies bid exactly as in an in-process run. The
bidder reads no win or loss notices, so strategies that learn (`observe`) never learn.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import orjson

from dsp.strategies import BidView, Strategy, ViewLabels, from_spec
from rtb.seeding import stream
from rtb.strategy_spec import AnyStrategySpec, PythonStrategySpec, parse_strategy
from rtb.types import DEVICES, FORMATS

ENDPOINT = "/openrtb"
HEALTH = "/health"
# OpenRTB devicetype codes: 2 is "Personal Computer", every other one a mobile device.
DESKTOP_DEVICETYPE = 2
# The kinds from_spec builds from the advertiser's value per conversion.
NEEDS_VALUE = ("value", "shaded", "budget_ortb")
MAX_GEOS = 256  # BidView.geo is u1
MAX_SEGMENTS = 64  # BidView.segments is a u8 bit mask
_INF = math.inf
_JSON = {"Content-Type": "application/json", "x-openrtb-version": "2.6"}

log = logging.getLogger("rtb.bidder")


class BadRequest(ValueError):
    """A BidRequest the bidder cannot read: HTTP 400, the message naming the field."""


class _Names:
    """Names interned to small-integer codes for the bidder's lifetime (a view's codes
    mean the same in every batch), with the names as a tuple, rebuilt only on growth."""

    __slots__ = ("_names", "codes", "limit", "what")

    def __init__(self, what: str, fixed: tuple[str, ...] = (), limit: int = 2**31 - 1):
        self.codes = {name: code for code, name in enumerate(fixed)}
        self.what, self.limit, self._names = what, limit, tuple(fixed)

    def code(self, name: str) -> int:
        code = self.codes.get(name)
        if code is None:
            if len(self.codes) >= self.limit:
                raise BadRequest(f"{self.what}: more than {self.limit} distinct names")
            code = self.codes[name] = len(self.codes)
        return code

    def names(self) -> tuple[str, ...]:
        if len(self._names) != len(self.codes):
            self._names = tuple(self.codes)
        return self._names


class _Seat(NamedTuple):
    """One seat of one request: its group key (scalars of the view) and its row."""

    group: tuple  # (seat, value_per_conversion, at, cur, tick_start_s, tick_end_s, spend,
    # budget_left, daily_budget_left, day_left_s, flight_left_s)
    pctr: float
    pcvr: float
    paced_in: bool
    segments: int  # bit mask over the bidder's segment names
    deal: int  # code of the first deal on the imp that admits the seat; -1 = none
    deal_id: str | None
    deal_floor_cpm: float  # NaN = no deal


class _Request(NamedTuple):
    """What the bidder keeps of a parsed BidRequest."""

    id: str
    imp_id: str
    cur: str
    floor_cpm: float
    time_s: float
    publisher: int
    slot: int
    format: int
    device: int
    geo: int
    seats: list[_Seat]


def _number(value: Any, where: str, default: float | None = None) -> float | None:
    if value is None:
        if default is None:
            raise BadRequest(f"{where}: required, a number")
        return default
    if value.__class__ is float or value.__class__ is int:
        return float(value)
    raise BadRequest(f"{where}: {value!r} is not a number")


def _optional(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if value.__class__ is float or value.__class__ is int:
        return float(value)
    raise BadRequest(f"{where}: {value!r} is not a number")


# A seat's numbers, in _seat_numbers's order; every one may be null (missing).
_SEAT_NUMBERS = ("value_per_conversion", "spend", "budget_left", "daily_budget_left",
                 "day_left_s", "flight_left_s", "pctr", "pcvr")


def _seat_numbers(seat: dict, k: int) -> list[float | None]:
    # The hot loop of parsing: the field's path is formatted only for an error.
    out = []
    for name in _SEAT_NUMBERS:
        value = seat.get(name)
        if value is None or value.__class__ is float:
            out.append(value)
        elif value.__class__ is int:
            out.append(float(value))
        else:
            raise BadRequest(f"ext.rtbsim.seats[{k}].{name}: {value!r} is not a number")
    return out


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


class OpenRtbBidder:
    """A strategy answering OpenRTB 2.6 BidRequests, without HTTP: answer() takes a
    batch of request bodies and gives each its (HTTP status, body).

    strategy: a spec in either form (`fixed:bid_cpm=2`, a TOML inline table, its fields
    as a dict) or its model; a `python` class is looked for in `base_dir` (default: the
    current directory) first, then on the Python path, as a scenario's is in its folder.
    seed: the root of the per-seat streams behind `view.uniform`.
    """

    def __init__(self, strategy: str | dict | AnyStrategySpec, *, seed: int = 0,
                 base_dir: str | Path | None = None):
        spec = strategy if not isinstance(strategy, (str, dict)) else parse_strategy(strategy, "strategy")
        if isinstance(spec, PythonStrategySpec):
            folder = Path(base_dir if base_dir is not None else ".") / (spec.folder or ".")
            spec = spec.model_copy(update={"folder": str(folder.resolve())})
        self.spec, self.seed = spec, seed
        self._needs_value = spec.kind in NEEDS_VALUE
        self._strategies: dict[tuple, tuple[Strategy, np.random.Generator]] = {}
        self._publishers = _Names("site.publisher.id")
        self._slots = _Names("imp.tagid")
        self._geos = _Names("device.geo.country", limit=MAX_GEOS)
        self._segments = _Names("segments", limit=MAX_SEGMENTS)
        self._deals = _Names("imp.pmp.deals[].id")

    # -- parsing -------------------------------------------------------------------

    def parse(self, body: bytes) -> _Request | None:
        """The request's fields, or None when it has no ext.rtbsim (nothing to bid on:
        no predicted CTR); BadRequest names what is wrong."""
        try:
            return self._parse(body)
        except (TypeError, AttributeError) as exc:  # e.g. a list where a string goes
            raise BadRequest(f"malformed BidRequest: {exc}") from None

    def _parse(self, body: bytes) -> _Request | None:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise BadRequest("not a JSON object (a BidRequest)")
        request_id = doc.get("id")
        if not isinstance(request_id, str):
            raise BadRequest("id: required, a string")
        imps = doc.get("imp")
        if not isinstance(imps, list) or not imps or not isinstance(imps[0], dict):
            raise BadRequest("imp: required, a list of Imp objects")
        ext = doc.get("ext")
        sim = ext.get("rtbsim") if isinstance(ext, dict) else None
        if sim is None:
            return None
        if not isinstance(sim, dict):
            raise BadRequest("ext.rtbsim: not an object")
        imp = imps[0]
        cur = doc.get("cur")
        cur = cur[0] if isinstance(cur, list) and cur and isinstance(cur[0], str) else "USD"
        at = doc.get("at", 2)
        if at not in (1, 2):
            raise BadRequest(f"at: {at!r} is not 1 (first price) or 2 (second price)")
        site = _dict(doc.get("site"))
        publisher = _dict(site.get("publisher")).get("id", site.get("id"))
        publisher = str(publisher) if publisher is not None else ""
        device = _dict(doc.get("device"))
        geo = _dict(device.get("geo")).get("country")
        if "video" in imp:
            format_code = 1
        elif "native" in imp:
            format_code = 2
        else:
            format_code = 0
        deals = self._deals_of(imp)
        tick = (_optional(sim.get("tick_start_s"), "ext.rtbsim.tick_start_s"),
                _optional(sim.get("tick_end_s"), "ext.rtbsim.tick_end_s"))
        seats_in = sim.get("seats")
        if not isinstance(seats_in, list):
            raise BadRequest("ext.rtbsim.seats: required, a list")
        user_bits = None
        seats = []
        for k, seat in enumerate(seats_in):
            if not isinstance(seat, dict):
                raise BadRequest(f"ext.rtbsim.seats[{k}]: not an object")
            name = seat.get("seat")
            if not isinstance(name, str):
                raise BadRequest(f"ext.rtbsim.seats[{k}].seat: required, a string (the campaign id)")
            value, spend, budget_left, daily, day_left, flight_left, pctr, pcvr = \
                _seat_numbers(seat, k)
            if pctr is None:
                raise BadRequest(f"ext.rtbsim.seats[{k}].pctr: required, a number")
            if value is None and self._needs_value:
                raise BadRequest(f"ext.rtbsim.seats[{k}].value_per_conversion: required by the"
                                 f" {self.spec.kind} strategy")
            group = (name, value, at, cur, *tick, spend, budget_left,
                     _INF if daily is None else daily, day_left, flight_left)
            if "segments" in seat:
                bits = self._bits(seat["segments"], f"ext.rtbsim.seats[{k}].segments")
            else:
                if user_bits is None:
                    user_bits = self._user_bits(doc)
                bits = user_bits
            deal, deal_id, deal_floor = -1, None, math.nan
            for code, did, floor, wseat in deals:
                if wseat is None or name in wseat:
                    deal, deal_id, deal_floor = code, did, floor
                    break
            seats.append(_Seat(group, pctr, math.nan if pcvr is None else pcvr,
                               seat.get("paced_in", True) is not False, bits, deal, deal_id,
                               deal_floor))
        imp_id = imp.get("id")
        return _Request(request_id, imp_id if isinstance(imp_id, str) else "1", cur,
                        _number(imp.get("bidfloor"), "imp[0].bidfloor", 0.0),
                        _number(sim.get("time_s"), "ext.rtbsim.time_s", math.nan),
                        self._publishers.code(publisher),
                        self._slots.code(f"{publisher},{imp.get('tagid', '')}"), format_code,
                        0 if device.get("devicetype") == DESKTOP_DEVICETYPE else 1,
                        self._geos.code(str(geo) if geo is not None else ""), seats)

    def _deals_of(self, imp: dict) -> list[tuple[int, str, float, frozenset | None]]:
        pmp = imp.get("pmp")
        if not isinstance(pmp, dict):
            return []
        deals = pmp.get("deals")
        if not isinstance(deals, list):
            return []
        found = []
        for k, deal in enumerate(deals):
            if not isinstance(deal, dict) or not isinstance(deal.get("id"), str):
                raise BadRequest(f"imp[0].pmp.deals[{k}].id: required, a string")
            # Absent: any seat (OpenRTB 3.2.12); rtbsim's exchange sends [] when the deal
            # admits none of the bidder's seats.
            wseat = deal.get("wseat")
            found.append((self._deals.code(deal["id"]), deal["id"],
                          _number(deal.get("bidfloor"), f"imp[0].pmp.deals[{k}].bidfloor", 0.0),
                          frozenset(wseat) if isinstance(wseat, list) else None))
        return found

    def _bits(self, names: Any, where: str) -> int:
        if not isinstance(names, list):
            raise BadRequest(f"{where}: not a list of segment names")
        bits = 0
        for name in names:
            bits |= 1 << self._segments.code(str(name))
        return bits

    def _user_bits(self, doc: dict) -> int:
        bits = 0
        for data in _dict(doc.get("user")).get("data") or ():
            for segment in _dict(data).get("segment") or ():
                segment = _dict(segment)
                name = segment.get("id", segment.get("name"))
                if name is not None:
                    bits |= 1 << self._segments.code(str(name))
        return bits

    # -- bidding -------------------------------------------------------------------

    def bid(self, requests: list[_Request]) -> list[tuple[int, bytes]]:
        """(HTTP status, body) for each parsed request: one bid() per seat and view."""
        groups: dict[tuple, list[tuple[int, _Seat]]] = {}
        for row, request in enumerate(requests):
            for seat in request.seats:
                members = groups.get(seat.group)
                if members is None:
                    groups[seat.group] = [(row, seat)]
                else:
                    members.append((row, seat))
        answers: list[list] = [[] for _ in requests]
        failed: dict[int, tuple[int, bytes]] = {}
        for group, members in groups.items():
            try:
                bids = self._bid_group(group, members, requests)
            except Exception as exc:  # a user's strategy may raise anything
                log.exception("strategy %s failed on seat %r", self.spec.kind, group[0])
                error = (500, f"strategy failed on seat {group[0]!r}: {type(exc).__name__}:"
                              f" {exc}".encode())
                for row, _ in members:
                    failed[row] = error
                continue
            name = group[0]
            for (row, seat), price in zip(members, bids):
                if 0.0 <= price < _INF:  # NaN (no bid) fails both comparisons
                    answers[row].append((name, price, seat))
        return [failed.get(row) or self._response(request, answers[row])
                for row, request in enumerate(requests)]

    def _bid_group(self, group: tuple, members: list, requests: list[_Request]) -> list[float]:
        name, value, at, cur, tick_start, tick_end, spend, budget_left, daily, day_left, \
            flight_left = group
        key = (name, value, at)
        built = self._strategies.get(key)
        if built is None:
            strategy = from_spec(self.spec, value_per_conversion=value,
                                 auction="first" if at == 1 else "second")
            built = self._strategies[key] = (strategy, stream(self.seed, f"bidder/{name}"))
        strategy, rng = built
        m = len(members)
        rows = [requests[row] for row, _ in members]
        seats = [seat for _, seat in members]
        view = BidView(
            pctr=np.array([s.pctr for s in seats], dtype=np.float64),
            pcvr=np.array([s.pcvr for s in seats], dtype=np.float64),
            floor_cpm=np.array([r.floor_cpm for r in rows], dtype=np.float64),
            uniform=rng.random(m),
            time_s=np.array([r.time_s for r in rows], dtype=np.float64),
            publisher=np.array([r.publisher for r in rows], dtype=np.int32),
            slot=np.array([r.slot for r in rows], dtype=np.int64),
            format=np.array([r.format for r in rows], dtype=np.uint8),
            device=np.array([r.device for r in rows], dtype=np.uint8),
            geo=np.array([r.geo for r in rows], dtype=np.uint8),
            segments=np.array([s.segments for s in seats], dtype=np.uint64),
            deal=np.array([s.deal for s in seats], dtype=np.int32),
            deal_floor_cpm=np.array([s.deal_floor_cpm for s in seats], dtype=np.float64),
            paced_in=np.array([s.paced_in for s in seats], dtype=bool),
            spend=spend, budget_left=budget_left, daily_budget_left=daily,
            day_left_s=day_left, flight_left_s=flight_left, tick_start_s=tick_start,
            tick_end_s=tick_end,
            labels=ViewLabels(name, cur, self._publishers.names(), self._slots.names(), FORMATS,
                              DEVICES, self._geos.names(), self._segments.names(),
                              self._deals.names()))
        bids = np.asarray(strategy.bid(view), dtype=np.float64)
        if bids.shape != (m,):
            raise ValueError(f"bid() returned shape {bids.shape} for {m} requests")
        return bids.tolist()

    @staticmethod
    def _response(request: _Request, bids: list) -> tuple[int, bytes]:
        if not bids:
            return 204, b""
        seatbid = []
        for name, price, seat in bids:
            bid = {"id": f"{request.id}/{name}", "impid": request.imp_id, "price": price, "crid": f"{name}-1"}
            if seat.deal_id is not None and price >= seat.deal_floor_cpm:
                bid["dealid"] = seat.deal_id
            seatbid.append({"seat": name, "bid": [bid]})
        return 200, orjson.dumps({"id": request.id, "cur": request.cur, "seatbid": seatbid})

    def answer(self, bodies: list[bytes]) -> list[tuple[int, bytes]]:
        """(HTTP status, body) for each BidRequest body, bid as one micro-batch: 200 and
        a BidResponse, 204 and no body (no bid), 400 and what is wrong with the request,
        500 and the strategy's error."""
        out: list[tuple[int, bytes] | None] = [None] * len(bodies)
        parsed, rows = [], []
        for row, body in enumerate(bodies):
            try:
                request = self.parse(body)
            except BadRequest as exc:
                out[row] = (400, str(exc).encode())
                continue
            if request is None:
                out[row] = (204, b"")
            else:
                parsed.append(request)
                rows.append(row)
        for row, answer in zip(rows, self.bid(parsed)):
            out[row] = answer
        return out  # type: ignore[return-value]


# -- HTTP ------------------------------------------------------------------------------


class _Batcher:
    """Collects the requests that arrive while the loop is busy; bids them together."""

    def __init__(self, bidder: OpenRtbBidder):
        self.bidder = bidder
        self.pending: list[tuple[_Request, asyncio.Future]] = []
        self.batches = self.batched = 0  # counts, for measuring

    def submit(self, request: _Request) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((request, future))
        if len(self.pending) == 1:
            loop.call_soon(self.flush)
        return future

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        self.batches += 1
        self.batched += len(batch)
        try:
            answers = self.bidder.bid([request for request, _ in batch])
        except Exception as exc:  # a bug of ours must not leave requests hanging
            log.exception("bidding failed")
            answers = [(500, f"{type(exc).__name__}: {exc}".encode())] * len(batch)
        for (_, future), answer in zip(batch, answers):
            if not future.done():  # its client may have gone
                future.set_result(answer)


def make_app(bidder: OpenRtbBidder):
    """The aiohttp application: POST /openrtb, GET /health."""
    from aiohttp import web

    batcher = _Batcher(bidder)

    async def openrtb(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            parsed = bidder.parse(body)
        except BadRequest as exc:
            return web.Response(status=400, text=str(exc))
        if parsed is None:
            return web.Response(status=204)
        status, payload = await batcher.submit(parsed)
        if status == 200:
            return web.Response(body=payload, headers=_JSON)
        if status == 204:
            return web.Response(status=204)
        return web.Response(status=status, body=payload, content_type="text/plain")

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post(ENDPOINT, openrtb)
    app.router.add_get(HEALTH, health)
    return app


async def start(bidder: OpenRtbBidder, host: str = "127.0.0.1", port: int = 0):
    """Serve `bidder` on host:port (0: a free port): (aiohttp runner, the bound port).
    OSError when the address cannot be bound (in use, not this machine's)."""
    from aiohttp import web

    runner = web.AppRunner(make_app(bidder), access_log=None, handle_signals=False)
    await runner.setup()
    # backlog: the exchange opens its connections in a burst at the start of a run.
    site = web.TCPSite(runner, host, port, backlog=1024)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = site._server.sockets[0].getsockname()[1]  # aiohttp exposes no public accessor
    return runner, bound


def url_of(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}{ENDPOINT}"


def serve(bidder: OpenRtbBidder, host: str = "127.0.0.1", port: int = 9000,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM (main thread only), then return; on_ready(url) once
    the socket is bound. OSError when it cannot be bound."""
    import signal

    async def main() -> None:
        runner, bound = await start(bidder, host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            if on_ready is not None:
                on_ready(url_of(host, bound))
            await stop.wait()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            await runner.cleanup()

    asyncio.run(main())


def serve_in_thread(strategy: str | dict | AnyStrategySpec | OpenRtbBidder,
                    host: str = "127.0.0.1", port: int = 0, *, seed: int = 0,
                    base_dir: str | Path | None = None) -> tuple[str, Callable[[], None]]:
    """Serve a strategy from a background thread: (its URL, stop()). port 0 takes a
    free port (the URL has it). For tests and benchmarks; the thread shares this
    process's interpreter, so a benchmark of throughput runs the CLI in its own process.
    """
    bidder = strategy if isinstance(strategy, OpenRtbBidder) else OpenRtbBidder(
        strategy, seed=seed, base_dir=base_dir)
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        try:
            runner, bound = await start(bidder, host, port)
            state["loop"], state["stop"] = asyncio.get_running_loop(), asyncio.Event()
            state["url"] = url_of(host, bound)
        except OSError as exc:  # raised again in the caller's thread
            state["error"] = exc
            return
        finally:
            ready.set()
        try:
            await state["stop"].wait()
        finally:
            await runner.cleanup()

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="rtb-bidder", daemon=True)
    thread.start()
    ready.wait()
    if "url" not in state:
        thread.join()
        raise state.get("error") or RuntimeError("the bidder's thread failed to start (its"
                                                 " traceback is above)")

    def stop() -> None:
        if thread.is_alive():
            state["loop"].call_soon_threadsafe(state["stop"].set)
            thread.join()

    return state["url"], stop
