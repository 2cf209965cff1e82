"""The exchange's OpenRTB 2.6 messages (docs/openrtb.md): bid requests built from a
tick's rows, bids read back from responses, and each bid's loss reason code.

WireBook is the market's names and rules as OpenRTB fields, built once per run from
the scenario; the tick then only fills in per-request values. Messages are plain
dicts serialised by orjson (rtb.openrtb's models validate the same shapes in the
tests; building models per request would cost more than the HTTP call).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from rtb import openrtb as O
from rtb import types as T
from rtb.books import TickResult
from rtb.scenario import Scenario
from rtb.types import MICROS_PER_CPM, PPM, RequestBatch

DEVICE_TYPE = (2, 1)  # OpenRTB devicetype by rtb.types.DEVICES: personal computer, mobile/tablet
AT_FIRST, AT_SECOND, AT_FIXED = 1, 2, 3

# Why a bidder's bid was dropped before the auction, with its loss reason code. The
# first four drop every bid of a request (no usable response came); the others one bid.
FAULTS = {
    "timeout": O.LOSS_EXPIRED,  # no response within tmax
    "unreachable": O.LOSS_INTERNAL_ERROR,  # connection refused or broken
    "http_error": O.LOSS_INTERNAL_ERROR,  # a status other than 200 and 204
    "malformed": O.LOSS_INVALID_RESPONSE,  # not a BidResponse (JSON, types, request id)
    "unknown_imp": O.LOSS_INVALID_RESPONSE,  # impid is not the request's imp
    "unknown_seat": O.LOSS_INVALID_RESPONSE,  # seat is not one of the request's seats
    "invalid_price": O.LOSS_MISSING_PRICE,  # price missing, not a number, negative or infinite
    "over_budget": O.LOSS_OUT_OF_BUDGET,  # one impression at the price costs more than the budget left
    "invalid_deal": O.LOSS_INVALID_DEAL,  # dealid is not the request's deal, or it does not admit the seat
    "blocked_adomain": O.LOSS_ADVERTISER_EXCLUDED,  # adomain in the request's badv
    "blocked_category": O.LOSS_CATEGORY_EXCLUDED,  # cat in the request's bcat
    "extra_bid": O.LOSS_HIGHER_BID,  # a seat's second bid on the imp: its highest is taken
}
FAULT_NAMES = tuple(FAULTS)
FAULT_INDEX = {name: k for k, name in enumerate(FAULT_NAMES)}


@dataclass(frozen=True)
class Bidder:
    """An external DSP: where its requests go and how they are timed."""

    dsp: int  # index of the DSP
    id: str
    endpoint: str
    campaigns: tuple[int, ...]  # its campaigns (seats), in scenario order
    tmax_s: float
    latency: str  # "model" or "wall"
    latency_median_s: float
    latency_spread: float
    notices: bool
    connections: int


@dataclass(frozen=True)
class WireBook:
    """The run's names and rules as OpenRTB fields (index = the arrays' index)."""

    currency: str
    at: int  # the exchange's auction
    gdpr: int  # 1 when consent applies (a consent rate below 1)
    slot_tag: tuple[str, ...]
    slot_media: tuple[tuple[str, dict], ...]  # ("banner", {}) and the like, per slot
    slot_device: tuple[int, ...]  # index into rtb.types.DEVICES, per slot
    site: tuple[dict, ...]  # per publisher
    bcat: tuple[list[str], ...]  # per publisher: its and its SSP's blocked categories
    badv: tuple[list[str], ...]  # per publisher: blocked advertiser domains, lower case
    geos: tuple[str, ...]
    segments: tuple[str, ...]
    deal_ids: tuple[str, ...]
    campaigns: tuple[str, ...]  # seat ids
    campaign_dsp: tuple[int, ...]
    campaign_domain: tuple[str, ...]  # the advertiser's domain, lower case
    campaign_category: tuple[str, ...]
    campaign_value: tuple[float, ...]  # the advertiser's value per conversion
    dsps: tuple[str, ...]
    bidders: tuple[Bidder, ...]  # the external DSPs


_MEDIA = {"banner": ("banner", {}), "video": ("video", {"mimes": ["video/mp4"]}),
          "native": ("native", {"request": "{}", "ver": "1.2"})}


def build_wire(s: Scenario) -> WireBook:
    ssps = {x.id: x for x in s.ssps}
    advertisers = {a.id: a for a in s.advertisers}
    slots = [(pub, slot) for pub in s.publishers for slot in pub.slots]
    dsp_index = {d.id: k for k, d in enumerate(s.dsps)}
    bidders = tuple(
        Bidder(dsp=k, id=d.id, endpoint=d.endpoint,
               campaigns=tuple(c for c, camp in enumerate(s.campaigns) if camp.dsp == d.id),
               tmax_s=d.tmax, latency=d.latency, latency_median_s=d.latency_median,
               latency_spread=d.latency_spread, notices=d.notices, connections=d.connections)
        for k, d in enumerate(s.dsps) if d.external)
    return WireBook(
        currency=s.currency,
        at=AT_FIRST if s.exchange.auction == "first" else AT_SECOND,
        gdpr=int(s.dmp.consent_below_one()),
        slot_tag=tuple(slot.id for _, slot in slots),
        slot_media=tuple(_MEDIA[slot.format] for _, slot in slots),
        slot_device=tuple(T.DEVICES.index(slot.device) for _, slot in slots),
        site=tuple({"id": p.id, "domain": p.domain, "cat": [p.category],
                    "publisher": {"id": p.id}} if p.domain else
                   {"id": p.id, "cat": [p.category], "publisher": {"id": p.id}}
                   for p in s.publishers),
        bcat=tuple(sorted(set(p.blocked_categories) | set(ssps[p.ssp].blocked_categories))
                   for p in s.publishers),
        badv=tuple(sorted({d.lower() for d in p.blocked_domains}
                          | {d.lower() for d in ssps[p.ssp].blocked_domains})
                   for p in s.publishers),
        geos=tuple(s.dmp.geos),
        segments=tuple(seg.id for seg in s.dmp.segments),
        deal_ids=tuple(deal.id for pub in s.publishers for deal in pub.deals),
        campaigns=tuple(c.id for c in s.campaigns),
        campaign_dsp=tuple(dsp_index[c.dsp] for c in s.campaigns),
        campaign_domain=tuple(advertisers[c.advertiser].domain.lower() for c in s.campaigns),
        campaign_category=tuple(advertisers[c.advertiser].category for c in s.campaigns),
        campaign_value=tuple(advertisers[c.advertiser].value_per_conversion for c in s.campaigns),
        dsps=tuple(d.id for d in s.dsps),
        bidders=bidders,
    )


def _number(x: float) -> float | None:
    """JSON has no inf or NaN: null."""
    return x if math.isfinite(x) else None


def dsp_request(book: WireBook, audience, tick, request_id: str, row: int, seats: list[dict],
                dsp_campaigns, tmax_ms: int) -> tuple[dict, list[str]]:
    """(BidRequest, wseat) for one DSP on row `row` of the tick: what the exchange sends
    an external bidder, and what --openrtb-log shows for any DSP. dsp_campaigns: all of
    the DSP's campaigns (the deal's wseat names those it admits)."""
    r, deals = tick.requests, tick.deals
    d = int(r.deal[row])
    wseat = [book.campaigns[c] for c in dsp_campaigns if deals.allowed[d, c]] if d >= 0 else []
    user = int(r.user[row])
    message = bid_request(book, request_id, row, r, seats, wseat,
                          int(audience.visible_segments[user]), bool(audience.consent[user]),
                          deals, tmax_ms, (tick.tick_start_s, tick.tick_end_s),
                          has_id=has_id_row(audience, user), anonymous=seen_as(tick, row))
    return message, wseat


def seen_as(tick, row: int) -> tuple[str, str] | None:
    """(publisher id, slot id) buyers see for a request sold anonymously; None if not."""
    pub = int(tick.seen_publisher[row])
    if pub == int(tick.requests.publisher[row]):
        return None
    labels = tick.labels[0]
    return labels.publishers[pub], labels.slots[int(tick.seen_slot[row])].split(",", 1)[1]


def seat_ext(view, k: int) -> dict:
    """ext.rtbsim.seats[] for row k of a campaign's view (dsp.bidding.CampaignView)."""
    return {"seat": view.labels.campaign, "pctr": float(view.pctr[k]), "pcvr": float(view.pcvr[k]),
            "budget_left": view.budget_left, "daily_budget_left": _number(view.daily_budget_left),
            "spend": view.spend, "flight_left_s": view.flight_left_s, "day_left_s": view.day_left_s,
            "paced_in": bool(view.paced_in[k])}


def has_id_row(audience, user: int) -> bool:
    """Whether id row `user` is an id (not a no-id row: a request without consent under
    the identity model, dmp/identity.py, carries no id on the wire)."""
    return user < audience.identity.no_id_row


def bid_request(book: WireBook, request_id: str, i: int, requests: RequestBatch, seats: list[dict],
                wseat: list[str], segments: int, consent: bool, deals, tmax_ms: int,
                tick: tuple[float, float], has_id: bool = True,
                anonymous: tuple[str, str] | None = None) -> dict:
    """The BidRequest for row i of the tick: seats are its ext.rtbsim.seats (each
    campaign of the DSP that may bid on it), wseat the seats its deal admits.

    user.id is the id the request carries (requests.user: an id row, dmp/identity.py),
    never the person or device-user behind it. has_id False (a request without consent
    under the identity model: a no-id row, has_id_row()) sends a user with no id and no
    segments, only ext.consent 0.
    anonymous: (publisher id, slot id) as buyers see a request sold anonymously (its
    anonymous ids): no domain, the category only."""
    slot, pub = int(requests.slot[i]), int(requests.publisher[i])
    media, media_value = book.slot_media[slot]
    floor = float(requests.floor_cpm[i])
    site, tag = book.site[pub], book.slot_tag[slot]
    if anonymous is not None:
        site = {"id": anonymous[0], "cat": site["cat"], "publisher": {"id": anonymous[0]}}
        tag = anonymous[1]
    imp = {"id": "1", "tagid": tag, media: media_value,
           "bidfloor": floor, "bidfloorcur": book.currency, "secure": 1}
    d = int(requests.deal[i])
    if d >= 0:
        fixed = bool(deals.fixed[d])
        imp["pmp"] = {"private_auction": int(deals.private[d]), "deals": [{
            "id": book.deal_ids[d], "bidfloor": float(deals.floor_cpm[d]),
            "bidfloorcur": book.currency, "at": AT_FIXED if fixed else book.at, "wseat": wseat}]}
    if not has_id:
        user = {"ext": {"consent": 0}}
    else:
        user = {"id": f"u{int(requests.user[i])}", "ext": {"consent": int(consent)}}
    if segments and has_id:
        user["data"] = [{"id": "rtbsim-dmp", "name": "rtbsim-dmp", "segment": [
            {"id": seg} for s, seg in enumerate(book.segments) if segments >> s & 1]}]
    request = {
        "id": request_id, "imp": [imp], "site": site,
        "device": {"devicetype": DEVICE_TYPE[book.slot_device[slot]],
                   "geo": {"country": book.geos[int(requests.geo[i])]}},
        "user": user, "at": book.at, "tmax": tmax_ms, "cur": [book.currency],
        "source": {"tid": request_id}, "regs": {"gdpr": book.gdpr},
        "ext": {"rtbsim": {"time_s": float(requests.time_s[i]), "tick_start_s": tick[0],
                           "tick_end_s": tick[1], "seats": seats}},
    }
    if book.bcat[pub]:
        request["bcat"] = book.bcat[pub]
    if book.badv[pub]:
        request["badv"] = book.badv[pub]
    return request


@dataclass
class Sent:
    """What the exchange remembers of one request it sent, to read the answer."""

    row: int  # the request's row in the tick
    request_id: str
    seats: dict[str, int]  # seat id -> campaign
    deal: str | None  # the imp's deal id, if any
    wseat: frozenset[str]
    bcat: frozenset[str]
    badv: frozenset[str]


class Reply(NamedTuple):
    """One answer read: the valid bids as (campaign, price CPM, bid object), and
    whether it was a no-bid (with its nbr, if it gave one)."""

    bids: list[tuple[int, float, dict]]
    no_bid: bool = False
    nbr: int | None = None


class SeatLimits(NamedTuple):
    """What the exchange holds a campaign's bid to, before the auction."""

    max_bid_cpm: dict[int, float]  # the campaign's max bid (inf: none): bids are clipped to it
    max_cost_micros: dict[int, int]  # the budget left: one impression may not cost more
    fee_ppm: np.ndarray  # i8[nc]: the DSP's fee
    data_micros: np.ndarray  # i8[nc]: data cost per impression


def read_response(sent: Sent, status: int, body: bytes | None, limits: SeatLimits,
                  faults: np.ndarray) -> Reply:
    """Read one answer; every bid dropped is counted in faults[FAULT_INDEX[reason]].

    status 204, an empty body or a response without bids is no bid. A bid is dropped
    (the others of the response kept) when its impid, seat, price, dealid, adomain or
    cat is wrong; a whole answer when it is not this request's BidResponse. Prices are
    clipped to the campaign's max bid (and MAX_BID_CPM) before the budget check, as the
    built-in strategies' bids are.
    """
    if status == 204 or (status == 200 and not body):
        return Reply([], True)
    if status != 200:
        faults[FAULT_INDEX["http_error"]] += 1
        return Reply([])
    try:
        response = O.loads(body)
        if not isinstance(response, dict) or response.get("id") != sent.request_id:
            raise ValueError("not this request's BidResponse")
        seatbids = response.get("seatbid") or []
        if not isinstance(seatbids, list) or not all(isinstance(sb, dict) for sb in seatbids):
            raise ValueError("seatbid is not a list of objects")
        for sb in seatbids:
            bids = sb.get("bid")
            if not isinstance(bids, list) or not all(isinstance(b, dict) for b in bids):
                raise ValueError("bid is not a list of objects")
    except ValueError:
        faults[FAULT_INDEX["malformed"]] += 1
        return Reply([])
    if not any(sb["bid"] for sb in seatbids):
        nbr = response.get("nbr")
        return Reply([], True, nbr if isinstance(nbr, int) and not isinstance(nbr, bool) else None)
    accepted: list[tuple[int, float, dict]] = []
    for sb in seatbids:
        seat = sb.get("seat")
        c = sent.seats.get(seat) if isinstance(seat, str) else None
        for bid in sb["bid"]:
            reason = _bid_problem(sent, seat, c, bid, limits)
            if reason is not None:
                faults[FAULT_INDEX[reason]] += 1
            else:
                accepted.append((c, _clipped(bid["price"], limits.max_bid_cpm[c]), bid))
    # One bid per seat on the imp: its highest (the first of equal ones).
    best: dict[int, tuple[int, float, dict]] = {}
    for item in accepted:
        if item[0] not in best or item[1] > best[item[0]][1]:
            best[item[0]] = item
    faults[FAULT_INDEX["extra_bid"]] += len(accepted) - len(best)
    return Reply(list(best.values()))


def _clipped(price: float, max_bid_cpm: float) -> float:
    return min(float(price), max_bid_cpm, T.MAX_BID_CPM)


def _bid_problem(sent: Sent, seat, c: int | None, bid: dict, limits: SeatLimits) -> str | None:
    if bid.get("impid") != "1":
        return "unknown_imp"
    if c is None:
        return "unknown_seat"
    price = bid.get("price")
    if (isinstance(price, bool) or not isinstance(price, (int, float)) or not math.isfinite(price)
            or price < 0):
        return "invalid_price"
    media = int(_clipped(price, limits.max_bid_cpm[c]) * MICROS_PER_CPM + 0.5)
    if (media + media * int(limits.fee_ppm[c]) // PPM + int(limits.data_micros[c])
            > limits.max_cost_micros[c]):
        return "over_budget"
    deal = bid.get("dealid")
    if deal is not None and (deal != sent.deal or seat not in sent.wseat):
        return "invalid_deal"
    adomain = bid.get("adomain") or []
    if not isinstance(adomain, list) or any(str(d).lower() in sent.badv for d in adomain):
        return "blocked_adomain"
    cat = bid.get("cat") or []
    if not isinstance(cat, list) or any(x in sent.bcat for x in cat):
        return "blocked_category"
    return None


@dataclass
class BidderTally:
    """Per external DSP, over the run (index = position in WireBook.bidders)."""

    n: int
    requests: np.ndarray = None  # i8[n]: bid requests sent
    no_bids: np.ndarray = None  # i8[n]: answered 204, empty, or without seatbid
    bids: np.ndarray = None  # i8[n]: bids taken into the auction
    faults: np.ndarray = None  # i8[n, len(FAULT_NAMES)]: bids or requests dropped, by reason
    no_bid_reasons: list[dict[int, int]] = None  # nbr -> count
    notices_failed: np.ndarray = None  # i8[n]
    latency_s: list[list[np.ndarray]] = field(default_factory=list)  # wall clock, per tick (not reported)

    def __post_init__(self) -> None:
        for name in ("requests", "no_bids", "bids", "notices_failed"):
            setattr(self, name, np.zeros(self.n, dtype=np.int64))
        self.faults = np.zeros((self.n, len(FAULT_NAMES)), dtype=np.int64)
        self.no_bid_reasons = [{} for _ in range(self.n)]
        self.latency_s = [[] for _ in range(self.n)]

    def to_report(self, book: WireBook) -> list[dict]:
        return [{
            "dsp": b.id, "endpoint": b.endpoint, "latency": b.latency,
            "requests": int(self.requests[k]), "no_bids": int(self.no_bids[k]),
            "no_bid_reasons": {str(r): n for r, n in sorted(self.no_bid_reasons[k].items())},
            "bids": int(self.bids[k]),
            "faults": {name: int(self.faults[k, j]) for j, name in enumerate(FAULT_NAMES)},
            "notices_failed": int(self.notices_failed[k]),
        } for k, b in enumerate(book.bidders)]


# ---- what became of each bid ------------------------------------------------------

def loss_codes(rows: np.ndarray, c: int, bids: np.ndarray, requests: RequestBatch,
               result: TickResult, paced_in: np.ndarray, deals) -> np.ndarray:
    """i8[len(rows)]: the OpenRTB loss reason code of campaign c's bid on each row
    (0 = won), from the tick's result.

    The kernel counts outcomes per campaign; per bid they are read back here: pacing
    (500), a private deal's floor (101), the floor (100), a deal that won (103), a
    higher bid, the campaigns' or the market's (102). A bid that ranked above the
    winner lost because its campaign could not pay it or was capped (501: the exchange
    cannot tell which after the fact).
    """
    b = bids[rows, c]
    winner = result.winner[rows]
    deal = requests.deal[rows]
    has_deal = deal >= 0
    dd = np.where(has_deal, deal, 0)
    private = has_deal & deals.private[dd]
    admitted = has_deal & deals.allowed[dd, c]
    deal_bid = admitted & (b >= deals.floor_cpm[dd])
    code = np.full(rows.size, O.LOSS_HIGHER_BID, dtype=np.int64)
    # The winner's bid, to tell a higher bid from a bid refused above it.
    other = np.where(winner >= 0, bids[rows, np.maximum(winner, 0)], np.nan)
    other = np.where(winner == T.MARKET, requests.market_cpm[rows], other)
    # Ties: the lowest campaign index wins; campaigns beat the market.
    beaten = (other > b) | ((winner >= 0) & (other == b) & (winner < c))
    refused = ~beaten & ~result.deal_won[rows]
    code[refused] = O.LOSS_OUT_OF_BUDGET
    code[result.deal_won[rows] & ~(deal_bid & (winner == c))] = O.LOSS_DEAL_BID
    code[~private & ~deal_bid & (b < requests.floor_cpm[rows])] = O.LOSS_BELOW_FLOOR
    code[private & ~deal_bid] = O.LOSS_BELOW_DEAL_FLOOR
    code[~paced_in] = O.LOSS_PACED
    code[winner == c] = O.LOSS_WON
    return code
