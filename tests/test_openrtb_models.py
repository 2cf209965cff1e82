"""rtb.openrtb: the spec's example messages parse and dump back unchanged; the rules around them."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from rtb import openrtb as O

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "openrtb"
SPEC = SHARED / "2.6.md"
LOSS_CODES = SHARED / "loss-reason-codes.md"
needs_spec = pytest.mark.skipif(not SPEC.exists(), reason="shared OpenRTB spec not present")

# Examples of section 6 whose text has no JSON message, and why. Every other example
# must hold exactly one fenced block that is a valid message.
NO_JSON = {
    "6.2.6": "Native Ad: the spec shows no request, it refers to the Native Ads API spec",
}
SECTIONS = {"6.2": O.parse_request, "6.3": O.parse_response}  # bid requests, bid responses
_FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)


def _section(text: str, number: str) -> str:
    """The body of the level-2 heading `number` (e.g. 6.2), up to the next level 1-2 heading."""
    start = re.search(rf"^##[ \t]+{re.escape(number)}\b.*$", text, re.MULTILINE)
    assert start, f"no section {number} in {SPEC}"
    end = re.compile(r"^#{1,2}[ \t]", re.MULTILINE).search(text, start.end())
    return text[start.end():end.start() if end else len(text)]


def _examples(text: str, number: str) -> dict[str, list[str]]:
    """{example number: its fenced blocks} for the level-3 headings of section `number`."""
    parts = re.split(rf"^###[ \t]+({re.escape(number)}\.\d+)\b.*$", _section(text, number),
                     flags=re.MULTILINE)
    return {n: _FENCE.findall(body) for n, body in zip(parts[1::2], parts[2::2])}


def _listed(text: str, number: str) -> list[str]:
    """The examples the table of contents lists under section `number`."""
    return re.findall(rf"^\s*-\s*\[({re.escape(number)}\.\d+)\b", text, re.MULTILINE)


def _messages() -> list:
    """(example, parser, JSON text) for every example with a message; one skip if no spec."""
    if not SPEC.exists():
        return [pytest.param(None, None, None, marks=pytest.mark.skip(reason="no shared spec"))]
    text = SPEC.read_text(encoding="utf-8")
    return [pytest.param(n, parse, blocks[0], id=n)
            for section, parse in SECTIONS.items()
            for n, blocks in _examples(text, section).items() if n not in NO_JSON]


def _spec_message(number: str) -> bytes:
    return next(p.values[2] for p in _messages() if p.values[0] == number).encode()


@needs_spec
@pytest.mark.parametrize("section", SECTIONS)
def test_every_listed_example_is_found(section: str) -> None:
    """As many examples as the contents list, each with one JSON block or a named reason."""
    text = SPEC.read_text(encoding="utf-8")
    found = _examples(text, section)
    assert list(found) == _listed(text, section)
    assert len(found) >= 4  # 6 requests and 4 responses in 2.6-202606
    for n, blocks in found.items():
        assert len(blocks) == (0 if n in NO_JSON else 1), f"{n}: {len(blocks)} code blocks"


@needs_spec
@pytest.mark.parametrize(("number", "parse", "text"), _messages())
def test_spec_example_parses_and_dumps_back_unchanged(number: str, parse, text: str) -> None:
    """Unknown fields included: the dump is the spec's message, as a JSON value."""
    message = parse(text)
    assert type(message) is (O.BidRequest if number.startswith("6.2.") else O.BidResponse)
    assert orjson.loads(O.dump(message)) == orjson.loads(text)


@needs_spec
def test_spec_examples_fields_outside_the_spec_are_kept() -> None:
    """Two examples use fields their object does not have in section 3.2: kept as given."""
    expandable = O.parse_request(_spec_message("6.2.2"))
    assert expandable.user.data[2].model_extra == {"value": "30-40"}  # a Segment field on Data
    video = O.parse_request(_spec_message("6.2.4")).imp[0].video
    assert video.model_extra == {"apis": [1, 2]}  # Video's field is `api` (Bid's is `apis`)
    assert video.companionad[0].expdir == [2, 4]


@needs_spec
def test_spec_examples_values() -> None:
    pmp = O.parse_request(_spec_message("6.2.5")).imp[0].pmp
    assert pmp.private_auction == 1
    assert [(d.id, d.at, d.bidfloor, d.bidfloorcur) for d in pmp.deals] == [
        ("AB-Agency1-0001", 1, 2.5, "USD"), ("XY-Agency2-0001", 2, 2.0, "USD")]
    bid = O.parse_response(_spec_message("6.3.1")).seatbid[0].bid[0]
    assert (bid.impid, bid.price, bid.attr[-1]) == ("102", 9.43, 12)
    mobile = O.parse_request(_spec_message("6.2.3"))
    assert (mobile.app.ver, mobile.device.connectiontype, mobile.imp[0].banner.w) == (
        "1.0.2", 3, 728)


@pytest.mark.skipif(not LOSS_CODES.exists(), reason="shared loss reason codes not present")
def test_loss_reasons_are_the_iab_list_and_rtbsim_codes_above_500() -> None:
    iab = {int(code) for code in re.findall(r"^- (\d+) ", LOSS_CODES.read_text(), re.MULTILINE)}
    assert len(iab) > 30
    assert {c for c in O.LOSS_REASONS if c < 500} == iab


def test_named_loss_codes_are_distinct_and_described() -> None:
    named = {k: v for k, v in vars(O).items() if k.startswith("LOSS_") and isinstance(v, int)}
    assert len(named) == 17
    assert len(set(named.values())) == len(named)
    assert set(named.values()) <= set(O.LOSS_REASONS)
    assert (O.LOSS_PACED, O.LOSS_OUT_OF_BUDGET) == (500, 501)
    assert O.NO_BID_REASONS[2] == "Invalid Request"
    assert list(O.NO_BID_REASONS) == list(range(18))


MINIMAL_REQUEST = {"id": "r1", "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}]}


def test_spec_defaults_apply_and_are_not_written() -> None:
    request = O.parse_request(orjson.dumps(MINIMAL_REQUEST))
    imp = request.imp[0]
    assert (request.at, request.test, request.allimps, request.cattax) == (2, 0, 0, 1)
    assert (imp.bidfloor, imp.bidfloorcur, imp.instl, imp.rwdd, imp.secure) == (
        0.0, "USD", 0, 0, None)
    assert orjson.loads(O.dump(request)) == MINIMAL_REQUEST
    assert O.Pmp().private_auction == 0
    assert O.Deal(id="d").bidfloorcur == "USD"
    assert O.Video(mimes=["video/mp4"]).boxingallowed == 1
    response = O.parse_response(b'{"id": "r1", "seatbid": [{"bid": []}]}')
    assert (response.cur, response.seatbid[0].group) == ("USD", 0)


def test_a_model_built_in_code_dumps_what_was_given() -> None:
    request = O.BidRequest(id="r1", at=1, imp=[O.Imp(id="1", native=O.Native(request="{}"))])
    assert orjson.loads(O.dump(request)) == {
        "id": "r1", "at": 1, "imp": [{"id": "1", "native": {"request": "{}"}}]}
    later = request.model_copy(update={"tmax": 120})
    assert orjson.loads(O.dump(later))["tmax"] == 120


def test_unknown_fields_are_kept_at_every_level() -> None:
    message = {
        "id": "r1", "future_field": {"a": [1, 2]}, "ext": {"rtbsim": {"time_s": 1.5}},
        "imp": [{"id": "1", "metric": [{"type": "viewability", "value": 0.7}],
                 "banner": {"w": 300, "vendor_size": "mrec"},
                 "pmp": {"deals": [{"id": "d1", "x_terms": "net"}]}}],
        "source": {"schain": {"complete": 1, "ver": "1.0", "nodes": [{"asi": "a", "sid": "1"}]}},
    }
    request = O.parse_request(orjson.dumps(message))
    assert request.model_extra == {"future_field": {"a": [1, 2]}}
    assert request.imp[0].banner.model_extra == {"vendor_size": "mrec"}
    assert request.imp[0].pmp.deals[0].model_extra == {"x_terms": "net"}
    assert request.ext == {"rtbsim": {"time_s": 1.5}}
    assert orjson.loads(O.dump(request)) == message


@pytest.mark.parametrize(("parse", "message", "loc"), [
    (O.parse_request, {"imp": [{"id": "1"}]}, ("id",)),
    (O.parse_request, {"id": "r"}, ("imp",)),
    (O.parse_request, {"id": "r", "imp": []}, ("imp",)),
    (O.parse_request, {"id": "r", "imp": [{"bidfloor": 1}]}, ("imp", 0, "id")),
    (O.parse_request, {"id": "r", "imp": [{"id": "1", "video": {"w": 640}}]},
     ("imp", 0, "video", "mimes")),
    (O.parse_request, {"id": "r", "imp": [{"id": "1", "native": {"ver": "1.2"}}]},
     ("imp", 0, "native", "request")),
    (O.parse_request, {"id": "r", "imp": [{"id": "1", "pmp": {"deals": [{"at": 1}]}}]},
     ("imp", 0, "pmp", "deals", 0, "id")),
    (O.parse_response, {"seatbid": []}, ("id",)),
    (O.parse_response, {"id": "r", "seatbid": [{"seat": "s"}]}, ("seatbid", 0, "bid")),
    (O.parse_response, {"id": "r", "seatbid": [{"bid": [{"id": "b", "impid": "1"}]}]},
     ("seatbid", 0, "bid", 0, "price")),
    (O.parse_response, {"id": "r", "seatbid": [{"bid": [{"id": "b", "price": 1.0}]}]},
     ("seatbid", 0, "bid", 0, "impid")),
])
def test_a_missing_required_field_is_named(parse, message: dict, loc: tuple) -> None:
    with pytest.raises(ValidationError) as caught:
        parse(orjson.dumps(message))
    assert [e["loc"] for e in caught.value.errors()] == [loc]
    assert ".".join(map(str, loc)) in str(caught.value)


def test_wrong_types_and_non_finite_prices_are_refused() -> None:
    with pytest.raises(ValidationError, match="price"):
        O.parse_response(b'{"id": "r", "seatbid": [{"bid": [{"id": "b", "impid": "1",'
                         b' "price": "a lot"}]}]}')
    with pytest.raises(ValidationError, match="finite"):
        O.Bid(id="b", impid="1", price=float("nan"))


@pytest.mark.parametrize("text", [
    b'{"id": "1234567890", "seatbid": []}',  # implementation notes 7.1, the no-bid forms
    b'{"id": "1234567890", "seatbid": [], "nbr": 2}',
    b'{"id": "1234567890"}',
])
def test_a_no_bid_response_parses(text: bytes) -> None:
    response = O.parse_response(text)
    assert not response.seatbid
    assert response.nbr in (None, 2)
    assert orjson.loads(O.dump(response)) == orjson.loads(text)


def test_models_are_frozen() -> None:
    request = O.parse_request(orjson.dumps(MINIMAL_REQUEST))
    with pytest.raises(ValidationError):
        request.id = "other"


WIN = "https://dsp.example/win?p=${AUCTION_PRICE}&l=${AUCTION_LOSS}"


@pytest.mark.parametrize(("url", "price", "loss", "more", "expected"), [
    (WIN, 1.5, O.LOSS_WON, {}, "https://dsp.example/win?p=1.5&l=0"),
    (WIN, None, O.LOSS_HIGHER_BID, {}, "https://dsp.example/win?p=&l=102"),  # price withheld
    (WIN, 2, None, {}, "https://dsp.example/win?p=2&l="),
    (WIN + "&p2=${AUCTION_PRICE}", 0.1, 0, {}, "https://dsp.example/win?p=0.1&l=0&p2=0.1"),
    ("${AUCTION_ID}/${AUCTION_BID_ID}/${AUCTION_IMP_ID}/${AUCTION_SEAT_ID}/${AUCTION_CURRENCY}",
     None, None, {"id": "r1", "bid_id": "b9", "imp_id": "1", "seat_id": "camp", "currency": "EUR"},
     "r1/b9/1/camp/EUR"),
    ("${AUCTION_ID}|${AUCTION_MBR}|${AUCTION_MIN_TO_WIN}", None, None, {}, "||"),  # not given
    ("p=${AUCTION_PRICE:B64}", 1.5, None, {}, "p="),  # no encoding agreed: removed
    ("c=${CLICK_URL}&x=${AUCTION_UNKNOWN}&p=$AUCTION_PRICE", 1.5, None, {},
     "c=${CLICK_URL}&x=${AUCTION_UNKNOWN}&p=$AUCTION_PRICE"),  # not OpenRTB macros
    ("${AUCTION_SEAT_ID}-${AUCTION_PRICE}", 3.0, None, {"seat_id": "${AUCTION_PRICE}"},
     "${AUCTION_PRICE}-3.0"),  # one pass: a value is never substituted again
])
def test_substitute(url: str, price, loss, more: dict, expected: str) -> None:
    assert O.substitute(url, price, loss, **more) == expected


def test_substitute_refuses_unknown_keywords_and_non_finite_prices() -> None:
    with pytest.raises(TypeError, match="auction_price"):
        O.substitute(WIN, 1.0, 0, auction_price=2.0)
    with pytest.raises(ValueError, match="finite"):
        O.substitute(WIN, float("inf"), 0)
