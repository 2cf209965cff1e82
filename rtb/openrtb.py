"""OpenRTB 2.6 on the wire: pydantic models of the bid request and response, JSON in and out.

The specification is IAB Tech Lab's OpenRTB 2.6 (release 2.6-202606, section 3.2 for
the request objects, 4.2 for the response, 4.4 for the macros); tests read a copy in
../shared/openrtb/2.6.md. Field names are the spec's, so a model dumps to the JSON it
was read from. Objects the simulator does not read (Metric, Qty, DOOH, UserAgent, EID,
SupplyChain, ...) are not modelled: they stay plain JSON values, kept like any other
field a model does not know.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field


class OpenRtb(BaseModel):
    """Every OpenRTB object: unknown fields are kept, not refused, and every one has `ext`.

    OpenRTB receivers must ignore what they do not understand (2.6 section 2.6), and
    `ext` is free-form, so extra="allow": an unknown field is kept and dumped again,
    never an error. Frozen like the project's specs: a parsed message never changes
    (build a changed one with model_copy(update=...)).
    """

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    ext: dict[str, Any] | None = None


# Bid request (section 3.2). Defaults are the spec's; every other optional field is
# None, which the spec reads as "unknown".


class Format(OpenRtb):
    """3.2.10: one allowed banner size, or Flex Ad ratios."""

    w: int | None = None
    h: int | None = None
    wratio: int | None = None
    hratio: int | None = None
    wmin: int | None = None


class Banner(OpenRtb):
    """3.2.6: a banner impression, or a video's companion ad."""

    format: list[Format] | None = None
    w: int | None = None
    h: int | None = None
    btype: list[int] | None = None
    battr: list[int] | None = None
    pos: int | None = None
    mimes: list[str] | None = None
    topframe: int | None = None
    expdir: list[int] | None = None
    api: list[int] | None = None
    id: str | None = None
    vcm: int | None = None


class Video(OpenRtb):
    """3.2.7: a video impression."""

    mimes: list[str]
    minduration: int = 0
    maxduration: int | None = None
    startdelay: int | None = None
    maxseq: int | None = None
    poddur: int | None = None
    protocols: list[int] | None = None
    w: int | None = None
    h: int | None = None
    podid: str | None = None
    podseq: int = 0
    rqddurs: list[int] | None = None
    plcmt: int | None = None
    linearity: int | None = None
    skip: int | None = None
    skipmin: int = 0
    skipafter: int = 0
    slotinpod: int = 0
    mincpmpersec: float | None = None
    battr: list[int] | None = None
    maxextended: int | None = None
    minbitrate: int | None = None
    maxbitrate: int | None = None
    boxingallowed: int = 1
    playbackmethod: list[int] | None = None
    playbackend: int | None = None
    delivery: list[int] | None = None
    pos: int | None = None
    companionad: list[Banner] | None = None
    api: list[int] | None = None
    companiontype: list[int] | None = None


class Audio(OpenRtb):
    """3.2.8, the fields a bidder needs first; the rest are kept as unknown fields."""

    mimes: list[str]
    minduration: int = 0
    maxduration: int | None = None
    protocols: list[int] | None = None
    startdelay: int | None = None
    battr: list[int] | None = None
    api: list[int] | None = None
    feed: int | None = None


class Native(OpenRtb):
    """3.2.9: a native impression; `request` is the Native Ads API payload, a JSON string."""

    request: str
    ver: str | None = None
    api: list[int] | None = None
    battr: list[int] | None = None


class Deal(OpenRtb):
    """3.2.12: a private-marketplace deal. `at` 3: `bidfloor` is the agreed price."""

    id: str
    bidfloor: float = 0.0
    bidfloorcur: str = "USD"  # never inherited from Imp.bidfloorcur (the spec says so)
    at: int | None = None
    wseat: list[str] | None = None
    wadomain: list[str] | None = None
    guar: int = 0
    mincpmpersec: float | None = None


class Pmp(OpenRtb):
    """3.2.11: the deals on an impression; private_auction 1 = only they may bid."""

    private_auction: int = 0
    deals: list[Deal] | None = None


class Imp(OpenRtb):
    """3.2.4: one impression on offer."""

    id: str
    banner: Banner | None = None
    video: Video | None = None
    audio: Audio | None = None
    native: Native | None = None
    pmp: Pmp | None = None
    displaymanager: str | None = None
    displaymanagerver: str | None = None
    instl: int = 0
    tagid: str | None = None
    bidfloor: float = 0.0  # CPM
    bidfloorcur: str = "USD"
    clickbrowser: int | None = None
    secure: int | None = None  # no default: omitted means unknown (http can be assumed)
    iframebuster: list[str] | None = None
    rwdd: int = 0
    ssai: int = 0
    exp: int | None = None
    dt: float | None = None


class Publisher(OpenRtb):
    """3.2.15: the seller paid for the inventory."""

    id: str | None = None
    name: str | None = None
    cattax: int = 1
    cat: list[str] | None = None
    domain: str | None = None


class Segment(OpenRtb):
    """3.2.22: one key-value of a data provider."""

    id: str | None = None
    name: str | None = None
    value: str | None = None


class Data(OpenRtb):
    """3.2.21: one data provider's segments about the user or the content."""

    id: str | None = None
    name: str | None = None
    cids: list[str] | None = None
    segment: list[Segment] | None = None


class Content(OpenRtb):
    """3.2.16, the common fields; the rest are kept as unknown fields."""

    id: str | None = None
    episode: int | None = None
    title: str | None = None
    series: str | None = None
    season: str | None = None
    genre: str | None = None
    url: str | None = None
    cattax: int = 1
    cat: list[str] | None = None
    context: int | None = None
    keywords: str | None = None
    livestream: int | None = None
    len: int | None = None  # seconds
    language: str | None = None
    data: list[Data] | None = None


class Site(OpenRtb):
    """3.2.13: the website the impressions are on."""

    id: str | None = None
    name: str | None = None
    domain: str | None = None
    cattax: int = 1
    cat: list[str] | None = None
    sectioncat: list[str] | None = None
    pagecat: list[str] | None = None
    page: str | None = None
    ref: str | None = None
    search: str | None = None
    mobile: int | None = None
    privacypolicy: int | None = None
    publisher: Publisher | None = None
    content: Content | None = None
    keywords: str | None = None
    kwarray: list[str] | None = None
    inventorypartnerdomain: str | None = None


class App(OpenRtb):
    """3.2.14: the app the impressions are in."""

    id: str | None = None
    name: str | None = None
    bundle: str | None = None
    domain: str | None = None
    storeurl: str | None = None
    cattax: int = 1
    cat: list[str] | None = None
    sectioncat: list[str] | None = None
    pagecat: list[str] | None = None
    ver: str | None = None
    privacypolicy: int | None = None
    paid: int | None = None
    publisher: Publisher | None = None
    content: Content | None = None
    keywords: str | None = None
    kwarray: list[str] | None = None
    inventorypartnerdomain: str | None = None


class Geo(OpenRtb):
    """3.2.19: a location, the device's (current) or the user's (home)."""

    lat: float | None = None
    lon: float | None = None
    type: int | None = None
    accuracy: int | None = None
    lastfix: int | None = None
    ipservice: int | None = None
    country: str | None = None  # ISO-3166-1 alpha-3
    region: str | None = None
    regionfips104: str | None = None
    metro: str | None = None
    city: str | None = None
    zip: str | None = None
    utcoffset: int | None = None


class Device(OpenRtb):
    """3.2.18: the device the ad is shown on."""

    geo: Geo | None = None
    dnt: int | None = None
    lmt: int | None = None
    ua: str | None = None
    ip: str | None = None
    ipv6: str | None = None
    devicetype: int | None = None
    make: str | None = None
    model: str | None = None
    os: str | None = None
    osv: str | None = None
    hwv: str | None = None
    h: int | None = None
    w: int | None = None
    ppi: int | None = None
    pxratio: float | None = None
    js: int | None = None
    geofetch: int | None = None
    flashver: str | None = None
    language: str | None = None
    langb: str | None = None
    carrier: str | None = None
    mccmnc: str | None = None
    connectiontype: int | None = None
    ifa: str | None = None


class User(OpenRtb):
    """3.2.20: the human behind the device, the audience."""

    id: str | None = None
    buyeruid: str | None = None
    keywords: str | None = None
    kwarray: list[str] | None = None
    customdata: str | None = None
    geo: Geo | None = None
    data: list[Data] | None = None
    consent: str | None = None


class Regs(OpenRtb):
    """3.2.3: the regulations in force (COPPA, GDPR, US privacy, GPP)."""

    coppa: int | None = None
    gdpr: int | None = None  # omitted = unknown
    us_privacy: str | None = None
    gpp: str | None = None
    gpp_sid: list[int] | None = None


class Source(OpenRtb):
    """3.2.2: who upstream decides the sale; `schain` stays a plain SupplyChain object."""

    fd: int | None = None
    tid: str | None = None
    pchain: str | None = None
    schain: dict[str, Any] | None = None


class BidRequest(OpenRtb):
    """3.2.1: the top-level bid request."""

    id: str
    imp: list[Imp] = Field(min_length=1)
    site: Site | None = None
    app: App | None = None
    device: Device | None = None
    user: User | None = None
    test: int = 0
    at: int = 2  # 1 = first price, 2 = second price plus
    tmax: int | None = None  # milliseconds
    wseat: list[str] | None = None
    bseat: list[str] | None = None
    allimps: int = 0
    cur: list[str] | None = None
    wlang: list[str] | None = None
    wlangb: list[str] | None = None
    acat: list[str] | None = None
    bcat: list[str] | None = None
    cattax: int = 1
    badv: list[str] | None = None
    bapp: list[str] | None = None
    source: Source | None = None
    regs: Regs | None = None


# Bid response (section 4.2).


class Bid(OpenRtb):
    """4.2.3: an offer to buy one impression."""

    id: str
    impid: str
    price: float  # CPM, in BidResponse.cur
    nurl: str | None = None
    burl: str | None = None
    lurl: str | None = None
    adm: str | None = None
    adid: str | None = None
    adomain: list[str] | None = None
    bundle: str | None = None
    iurl: str | None = None
    cid: str | None = None
    crid: str | None = None
    tactic: str | None = None
    cattax: int = 1
    cat: list[str] | None = None
    attr: list[int] | None = None
    apis: list[int] | None = None
    protocol: int | None = None
    qagmediarating: int | None = None
    language: str | None = None
    langb: str | None = None
    dealid: str | None = None
    w: int | None = None
    h: int | None = None
    wratio: int | None = None
    hratio: int | None = None
    exp: int | None = None
    dur: int | None = None
    mtype: int | None = None  # 1 banner, 2 video, 3 audio, 4 native
    slotinpod: int = 0


class SeatBid(OpenRtb):
    """4.2.2: one seat's bids.

    The spec asks for 1+ bids; an empty list is accepted, since the spec reads a
    response without actual bids as a no-bid (section 4), not as an error.
    """

    bid: list[Bid]
    seat: str | None = None
    group: int = 0


class BidResponse(OpenRtb):
    """4.2.1: the top-level bid response; no seatbid (or an empty one) is a no-bid."""

    id: str
    seatbid: list[SeatBid] | None = None
    bidid: str | None = None
    cur: str = "USD"
    customdata: str | None = None
    nbr: int | None = None  # no-bid reason, NO_BID_REASONS


# JSON. parse_* use pydantic's own parser, which builds the models straight from the
# bytes: on spec example 6.2.1 (604 bytes as printed), best of 5 x 20,000 calls,
# model_validate_json took 8.2 us a request against 9.2 us for orjson.loads +
# model_validate. dump() is orjson of model_dump (7.6 us on the same request).


def parse_request(data: bytes | str) -> BidRequest:
    """A BidRequest from JSON; raises pydantic.ValidationError naming the field."""
    return BidRequest.model_validate_json(data)


def parse_response(data: bytes | str) -> BidResponse:
    """A BidResponse from JSON; raises pydantic.ValidationError naming the field."""
    return BidResponse.model_validate_json(data)


def loads(data: bytes | str) -> Any:
    """Plain JSON (the exchange reads answers as dicts: faster than models, and a bad
    bid then drops alone); ValueError (orjson.JSONDecodeError) when it is not JSON."""
    return orjson.loads(data)


def dumps(message: dict) -> bytes:
    """A message built as plain dicts, as JSON bytes."""
    return orjson.dumps(message)


def dump(model: BaseModel) -> bytes:
    """JSON of an OpenRTB object: the fields it was given (read or set), none of None.

    Defaults left unset are not written: the receiver applies the spec's same default,
    and a parsed message dumps to the JSON it came from, unknown fields included.
    """
    return orjson.dumps(model.model_dump(exclude_none=True, exclude_unset=True))


# Loss reason codes (${AUCTION_LOSS}): OpenRTB 2.6 uses OpenRTB 3.0's list. Not the
# simulator's outcome indices of rtb/types.py, some of which share these names.
LOSS_WON = 0  # the bid won
LOSS_INTERNAL_ERROR = 1  # the exchange failed
LOSS_EXPIRED = 2  # the impression opportunity expired (the bid came after tmax)
LOSS_INVALID_RESPONSE = 3  # the bid response was invalid
LOSS_INVALID_DEAL = 4  # the bid named a deal the impression does not carry
LOSS_INVALID_AUCTION = 5  # the response's id is not the request's
LOSS_INVALID_ADOMAIN = 6  # the bid's advertiser domain was missing or invalid
LOSS_MISSING_PRICE = 9  # the bid had no price
LOSS_BELOW_FLOOR = 100  # the bid was below the auction's floor
LOSS_BELOW_DEAL_FLOOR = 101  # the bid was below the deal's floor (or fixed price)
LOSS_HIGHER_BID = 102  # another bid was higher
LOSS_DEAL_BID = 103  # a bid on a deal won
LOSS_SEAT_BLOCKED = 104  # the buyer's seat is blocked (bseat, or not in wseat)
LOSS_ADVERTISER_EXCLUDED = 205  # the advertiser domain is blocked (badv)
LOSS_CATEGORY_EXCLUDED = 209  # the creative's category is blocked (bcat)
# Exchange-specific codes (500+, "communicated with buyers beforehand"): rtbsim's.
LOSS_PACED = 500  # the exchange's pacing skipped the campaign's bid
# The campaign could not take the impression: its budget could not pay the bid, or a
# frequency cap was reached (after the auction the exchange cannot tell which per bid;
# the report's bid_outcomes count them apart).
LOSS_OUT_OF_BUDGET = 501

LOSS_REASONS = {
    0: "won", 1: "internal error", 2: "impression opportunity expired",
    3: "invalid bid response", 4: "invalid deal id", 5: "invalid auction id",
    6: "invalid advertiser domain", 7: "missing markup", 8: "missing creative id",
    9: "missing bid price", 10: "missing minimum creative approval data",
    100: "below auction floor", 101: "below deal floor", 102: "lost to higher bid",
    103: "lost to a bid for a deal", 104: "buyer seat blocked",
    200: "creative filtered: general, reason unknown",
    201: "creative filtered: pending processing by exchange",
    202: "creative filtered: disapproved by exchange",
    203: "creative filtered: size not allowed",
    204: "creative filtered: incorrect creative format",
    205: "creative filtered: advertiser exclusions",
    206: "creative filtered: app store id exclusions",
    207: "creative filtered: not secure",
    208: "creative filtered: language exclusions",
    209: "creative filtered: category exclusions",
    210: "creative filtered: creative attribute exclusions",
    211: "creative filtered: ad type exclusions",
    212: "creative filtered: animation too long",
    213: "creative filtered: not allowed in deal",
    214: "creative filtered: invalid SKAdNetwork",
    215: "creative filtered: app bundle exclusions",
    LOSS_PACED: "paced (rtbsim)",
    LOSS_OUT_OF_BUDGET: "out of budget or frequency capped (rtbsim)",
}

# No-bid reason codes (BidResponse.nbr): OpenRTB 2.6 refers to OpenRTB 3.0's list
# (InteractiveAdvertisingBureau/openrtb, "OpenRTB v3.0 FINAL.md"); 500+ are
# exchange-specific.
NO_BID_REASONS = {
    0: "Unknown Error", 1: "Technical Error", 2: "Invalid Request",
    3: "Known Web Crawler", 4: "Suspected Non-Human Traffic",
    5: "Cloud, Data Center, or Proxy IP", 6: "Unsupported Device",
    7: "Blocked Publisher or Site", 8: "Unmatched User", 9: "Daily User Cap Met",
    10: "Daily Domain Cap Met", 11: "Ads.txt Authorization Unavailable",
    12: "Ads.txt Authorization Violation", 13: "Ads.cert Authentication Unavailable",
    14: "Ads.cert Authentication Violation", 15: "Insufficient Auction Time",
    16: "Incomplete SupplyChain", 17: "Blocked SupplyChain Node",
}

# Substitution macros (section 4.4): the macro's name after AUCTION_, lower case, is
# substitute()'s keyword.
MACROS = ("ID", "BID_ID", "IMP_ID", "SEAT_ID", "AD_ID", "PRICE", "CURRENCY", "MBR", "LOSS",
          "MIN_TO_WIN", "MULTIPLIER", "IMP_TS", "DISCOUNT_PCT", "DISCOUNT_CPM")
_MACRO = re.compile(r"\$\{AUCTION_(" + "|".join(MACROS) + r")(:[^}]*)?\}")


def _text(value: object) -> str:
    """A macro's value as text; a float in its shortest exact form (1.5, 0.123)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite macro value: {value!r}")
        return repr(value)
    return str(value)


def substitute(url: str, price: float | None, loss: int | None, **more: object) -> str:
    """Replace the OpenRTB macros in a notice URL (or markup) as the exchange does.

    `price` fills ${AUCTION_PRICE}, `loss` ${AUCTION_LOSS}; `more` fills the others by
    their name after AUCTION_ in lower case: id, bid_id, imp_id, seat_id, ad_id,
    currency, mbr, min_to_win, multiplier, imp_ts, discount_pct, discount_cpm.

    Following section 4.4: every macro of the spec is replaced wherever it is, in one
    pass (a value that itself looks like a macro is left as it is), without regard for
    syntax or URL encoding; a macro whose value is not given (None) is removed, i.e.
    replaced with "" (the spec's rule for an unspecified optional value, and for a
    price the exchange does not disclose on a loss notice). An encoded macro
    (${AUCTION_PRICE:B64}) is removed too: rtbsim agrees no encoding with its bidders,
    and sending the clear value where an encoded one was asked would defeat it.
    Anything else in ${...} is not an OpenRTB macro and is left untouched.

        >>> substitute("https://d.example/win?p=${AUCTION_PRICE}&l=${AUCTION_LOSS}", 1.5, 0)
        'https://d.example/win?p=1.5&l=0'
    """
    unknown = set(more) - {m.lower() for m in MACROS}  # price and loss cannot be in more
    if unknown:
        raise TypeError(f"substitute() got unknown macro keywords: {sorted(unknown)}")
    values = {"PRICE": price, "LOSS": loss, **{k.upper(): v for k, v in more.items()}}

    def fill(match: re.Match) -> str:
        value = values.get(match.group(1))
        return "" if value is None or match.group(2) else _text(value)

    return _MACRO.sub(fill, url)
