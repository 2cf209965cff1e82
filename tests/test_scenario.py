"""Scenario files: loading TOML and JSON, and every kind of bad input as an InputError.

Each bad case checks the three things a user needs: the file, the field path and a
message that says what is wrong. Cases marked xfail are validation gaps: inputs the
loader accepts although the run then crashes or breaks a rule of the design.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from rtb.errors import InputError
from rtb.scenario import Scenario, load_scenario, parse_scenario

REPO = Path(__file__).resolve().parents[1]

MINIMAL = {
    "name": "minimal",
    "simulation": {"seed": 3, "start": "2026-03-02T00:00:00Z", "duration": "2h", "tick": "60s"},
    "exchange": {"auction": "second", "fee": 0.1,
                 "market": {"kind": "lognormal", "median_cpm": 1.0, "sigma": 0.5,
                            "participation": 0.5}},
    "ssps": [{"id": "ssp-a", "fee": 0.1}],
    "publishers": [{"id": "pub-a", "ssp": "ssp-a", "category": "news",
                    "slots": [{"id": "top", "format": "banner", "device": "mobile",
                               "daily_requests": 20000, "floor_cpm": 0.5}]}],
    "dsps": [{"id": "dsp-a", "fee": 0.1}],
    "advertisers": [{"id": "adv-a", "value_per_conversion": 50.0, "margin": 0.5}],
    "campaigns": [{"id": "camp-a", "advertiser": "adv-a", "dsp": "dsp-a", "budget": 10.0,
                   "strategy": {"kind": "fixed", "bid_cpm": 2.0}}],
    "dmp": {"users": 1000, "geos": {"US": 0.7, "CA": 0.3},
            "segments": [{"id": "seg-a", "share": 0.2}]},
}

MINIMAL_TOML = """\
name = "minimal"

[simulation]
seed = 3
start = "2026-03-02T00:00:00Z"
duration = "2h"
tick = "60s"

[exchange]
auction = "second"
fee = 0.1
market = { kind = "lognormal", median_cpm = 1.0, sigma = 0.5, participation = 0.5 }

[[ssps]]
id = "ssp-a"
fee = 0.1

[[publishers]]
id = "pub-a"
ssp = "ssp-a"
category = "news"
slots = [{ id = "top", format = "banner", device = "mobile", daily_requests = 20000, floor_cpm = 0.5 }]

[[dsps]]
id = "dsp-a"
fee = 0.1

[[advertisers]]
id = "adv-a"
value_per_conversion = 50.0
margin = 0.5

[[campaigns]]
id = "camp-a"
advertiser = "adv-a"
dsp = "dsp-a"
budget = 10.0
strategy = { kind = "fixed", bid_cpm = 2.0 }

[dmp]
users = 1000
geos = { US = 0.7, CA = 0.3 }
segments = [{ id = "seg-a", share = 0.2 }]
"""


def scenario(**changes) -> dict:
    """A deep copy of MINIMAL; `changes` maps a dotted path (list indices as digits) to a value."""
    data = copy.deepcopy(MINIMAL)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        if last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value
    return data


def problem(data: dict, file: str = "test.toml") -> InputError:
    with pytest.raises(InputError) as info:
        parse_scenario(data, file)
    return info.value


def assert_problem(err: InputError, file: str, field: str, *words: str) -> None:
    """err names `file`, has a problem at exactly `field`, whose message has every word."""
    assert err.file == file
    messages = {f: m for f, m in err.problems}
    assert field in messages, f"no problem at {field!r}: {err.problems}"
    for word in words:
        assert word.lower() in messages[field].lower(), (field, messages[field])
    line = next(line for line in err.lines() if field in line)
    assert line.startswith(file) and messages[field] in line


# ---- loading ------------------------------------------------------------------------

def test_minimal_dict_is_valid():
    s = parse_scenario(scenario(), "test.toml")
    assert isinstance(s, Scenario)
    assert s.simulation.duration == 7200.0 and s.simulation.tick == 60.0
    assert s.simulation.start.utcoffset().total_seconds() == 0


def test_toml_and_json_files_load_to_the_same_scenario(tmp_path):
    toml_file = tmp_path / "s.toml"
    toml_file.write_text(MINIMAL_TOML)
    json_file = tmp_path / "s.json"
    json_file.write_text(json.dumps(MINIMAL))
    from_toml, from_json = load_scenario(toml_file), load_scenario(str(json_file))
    assert from_toml == from_json == parse_scenario(scenario(), "x")
    assert from_toml.campaigns[0].strategy.bid_cpm == 2.0


def test_quickstart_is_valid():
    s = load_scenario(REPO / "scenarios" / "quickstart.toml")
    assert s.name == "quickstart"
    assert len(s.campaigns) == 6 and len(s.publishers) == 6
    assert {c.dsp for c in s.campaigns} <= {d.id for d in s.dsps}


@pytest.mark.parametrize("text, seconds", [
    (90, 90.0), (1.5, 1.5), ("90s", 90.0), ("15m", 900.0), ("6h", 21600.0), ("1d", 86400.0),
    ("1w", 604800.0), (" 2.5h ", 9000.0)])
def test_durations(text, seconds):
    s = parse_scenario(scenario(**{"simulation.tick": text, "simulation.duration": "2w"}), "t")
    assert s.simulation.tick == seconds


def test_currency_is_usd_unless_the_scenario_says():
    assert parse_scenario(scenario(), "t").currency == "USD"
    assert parse_scenario(scenario(currency="EUR"), "t").currency == "EUR"


def test_datetime_without_zone_is_utc():
    s = parse_scenario(scenario(**{"simulation.start": "2026-03-02T05:00:00"}), "t")
    assert s.simulation.start.utcoffset().total_seconds() == 0
    assert s.simulation.start.hour == 5


def test_histogram_market_file_is_resolved_against_scenario_folder(tmp_path):
    (tmp_path / "prices.json").write_text(json.dumps({"price_counter_train": [0, 3, 5, 2]}))
    data = scenario(**{"exchange.market": {"kind": "histogram", "file": "prices.json",
                                           "scale": 0.5}})
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))
    s = load_scenario(path)
    assert Path(s.exchange.market.file) == (tmp_path / "prices.json").resolve()


# ---- bad files ------------------------------------------------------------------------

def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(InputError) as info:
        load_scenario(path)
    assert info.value.file == str(path)
    assert info.value.problems == [("", "no such file")]
    assert str(path) in str(info.value)


def test_unparseable_toml(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text(MINIMAL_TOML.replace('seed = 3', 'seed = = 3'))
    with pytest.raises(InputError) as info:
        load_scenario(path)
    err = info.value
    assert err.file == str(path)
    [(field, message)] = err.problems
    assert field == "" and "invalid TOML" in message and "line 4" in message


def test_unparseable_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"name": "x",\n "simulation": {,}}')
    with pytest.raises(InputError) as info:
        load_scenario(path)
    err = info.value
    assert err.file == str(path)
    [(field, message)] = err.problems
    assert field == "" and "invalid JSON" in message and "line 2" in message


def test_top_level_must_be_a_table(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(InputError) as info:
        load_scenario(path)
    assert info.value.file == str(path)
    assert "top level" in info.value.problems[0][1]


# ---- unknown keys and bad values -----------------------------------------------------

@pytest.mark.parametrize("path, field", [
    ("bogus", "bogus"),
    ("simulation.seeds", "simulation.seeds"),
    ("campaigns.0.budgett", "campaigns[0].budgett"),
    ("campaigns.0.strategy.bid", "campaigns[0].strategy.bid"),
    ("publishers.0.slots.0.size", "publishers[0].slots[0].size"),
    ("exchange.market.mu", "exchange.market.mu"),
])
def test_unknown_key_rejected_with_its_path(path, field):
    assert_problem(problem(scenario(**{path: 1})), "test.toml", field, "not permitted")


@pytest.mark.parametrize("path, value, field, words", [
    ("campaigns.0.budget", -5.0, "campaigns[0].budget", ["greater than 0"]),
    ("campaigns.0.budget", 0, "campaigns[0].budget", ["greater than 0"]),
    ("dmp.segments.0.share", 1.5, "dmp.segments[0].share", ["less than or equal to 1"]),
    ("simulation.duration", "3 days", "simulation.duration", ["not a duration", "3 days"]),
    ("simulation.tick", "-1s", "simulation.tick", ["not a duration"]),
    ("exchange.auction", "third", "exchange.auction", ["first", "second"]),
    ("exchange.fee", 1.0, "exchange.fee", ["less than 1"]),
    ("ssps.0.fee", -0.1, "ssps[0].fee", ["greater than or equal to 0"]),
    ("publishers.0.slots.0.format", "popup", "publishers[0].slots[0].format", ["banner"]),
    ("publishers.0.slots.0.daily_requests", 0, "publishers[0].slots[0].daily_requests",
     ["greater than 0"]),
    ("campaigns.0.strategy", {"kind": "magic"}, "campaigns[0].strategy", ["magic"]),
    ("campaigns.0.strategy", {"kind": "fixed"}, "campaigns[0].strategy.bid_cpm", ["required"]),
    ("campaigns.0.frequency_cap", {"impressions": 0, "window": "1d"},
     "campaigns[0].frequency_cap.impressions", ["greater than or equal to 1"]),
    ("campaigns.0.frequency_cap", {"impressions": 2, "window": "1d", "kind": "sliding"},
     "campaigns[0].frequency_cap.kind", ["calendar", "rolling"]),
    ("simulation.start", "yesterday", "simulation.start", ["yesterday"]),
    ("dmp.users", 0, "dmp.users", ["greater than or equal to 1"]),
    ("campaigns.0.id", "has space", "campaigns[0].id", ["pattern"]),
    ("currency", "usd", "currency", ["currency code", "'usd'", "ISO 4217", "three capital letters"]),
    ("currency", "EURO", "currency", ["currency code", "'EURO'"]),
    ("currency", "US$", "currency", ["currency code"]),
    ("currency", "USD\n", "currency", ["currency code"]),
    ("currency", 840, "currency", ["string"]),
])
def test_bad_value_names_field_and_problem(path, value, field, words):
    assert_problem(problem(scenario(**{path: value})), "test.toml", field, *words)


def test_tick_longer_than_duration():
    err = problem(scenario(**{"simulation.tick": "3h"}))
    assert_problem(err, "test.toml", "simulation", "tick", "duration")


def test_missing_required_section():
    data = scenario()
    del data["dmp"]
    assert_problem(problem(data), "test.toml", "dmp", "required")


def test_every_problem_is_reported_at_once():
    err = problem(scenario(**{"campaigns.0.budget": -1, "dmp.segments.0.share": 2}))
    fields = {f for f, _ in err.problems}
    assert {"campaigns[0].budget", "dmp.segments[0].share"} <= fields


# ---- references, ids, flights, budgets --------------------------------------------------

@pytest.mark.parametrize("path, value, field, words", [
    ("campaigns.0.dsp", "nope", "campaigns[0].dsp", ["unknown DSP", "nope"]),
    ("campaigns.0.advertiser", "nope", "campaigns[0].advertiser", ["unknown advertiser", "nope"]),
    ("campaigns.0.targeting", {"segments": ["seg-a", "nope"]},
     "campaigns[0].targeting.segments[1]", ["unknown segment", "nope"]),
    ("campaigns.0.targeting", {"categories": ["sports"]},
     "campaigns[0].targeting.categories[0]", ["sports"]),
    ("campaigns.0.targeting", {"geos": ["US", "FR"]}, "campaigns[0].targeting.geos[1]",
     ["FR", "dmp.geos"]),
    ("publishers.0.ssp", "nope", "publishers[0].ssp", ["unknown SSP", "nope"]),
    ("dmp.segments.0.advertisers", ["nope"], "dmp.segments[0].advertisers[0]",
     ["unknown advertiser"]),
])
def test_dangling_reference(path, value, field, words):
    assert_problem(problem(scenario(**{path: value})), "test.toml", field, *words)


@pytest.mark.parametrize("section, field", [
    ("ssps", "ssps[1].id"), ("publishers", "publishers[1].id"), ("dsps", "dsps[1].id"),
    ("advertisers", "advertisers[1].id"), ("campaigns", "campaigns[1].id"),
])
def test_duplicate_ids(section, field):
    data = scenario()
    data[section].append(copy.deepcopy(data[section][0]))
    assert_problem(problem(data), "test.toml", field, "duplicate", data[section][0]["id"])


def test_duplicate_slot_and_segment_ids():
    data = scenario()
    slots = data["publishers"][0]["slots"]
    slots.append(copy.deepcopy(slots[0]))
    data["dmp"]["segments"].append({"id": "seg-a", "share": 0.1})
    err = problem(data)
    assert_problem(err, "test.toml", "publishers[0].slots[1].id", "duplicate")
    assert_problem(err, "test.toml", "dmp.segments[1].id", "duplicate")


@pytest.mark.parametrize("changes, field", [
    ({"campaigns.0.start": "2026-03-01T23:00:00Z"}, "campaigns[0].start"),
    ({"campaigns.0.start": "2026-03-02T02:00:00Z"}, "campaigns[0].start"),
    ({"campaigns.0.end": "2026-03-02T02:00:01Z"}, "campaigns[0].end"),
    ({"campaigns.0.end": "2026-03-02T00:00:00Z"}, "campaigns[0].end"),
])
def test_flight_outside_simulation(changes, field):
    assert_problem(problem(scenario(**changes)), "test.toml", field, "outside the simulation")


def test_flight_inside_simulation_is_fine():
    parse_scenario(scenario(**{"campaigns.0.start": "2026-03-02T00:00:00Z",
                               "campaigns.0.end": "2026-03-02T02:00:00Z"}), "t")


def test_flight_end_before_start():
    err = problem(scenario(**{"campaigns.0.start": "2026-03-02T01:00:00Z",
                              "campaigns.0.end": "2026-03-02T00:30:00Z"}))
    assert_problem(err, "test.toml", "campaigns[0]", "end must be after start")


def test_daily_budget_above_budget():
    err = problem(scenario(**{"campaigns.0.daily_budget": 10.5}))
    assert_problem(err, "test.toml", "campaigns[0].daily_budget", "exceeds", "budget")
    parse_scenario(scenario(**{"campaigns.0.daily_budget": 10.0}), "t")


# ---- the histogram market's file ------------------------------------------------------

def test_histogram_market_file_missing(tmp_path):
    data = scenario(**{"exchange.market": {"kind": "histogram", "file": "nope.json"}})
    with pytest.raises(InputError) as info:
        parse_scenario(data, "market.toml", base_dir=tmp_path)
    assert_problem(info.value, "market.toml", "exchange.market.file", "no such file", "nope.json")


def test_histogram_market_file_without_key(tmp_path):
    (tmp_path / "prices.json").write_text(json.dumps({"other": [1, 2]}))
    data = scenario(**{"exchange.market": {"kind": "histogram", "file": "prices.json"}})
    with pytest.raises(InputError) as info:
        parse_scenario(data, "market.toml", base_dir=tmp_path)
    assert_problem(info.value, "market.toml", "exchange.market.file", "price_counter_train")


# ---- amounts a run could not represent, and devices without users ------------------------

def test_slot_device_without_users_is_rejected():
    """Otherwise the run crashes half-way, drawing a user for a device nobody has."""
    err = problem(scenario(**{"dmp.devices": {"desktop": 1.0, "mobile": 0.0}}))
    assert_problem(err, "test.toml", "publishers[0].slots[0].device", "mobile")


@pytest.mark.parametrize("budget", [1e13, float("inf")])
def test_budget_too_large_for_micros_is_rejected(budget):
    """Otherwise build_world raises OverflowError converting the budget to int64 micros."""
    assert_problem(problem(scenario(**{"campaigns.0.budget": budget})), "test.toml",
                   "campaigns[0].budget")


@pytest.mark.parametrize("bid", [float("inf"), 1e17])
def test_bid_too_large_for_micros_is_rejected(bid):
    """Otherwise the bid's micros overflow int64 in the kernel and spend turns negative."""
    err = problem(scenario(**{"campaigns.0.strategy": {"kind": "fixed", "bid_cpm": bid}}))
    assert_problem(err, "test.toml", "campaigns[0].strategy.bid_cpm")


@pytest.mark.parametrize("duration", [1e12, float("inf")])
def test_duration_beyond_calendar_is_an_input_error(duration):
    """Otherwise computing the end date raises OverflowError or ValueError, not InputError."""
    assert_problem(problem(scenario(**{"simulation.duration": duration})), "test.toml",
                   "simulation.duration")


# ---- strategies: a table or the short form, both the one model ----------------------------

@pytest.mark.parametrize("strategy", [
    {"kind": "linear", "base_cpm": 2.0, "avg_ctr": 0.002},
    "linear:base_cpm=2,avg_ctr=0.002",
    '{ kind = "linear", base_cpm = 2, avg_ctr = 0.002 }',
])
def test_strategy_as_a_table_or_in_the_short_form(strategy):
    s = parse_scenario(scenario(**{"campaigns.0.strategy": strategy}), "test.toml")
    assert s == parse_scenario(scenario(**{"campaigns.0.strategy": {
        "kind": "linear", "base_cpm": 2.0, "avg_ctr": 0.002}}), "test.toml")


def test_short_form_strategy_in_a_toml_file(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(MINIMAL_TOML.replace('strategy = { kind = "fixed", bid_cpm = 2.0 }',
                                         'strategy = "fixed:bid_cpm=2"'))
    assert load_scenario(path) == parse_scenario(scenario(), str(path))


@pytest.mark.parametrize("strategy, field, words", [
    ("fixed:bid_cpm=-1", "campaigns[0].strategy.bid_cpm", ["greater than or equal to 0"]),
    ("fixed:bid_cpm", "campaigns[0].strategy", ["expected NAME=VALUE"]),
    ("magic:x=1", "campaigns[0].strategy", ["unknown strategy kind", "magic"]),
    ({"kind": "linear", "base_cpm": 2.0}, "campaigns[0].strategy.avg_ctr",
     ["required", "only rtb replay"]),
    ("linear:base_cpm=2", "campaigns[0].strategy.avg_ctr", ["required", "only rtb replay"]),
    ({"kind": "mcpc"}, "campaigns[0].strategy.target_cpc", ["required", "only rtb replay"]),
])
def test_bad_strategy_names_its_field(strategy, field, words):
    err = problem(scenario(**{"campaigns.0.strategy": strategy}))
    assert_problem(err, "test.toml", field, *words)


# ---- a segment's party: first-party data is its owner's, and free -----------------------------

def with_segment(segment: dict, *, advertiser_of_campaign: str = "adv-a") -> dict:
    """MINIMAL with a second advertiser (adv-b), `segment` as seg-a, and camp-a targeting it."""
    data = scenario(**{"dmp.segments.0": {"id": "seg-a", "share": 0.2, **segment},
                       "campaigns.0.targeting": {"segments": ["seg-a"]},
                       "campaigns.0.advertiser": advertiser_of_campaign})
    data["advertisers"].append({"id": "adv-b", "value_per_conversion": 20.0})
    return data


@pytest.mark.parametrize("segment", [
    {"party": "first", "owner": "adv-a"},
    {"party": "first", "owner": "adv-a", "data_cpm": 0.0},
    {"party": "second", "data_cpm": 0.5},
    {"party": "third", "data_cpm": 1.5},
    {},  # third party, free: as before
])
def test_valid_parties(segment):
    s = parse_scenario(with_segment(segment), "test.toml")
    assert s.dmp.segments[0].owner == segment.get("owner")


@pytest.mark.parametrize("segment, field, words", [
    ({"party": "first"}, "dmp.segments[0].owner", ["required", "first-party"]),
    ({"party": "first", "owner": "nope"}, "dmp.segments[0].owner", ["unknown advertiser", "nope"]),
    ({"party": "first", "owner": "adv-a", "data_cpm": 0.5}, "dmp.segments[0].data_cpm",
     ["must be 0", "first-party", "0.5"]),
    ({"party": "second", "owner": "adv-a"}, "dmp.segments[0].owner",
     ["only a first-party segment has an owner", "second-party"]),
    ({"owner": "adv-a"}, "dmp.segments[0].owner", ["only a first-party", "third-party"]),
    ({"party": "first", "owner": "adv-a bad"}, "dmp.segments[0].owner", ["pattern"]),
])
def test_bad_party(segment, field, words):
    assert_problem(problem(with_segment(segment)), "test.toml", field, *words)


def test_only_the_owner_s_campaigns_may_target_first_party_data():
    data = with_segment({"party": "first", "owner": "adv-b"})
    err = problem(data)
    assert_problem(err, "test.toml", "campaigns[0].targeting.segments[0]", "seg-a", "first-party",
                   "adv-b")
    assert len(err.problems) == 1
    # The owner's campaign may; second- and third-party data any advertiser may buy.
    parse_scenario(with_segment({"party": "first", "owner": "adv-b"}, advertiser_of_campaign="adv-b"),
                   "test.toml")
    for party in ("second", "third"):
        parse_scenario(with_segment({"party": party, "data_cpm": 1.0}, advertiser_of_campaign="adv-b"),
                       "test.toml")


def test_quickstart_and_large_first_party_segments_have_owners():
    for name in ("quickstart", "large"):
        s = load_scenario(REPO / "scenarios" / f"{name}.toml")
        first = [seg for seg in s.dmp.segments if seg.party == "first"]
        assert first and all(seg.owner is not None and seg.data_cpm == 0 for seg in first)
