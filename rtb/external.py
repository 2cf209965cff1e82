"""External OpenRTB bidders at the bid stage (docs/openrtb.md).

Each tick, for every external DSP: one BidRequest per request on which one of its
campaigns may bid (the rows a Python strategy's view would hold), all sent at once;
the answers become that DSP's campaigns' bids. Everything wrong with an answer drops
only that bidder's bids, counted by reason (rtb.openrtb_wire.FAULTS); budgets, caps
and floors stay the exchange's, applied by the kernel as to any bid. After the
auction, win and loss notices go out if the DSP asks for them.

Timing: with latency "model" (the default) each request's latency is drawn in
simulated time from the DSP's own stream (lognormal, median and spread from the
scenario), one draw per request of the tick whether sent or not; a draw above tmax
is a timeout. The answer is still awaited (up to WAIT_LIMIT_S of wall clock), so a
deterministic bidder gives byte-identical reports. With "wall" the measured latency
decides, as in production; runs then differ with the machine's load.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from dsp.bidding import CampaignView, TickView, eligible_rows
from rtb import openrtb as O
from rtb.books import TickResult
from rtb.errors import InputError
from rtb.openrtb_client import BidderClient, unreachable
from rtb.openrtb_wire import (FAULT_INDEX, Bidder, SeatLimits, Sent, WireBook, dsp_request,
                              loss_codes, read_response, seat_ext)
from rtb.seeding import stream
from rtb.types import RequestBatch

WAIT_LIMIT_S = 10.0  # wall clock: with the latency model, an answer later than this is a timeout


def check_reachable(book: WireBook, file: str) -> None:
    """InputError naming every external bidder that does not accept a connection."""
    problems = [(f"dsps[{b.dsp}].endpoint", f"the bidder at {b.endpoint} is unreachable ({why});"
                 " start it, or run with --allow-unreachable")
                for b in book.bidders if (why := unreachable(b.endpoint))]
    if problems:
        raise InputError(file, problems)


class _Placed:
    """The bids one bidder placed this tick, kept for its notices."""

    def __init__(self):
        self.rows: list[int] = []
        self.campaigns: list[int] = []
        self.bids: list[dict] = []
        self.request_ids: list[str] = []
        self.paced_in: list[bool] = []

    def add(self, sent: Sent, c: int, bid: dict, view: CampaignView) -> None:
        self.rows.append(sent.row)
        self.campaigns.append(c)
        self.bids.append(bid)
        self.request_ids.append(sent.request_id)
        j = int(np.searchsorted(view.rows, sent.row))
        self.paced_in.append(bool(view.paced_in[j]))


class ExternalBidders:
    """The run's external DSPs: their HTTP clients, latency streams and tallies."""

    def __init__(self, market, state, allow_unreachable: bool = False, keep_answers: bool = False):
        self.book: WireBook = market.wire
        self.market, self.state, self.tally = market, state, state.bidders
        if not allow_unreachable:
            check_reachable(self.book, market.labels.scenario)
        self.clients = [BidderClient(b.endpoint, b.connections) for b in self.book.bidders]
        self.rng_latency = [stream(market.seed, f"dsp/{b.id}/latency") for b in self.book.bidders]
        self._placed: list[_Placed] = []
        self._requests_before = 0  # requests of the earlier ticks: request ids count on
        self.keep_answers = keep_answers  # for rtb.openrtb_log
        self.answers: dict[tuple[int, int], tuple] = {}  # (dsp, row) -> (status, body, fault), this tick

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def bid(self, requests: RequestBatch, tick: TickView,
            predicted: np.ndarray, base_cvr: np.ndarray, rngs, active: np.ndarray,
            bids: np.ndarray) -> None:
        """Fill the external DSPs' campaigns' columns of bids (NaN where none)."""
        n = requests.time_s.size
        table = self.market.campaigns
        self._placed = []
        self.answers = {}
        for k, bidder in enumerate(self.book.bidders):
            # One draw per request of the tick, sent or not: the stream stays aligned.
            modelled = bidder.latency_median_s * np.exp(
                bidder.latency_spread * self.rng_latency[k].standard_normal(n))
            placed = _Placed()
            self._placed.append(placed)
            campaigns = [c for c in bidder.campaigns if active[c]]
            if not campaigns or n == 0:
                continue
            views = {c: CampaignView(predicted[table.dsp[c]], table.ctr_multiplier[c], base_cvr,
                                     table.cvr_multiplier[c], requests.floor_cpm, rngs[c],
                                     eligible_rows(c, tick), tick, c) for c in campaigns}
            sent: list[Sent] = []
            bodies = self._requests(bidder, requests, tick, views, sent)
            timeout = WAIT_LIMIT_S if bidder.latency == "model" else bidder.tmax_s
            answers = self.clients[k].post_all(bodies, timeout)
            if not sent:
                continue
            self.tally.requests[k] += len(sent)
            self.tally.latency_s[k].append(np.array([a.latency_s for a in answers]))
            late = (modelled[[s.row for s in sent]] > bidder.tmax_s if bidder.latency == "model"
                    else np.zeros(len(sent), dtype=bool))
            self._read(k, sent, answers, late, bids, views, placed)
        self._requests_before += n

    def _requests(self, bidder: Bidder, requests: RequestBatch, tick: TickView,
                  views: dict[int, CampaignView], sent: list[Sent]) -> Iterator[bytes]:
        """The bodies of the bid requests, built one by one as the client asks for them
        (each one's Sent appended to `sent` first)."""
        book = self.book
        # The rows any of the bidder's campaigns may bid on, each with its seats.
        seats_of: dict[int, list[tuple[int, int]]] = {}
        for c, view in views.items():
            for j, row in enumerate(view.rows.tolist()):
                seats_of.setdefault(row, []).append((c, j))
        tmax_ms = max(1, round(bidder.tmax_s * 1000))
        for row in sorted(seats_of):
            pairs = seats_of[row]
            seats = [dict(seat_ext(views[c], j), value_per_conversion=book.campaign_value[c])
                     for c, j in pairs]
            d = int(requests.deal[row])
            request_id = f"{self.market.seed}-{self._requests_before + row}"
            message, wseat = dsp_request(book, self.market.audience, tick, request_id, row, seats,
                                         bidder.campaigns, tmax_ms)
            pub = int(requests.publisher[row])
            sent.append(Sent(row, request_id, {book.campaigns[c]: c for c, _ in pairs},
                             book.deal_ids[d] if d >= 0 else None, frozenset(wseat),
                             frozenset(book.bcat[pub]), frozenset(book.badv[pub])))
            yield O.dumps(message)

    def _read(self, k: int, sent: list[Sent], answers, late: np.ndarray, bids: np.ndarray,
              views: dict[int, CampaignView], placed: _Placed) -> None:
        table, book = self.market.campaigns, self.state.book
        campaigns = self.book.bidders[k].campaigns
        limits = SeatLimits(
            {c: math.inf if table.max_bid_cpm[c] is None else table.max_bid_cpm[c] for c in campaigns},
            {c: int(book.remaining_total[c]) for c in campaigns}, book.dsp_fee_ppm, book.data_micros)
        tally, faults = self.tally, self.tally.faults[k]
        dsp = self.book.bidders[k].dsp
        for s, answer, is_late in zip(sent, answers, late):
            if answer.error is not None or is_late:
                fault = "timeout" if is_late or answer.error == "timeout" else "unreachable"
                faults[FAULT_INDEX[fault]] += 1
                if self.keep_answers:
                    self.answers[dsp, s.row] = (answer.status or None, answer.body, fault)
                continue
            before = faults.sum()
            reply = read_response(s, answer.status, answer.body, limits, faults)
            if self.keep_answers:
                self.answers[dsp, s.row] = (answer.status, answer.body,
                                            "dropped bids" if faults.sum() > before else None)
            if reply.no_bid:
                tally.no_bids[k] += 1
                if reply.nbr is not None:
                    reasons = tally.no_bid_reasons[k]
                    reasons[reply.nbr] = reasons.get(reply.nbr, 0) + 1
            for c, price, bid in reply.bids:
                bids[s.row, c] = price
                placed.add(s, c, bid, views[c])
            tally.bids[k] += len(reply.bids)

    # ---- after the auction --------------------------------------------------------

    def notify(self, requests: RequestBatch, result: TickResult, bids: np.ndarray) -> None:
        """Win notices (nurl, burl) and loss notices (lurl) for the bids placed this tick,
        for the DSPs that asked for them; ${AUCTION_PRICE} and ${AUCTION_LOSS} filled in."""
        for k, bidder in enumerate(self.book.bidders):
            placed = self._placed[k] if k < len(self._placed) else None
            if not bidder.notices or placed is None or not placed.rows:
                continue
            urls = []
            rows = np.array(placed.rows, dtype=np.int64)
            camps = np.array(placed.campaigns, dtype=np.int64)
            codes = np.empty(rows.size, dtype=np.int64)
            paced = np.array(placed.paced_in, dtype=bool)
            for c in np.unique(camps).tolist():
                mine = np.flatnonzero(camps == c)
                codes[mine] = loss_codes(rows[mine], c, bids, requests, result, paced[mine],
                                         self.market.deals.deals)
            for j, bid in enumerate(placed.bids):
                won = codes[j] == O.LOSS_WON
                price = float(result.price_cpm[rows[j]]) if result.winner[rows[j]] != -1 else None
                names = ("nurl", "burl") if won else ("lurl",)
                for name in names:
                    url = bid.get(name)
                    if isinstance(url, str) and url:
                        urls.append(O.substitute(url, price=price, loss=int(codes[j]),
                                                 id=placed.request_ids[j], imp_id="1",
                                                 bid_id=str(bid.get("id", "")),
                                                 seat_id=self.book.campaigns[camps[j]],
                                                 currency=self.book.currency))
            if urls:
                self.tally.notices_failed[k] += self.clients[k].get_all(urls, WAIT_LIMIT_S)
