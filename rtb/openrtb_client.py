"""HTTP to external OpenRTB bidders: many requests in flight on keep-alive connections.

aiohttp (docs/openrtb.md says why) runs in one event-loop thread per run; the tick's
thread hands it a batch of bodies and waits for all the answers, so the simulation
stays a plain sequence of ticks while hundreds of requests are in flight.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from time import perf_counter
from typing import NamedTuple
from urllib.parse import urlsplit

import aiohttp

HEADERS = {"Content-Type": "application/json", "x-openrtb-version": "2.6"}


class Answer(NamedTuple):
    status: int  # HTTP status; 0 when none came
    body: bytes | None
    latency_s: float  # wall clock, from sending (a connection free) to the whole body read
    error: str | None  # "timeout" or "unreachable" when no status came


def address(endpoint: str) -> tuple[str, int]:
    parts = urlsplit(endpoint)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def unreachable(endpoint: str, timeout_s: float = 2.0) -> str | None:
    """Why nothing answers at the endpoint's address (None: a TCP connection opens)."""
    host, port = address(endpoint)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as e:
        return e.strerror or type(e).__name__


class BidderClient:
    """A keep-alive connection pool to one bidder, driven from a background event loop."""

    def __init__(self, endpoint: str, connections: int):
        self.endpoint = endpoint
        self._connections = connections
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rtb-openrtb",
                                        daemon=True)
        self._thread.start()
        self._session: aiohttp.ClientSession = self._run(self._open())

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _open(self) -> aiohttp.ClientSession:
        self._slots = asyncio.Semaphore(self._connections)
        connector = aiohttp.TCPConnector(limit=self._connections, force_close=False)
        return aiohttp.ClientSession(connector=connector, headers=HEADERS,
                                     skip_auto_headers=("User-Agent",))

    def post_all(self, bodies: list[bytes], timeout_s: float) -> list[Answer]:
        """POST every body; the answers in the same order. A request that has no answer
        within timeout_s (counted once a connection is free for it) is a timeout."""
        return self._run(self._post_all(bodies, timeout_s))

    async def _post_all(self, bodies: list[bytes], timeout_s: float) -> list[Answer]:
        return await asyncio.gather(*(self._post(body, timeout_s) for body in bodies))

    async def _post(self, body: bytes, timeout_s: float) -> Answer:
        async with self._slots:
            start = perf_counter()
            try:
                async with asyncio.timeout(timeout_s):
                    async with self._session.post(self.endpoint, data=body) as response:
                        data = await response.read()
                        return Answer(response.status, data, perf_counter() - start, None)
            except TimeoutError:
                return Answer(0, None, perf_counter() - start, "timeout")
            except (aiohttp.ClientError, OSError):
                return Answer(0, None, perf_counter() - start, "unreachable")

    def get_all(self, urls: list[str], timeout_s: float) -> int:
        """GET every URL (win and loss notices); returns how many failed."""
        return self._run(self._get_all(urls, timeout_s))

    async def _get_all(self, urls: list[str], timeout_s: float) -> int:
        answers = await asyncio.gather(*(self._get(url, timeout_s) for url in urls))
        return sum(not ok for ok in answers)

    async def _get(self, url: str, timeout_s: float) -> bool:
        async with self._slots:
            try:
                async with asyncio.timeout(timeout_s):
                    async with self._session.get(url) as response:
                        await response.read()
                        return response.status < 400
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
                return False

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._run(self._session.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()
