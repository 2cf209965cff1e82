"""The exchange's messages as JSON lines (`rtb run --openrtb-log FILE.jsonl`).

For a sample of the requests (each one kept with probability `sample`, drawn from its
own stream, one draw per request: the run's other draws do not move), one line:

    {"id", "time_s", "bidders": [{"dsp", "external", "request", "status", "response",
     "fault"}], "outcome": {"winner", "price", "deal", "bids": [{"seat", "dsp",
     "price", "loss"}]}}

Every DSP with a campaign that may bid on the request gets its BidRequest (as
rtb.openrtb_wire builds it for an external bidder); built-in campaigns answer as if
they were bidders: their bids (NaN: none) make a BidResponse, no bid is status 204.
An external bidder's line shows what it really answered, or the fault. `loss` is the
bid's OpenRTB loss reason code (0 = won). Written to a temporary file and renamed
into place when the run ends (rtb.atomic), so an interrupted run leaves no partial log.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dsp.bidding import CampaignView, TickView, eligible_rows
from rtb import openrtb as O
from rtb.atomic import AtomicFile
from rtb.books import TickResult
from rtb.openrtb_wire import dsp_request, loss_codes, seat_ext
from rtb.seeding import stream
from rtb.types import MARKET, RequestBatch


class OpenRtbLog:
    def __init__(self, path: str | Path, market, sample: float):
        if not 0.0 < sample <= 1.0:
            raise ValueError(f"openrtb_sample must be in (0, 1], got {sample}")
        self.market, self.sample = market, sample
        self.rng = stream(market.seed, "rtb/openrtb-log")
        self._file = AtomicFile(path)
        self._requests_before = 0
        self._sampled = np.empty(0, dtype=np.int64)

    def prepare(self, requests: RequestBatch, tick: TickView, predicted: np.ndarray,
                base_cvr: np.ndarray, rngs, active: np.ndarray) -> None:
        """Before the auction: draw the tick's sample and read the views of its requests
        (the campaigns' money as the bidders were told it)."""
        n = requests.time_s.size
        self._sampled = np.flatnonzero(self.rng.random(n) < self.sample)
        self._before, self._requests_before = self._requests_before, self._requests_before + n
        self._tick = tick
        self._views = {}
        if self._sampled.size == 0:
            return
        table = self.market.campaigns
        for c in np.flatnonzero(active).tolist():
            rows = eligible_rows(c, tick)
            rows = rows[np.isin(rows, self._sampled)]
            if rows.size:
                self._views[c] = CampaignView(predicted[table.dsp[c]], table.ctr_multiplier[c],
                                              base_cvr, table.cvr_multiplier[c], requests.floor_cpm,
                                              rngs[c], rows, tick, c)
        self._seats = {c: [seat_ext(v, j) for j in range(v.rows.size)] for c, v in self._views.items()}

    def write(self, requests: RequestBatch, result: TickResult, bids: np.ndarray,
              answers: dict) -> None:
        """After the auction: log the sampled requests. answers: {(dsp, row): (status,
        body, fault)} of the external bidders, as rtb.external kept them."""
        if self._sampled.size == 0:
            return
        m, book = self.market, self.market.wire
        table, deals = m.campaigns, m.deals.deals
        views, before, sampled = self._views, self._before, self._sampled
        codes = {c: dict(zip(v.rows.tolist(), loss_codes(v.rows, c, bids, requests, result,
                                                         v.paced_in, deals).tolist()))
                 for c, v in views.items()}
        audience = m.audience
        external = {b.dsp for b in book.bidders}
        tmax_ms = {b.dsp: max(1, round(b.tmax_s * 1000)) for b in book.bidders}
        lines = []
        for row in sampled.tolist():
            request_id = f"{m.seed}-{before + row}"
            entries, outcome_bids = [], []
            for d, dsp_id in enumerate(book.dsps):
                mine = [c for c in views if book.campaign_dsp[c] == d and row in codes[c]]
                if not mine:
                    continue
                seats = [dict(self._seats[c][int(np.searchsorted(views[c].rows, row))],
                              value_per_conversion=book.campaign_value[c]) for c in mine]
                message, _ = dsp_request(book, audience, self._tick, request_id, row, seats,
                                         np.flatnonzero(table.dsp == d).tolist(),
                                         tmax_ms.get(d, 100))
                entry = {"dsp": dsp_id, "external": d in external, "request": message}
                if d in external:
                    status, body, fault = answers.get((d, row), (None, None, None))
                    entry.update(status=status, response=_json_or_text(body), fault=fault)
                else:
                    seatbids = [{"seat": book.campaigns[c], "bid": [{
                        "id": "1", "impid": "1", "price": float(bids[row, c]),
                        "crid": f"{book.campaigns[c]}-1"}]}
                        for c in mine if bids[row, c] >= 0.0]
                    entry.update(status=200 if seatbids else 204, fault=None,
                                 response={"id": request_id, "cur": book.currency,
                                           "seatbid": seatbids} if seatbids else None)
                entries.append(entry)
                outcome_bids += [{"seat": book.campaigns[c], "dsp": dsp_id,
                                  "price": float(bids[row, c]), "loss": codes[c][row]}
                                 for c in mine if bids[row, c] >= 0.0]
            winner = int(result.winner[row])
            lines.append(O.dumps({
                "id": request_id, "time_s": float(requests.time_s[row]), "bidders": entries,
                "outcome": {
                    "winner": ("market" if winner == MARKET else None if winner < 0
                               else book.campaigns[winner]),
                    "price": float(result.price_cpm[row]) if winner != -1 else None,
                    "deal": book.deal_ids[requests.deal[row]] if result.deal_won[row] else None,
                    "bids": outcome_bids}}))
        self._file.file.write(b"\n".join(lines) + b"\n")

    def close(self) -> None:
        self._file.commit()

    def abort(self) -> None:
        self._file.abort()


def _json_or_text(body: bytes | None):
    if not body:
        return None
    try:
        return O.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")
