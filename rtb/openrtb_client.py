"""HTTP to external OpenRTB bidders: many requests in flight on keep-alive connections.

libcurl's multi interface (through pycurl) drives up to `connections` transfers at
once from the tick's own thread, in C and with the GIL released while it waits. It
was chosen over aiohttp for the exchange's side after measuring both against the
same local bidder (benchmarks/bench_http_clients.py): aiohttp's client spent about
270 us of CPU per request, pycurl about 100 us, and the exchange's throughput is bound by that cost (docs/openrtb.md).
"""

from __future__ import annotations

import io
import socket
from time import perf_counter
from typing import Iterable, NamedTuple
from urllib.parse import urlsplit

import pycurl

HEADERS = ["Content-Type: application/json", "x-openrtb-version: 2.6",
           "Expect:"]  # no "100-continue" round trip before a large body
TIMEOUT, COULDNT_CONNECT = 28, 7  # libcurl's error codes


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
    """A pool of `connections` keep-alive transfers to one bidder."""

    def __init__(self, endpoint: str, connections: int):
        self.endpoint = endpoint
        self._multi = pycurl.CurlMulti()
        self._handles = []
        for _ in range(connections):
            handle = pycurl.Curl()
            handle.setopt(pycurl.NOSIGNAL, 1)  # timeouts without SIGALRM (threads)
            handle.setopt(pycurl.TCP_NODELAY, 1)
            handle.setopt(pycurl.HTTPHEADER, HEADERS)
            self._handles.append(handle)

    def post_all(self, bodies: Iterable[bytes], timeout_s: float) -> list[Answer]:
        """POST every body to the endpoint; the answers in the same order. A request
        without an answer within timeout_s (counted from its sending) is a timeout.

        bodies is read as connections free up, so a generator that builds them
        works while the first ones are on the wire.
        """
        def prepare(handle, body):
            handle.setopt(pycurl.URL, self.endpoint)
            handle.setopt(pycurl.POSTFIELDS, body)
        return self._transfer(bodies, prepare, timeout_s)

    def get_all(self, urls: Iterable[str], timeout_s: float) -> int:
        """GET every URL (win and loss notices); returns how many failed."""
        def prepare(handle, url):
            handle.setopt(pycurl.HTTPGET, 1)
            handle.setopt(pycurl.URL, url)
        answers = self._transfer(urls, prepare, timeout_s)
        return sum(a.error is not None or not 200 <= a.status < 400 for a in answers)

    def _transfer(self, items: Iterable, prepare, timeout_s: float) -> list[Answer]:
        multi, answers = self._multi, []
        pending = iter(items)
        free = list(self._handles)
        busy: dict[int, tuple[int, io.BytesIO, float]] = {}  # id(handle) -> (answer, body, start)
        timeout_ms = max(1, round(timeout_s * 1000))
        more = True
        while more or busy:
            while free and more:
                item = next(pending, None)
                if item is None:
                    more = False
                    break
                handle = free.pop()  # options set before stay: keep-alive, headers
                prepare(handle, item)
                buffer = io.BytesIO()
                handle.setopt(pycurl.WRITEDATA, buffer)
                handle.setopt(pycurl.TIMEOUT_MS, timeout_ms)
                busy[id(handle)] = (len(answers), buffer, perf_counter())
                answers.append(None)
                multi.add_handle(handle)
                # Start this one now: the next body is built while it is on the wire.
                while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                    pass
            while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                pass
            while True:
                queued, ok, failed = multi.info_read()
                for handle in ok:
                    k, buffer, start = busy.pop(id(handle))
                    answers[k] = Answer(handle.getinfo(pycurl.RESPONSE_CODE), buffer.getvalue(),
                                        perf_counter() - start, None)
                    multi.remove_handle(handle)
                    free.append(handle)
                for handle, code, _message in failed:
                    k, _, start = busy.pop(id(handle))
                    error = "timeout" if code == TIMEOUT else "unreachable"
                    answers[k] = Answer(0, None, perf_counter() - start, error)
                    multi.remove_handle(handle)
                    free.append(handle)
                if queued == 0:
                    break
            if busy and (not free or not more):
                multi.select(0.01)
        return answers

    def close(self) -> None:
        for handle in self._handles:
            handle.close()
        self._multi.close()
