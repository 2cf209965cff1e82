"""Floor rules (Prebid-style), dynamic floors and floor hits.

Rule matching is checked against hand-worked tables and against a plain-Python twin
of the documented rule; dynamic floors against a twin of their update rule, on the
prices a real run fed them; whole runs check that every logged price meets the floor
the rules give its request.
"""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path

import numpy as np
import orjson
import pytest

from rtb import simulate
from rtb.errors import InputError
from rtb.market import build_market
from rtb.scenario import parse_scenario
from rtb.supply_spec import DynamicFloorSpec, FloorRuleSpec
from ssp import floors as floors_mod
from ssp.floors import DynamicFloors, build_floors, matching_rule

GEOS = {"US": 0.5, "CA": 0.3, "MX": 0.2}


def market(**floors_by_pub) -> dict:
    """Two SSPs, three publishers; `floors_by_pub` sets publishers' floors tables."""
    data = {
        "name": "floors",
        "simulation": {"seed": 5, "start": "2026-03-02T08:00:00Z", "duration": "3h", "tick": "60s"},
        "exchange": {"auction": "second",
                     "market": {"kind": "lognormal", "median_cpm": 1.2, "sigma": 0.6,
                                "participation": 0.8}},
        "ssps": [{"id": "ssp-a"}, {"id": "ssp-b"}],
        "publishers": [
            {"id": "news", "ssp": "ssp-a", "domain": "News.example", "category": "news",
             "slots": [{"id": "top", "format": "banner", "device": "desktop",
                        "daily_requests": 60_000, "floor_cpm": 0.4},
                       {"id": "clip", "format": "video", "device": "mobile",
                        "daily_requests": 30_000}]},
            {"id": "sport", "ssp": "ssp-a", "domain": "sport.example", "category": "sports",
             "slots": [{"id": "top", "format": "banner", "device": "mobile",
                        "daily_requests": 50_000},
                       {"id": "feed", "format": "native", "device": "mobile",
                        "daily_requests": 40_000, "floor_cpm": 0.9}]},
            {"id": "games", "ssp": "ssp-b", "domain": "games.example", "category": "games",
             "slots": [{"id": "inter", "format": "video", "device": "mobile",
                        "daily_requests": 40_000, "floor_cpm": 2.0}]},
        ],
        "dsps": [{"id": "dsp"}],
        "advertisers": [{"id": "adv", "domain": "adv.example", "value_per_conversion": 40.0}],
        "campaigns": [
            {"id": "wide", "advertiser": "adv", "dsp": "dsp", "budget": 500.0, "pacing": "asap",
             "strategy": {"kind": "random", "max_cpm": 4.0}},
            {"id": "cpc", "advertiser": "adv", "dsp": "dsp", "budget": 500.0, "pacing": "asap",
             "strategy": {"kind": "mcpc", "target_cpc": 1.0}},
        ],
        "dmp": {"users": 3000, "geos": dict(GEOS)},
    }
    for pub in data["publishers"]:
        if pub["id"] in floors_by_pub:
            pub["floors"] = floors_by_pub[pub["id"]]
    return data


def table_of(data: dict) -> dict[tuple[str, str, str], float]:
    """{(publisher, slot, country): floor} from build_floors."""
    spec = parse_scenario(data, "floors.toml")
    book = build_floors(spec, tuple(spec.dmp.geos))
    out, row = {}, 0
    for pub in spec.publishers:
        for slot in pub.slots:
            for g, geo in enumerate(book.geo_names):
                out[(pub.id, slot.id, geo)] = float(book.table[row, g])
            row += 1
    return out


# ---- a plain-Python twin of the documented rule ------------------------------------------

def rule_floor_py(floors: dict | None, pub: dict, slot: dict, country: str) -> float:
    """The README's rule, written independently of ssp/floors.py, on raw scenario dicts."""
    if floors is None:
        return slot.get("floor_cpm", 0.0)
    request = {"domain": pub.get("domain", "").lower(), "slot": slot["id"],
               "format": slot.get("format", "banner"), "device": slot.get("device", "desktop"),
               "country": country}
    best, best_n = None, -1
    for rule in floors.get("rules", []):
        named = {k: (v.lower() if k == "domain" else v) for k, v in rule.items()
                 if k != "floor_cpm" and v != "*"}
        if all(request[k] == v for k, v in named.items()) and len(named) > best_n:
            best, best_n = rule["floor_cpm"], len(named)
    if best is None:
        best = slot["floor_cpm"] if "floor_cpm" in slot else floors.get("default", 0.0)
    return max(best, floors.get("floor_min", 0.0))


def effective_floors_py(data: dict, pub: dict) -> dict | None:
    if "floors" in pub:
        return pub["floors"]
    ssp = next(s for s in data["ssps"] if s["id"] == pub["ssp"])
    return ssp.get("floors")


# ---- rule matching ---------------------------------------------------------------------------

def test_more_specific_rule_wins_whatever_the_order():
    rules = [{"format": "banner", "device": "desktop", "country": "US", "floor_cpm": 3.0},
             {"format": "banner", "floor_cpm": 1.0},
             {"country": "US", "format": "banner", "floor_cpm": 2.0}]
    for order in (rules, rules[::-1]):
        t = table_of(market(news={"rules": order}))
        assert t[("news", "top", "US")] == 3.0  # three fields beat two and one
        assert t[("news", "top", "CA")] == 1.0  # only the one-field rule matches
        assert t[("news", "clip", "US")] == 0.0  # video: no rule, no slot floor, default 0


def test_equally_specific_rules_first_in_file_wins():
    a = {"format": "banner", "floor_cpm": 1.5}
    b = {"device": "desktop", "floor_cpm": 2.5}
    assert table_of(market(news={"rules": [a, b]}))[("news", "top", "US")] == 1.5
    assert table_of(market(news={"rules": [b, a]}))[("news", "top", "US")] == 2.5


def test_wildcards_match_anything():
    explicit = {"domain": "*", "slot": "*", "format": "*", "device": "*", "country": "*",
                "floor_cpm": 0.7}
    for rule in (explicit, {"floor_cpm": 0.7}):
        t = table_of(market(news={"rules": [rule]}))
        assert {v for (p, _, _), v in t.items() if p == "news"} == {0.7}
    # A wildcard rule matches, so it beats the slot's own floor_cpm.
    assert table_of(market(news={"rules": [explicit]}))[("news", "top", "MX")] == 0.7


def test_no_match_falls_back_to_the_slots_floor_then_the_default():
    t = table_of(market(news={"rules": [{"format": "native", "floor_cpm": 9.0}], "default": 1.25}))
    assert t[("news", "top", "US")] == 0.4  # the slot sets floor_cpm: it is the fallback
    assert t[("news", "clip", "CA")] == 1.25  # the slot sets none: the table's default


def test_floor_min_raises_rules_slot_floors_and_the_default():
    t = table_of(market(news={"rules": [{"country": "US", "floor_cpm": 0.1}],
                              "default": 0.2, "floor_min": 0.5}))
    assert t[("news", "top", "US")] == 0.5  # rule 0.1 raised
    assert t[("news", "top", "CA")] == 0.5  # slot floor 0.4 raised
    assert t[("news", "clip", "CA")] == 0.5  # default 0.2 raised
    t = table_of(market(news={"rules": [{"country": "US", "floor_cpm": 0.8}], "floor_min": 0.5}))
    assert t[("news", "top", "US")] == 0.8  # above floor_min: unchanged


def test_country_is_the_users_geo():
    t = table_of(market(sport={"rules": [{"country": "CA", "floor_cpm": 0.6},
                                         {"country": "MX", "slot": "feed", "floor_cpm": 0.2}]}))
    assert [t[("sport", "top", g)] for g in GEOS] == [0.0, 0.6, 0.0]
    assert [t[("sport", "feed", g)] for g in GEOS] == [0.9, 0.6, 0.2]


def test_ssp_table_serves_publishers_without_their_own():
    data = market(sport={"rules": [{"format": "native", "floor_cpm": 1.1}]})
    data["ssps"][0]["floors"] = {
        "floor_min": 0.3,
        "rules": [{"domain": "news.EXAMPLE", "device": "desktop", "floor_cpm": 2.0},
                  {"domain": "sport.example", "floor_cpm": 5.0}]}
    t = table_of(data)
    assert t[("news", "top", "US")] == 2.0  # SSP rule keyed on the domain, case-insensitive
    assert t[("news", "clip", "US")] == 0.3  # no match, no slot floor: default 0 -> floor_min
    # sport has its own table: the SSP's rules and floor_min do not apply to it.
    assert t[("sport", "feed", "US")] == 1.1
    assert t[("sport", "top", "US")] == 0.0
    assert t[("games", "inter", "US")] == 2.0  # another SSP, no table: the slot's floor_cpm


def test_without_floors_tables_a_slot_floor_is_its_floor_cpm():
    spec = parse_scenario(market(), "f.toml")
    book = build_floors(spec, tuple(spec.dmp.geos))
    slot_floor = [slot.floor_cpm for pub in spec.publishers for slot in pub.slots]
    np.testing.assert_array_equal(book.table, np.repeat(np.array(slot_floor)[:, None], 3, axis=1))
    assert book.groups == () and book.start_dynamic() is None


def test_table_matches_the_python_twin_on_random_rule_sets():
    rng = np.random.default_rng(11)
    values = {"domain": ["*", "news.example", "sport.example"], "slot": ["*", "top", "feed", "clip"],
              "format": ["*", "banner", "video", "native"], "device": ["*", "desktop", "mobile"],
              "country": ["*", "US", "CA", "MX"]}
    for trial in range(40):
        rules, seen = [], set()
        for _ in range(int(rng.integers(0, 9))):
            rule = {k: str(rng.choice(v)) for k, v in values.items()}
            key = tuple(rule.values())
            if key in seen:
                continue
            seen.add(key)
            rule["floor_cpm"] = float(rng.integers(0, 40)) / 10
            rules.append({k: v for k, v in rule.items() if v != "*" or rng.random() < 0.5})
        floors = {"rules": rules, "default": float(rng.integers(0, 10)) / 10,
                  "floor_min": float(rng.choice([0.0, 0.3]))}
        data = market()
        data["ssps"][0]["floors"] = floors
        t = table_of(data)
        for pub in data["publishers"]:
            for slot in pub["slots"]:
                for geo in GEOS:
                    want = rule_floor_py(effective_floors_py(data, pub), pub, slot, geo)
                    assert t[(pub["id"], slot["id"], geo)] == want, (trial, pub["id"], slot["id"], geo)


def test_matching_rule_returns_none_without_a_match():
    rules = [FloorRuleSpec(format="video", floor_cpm=1.0)]
    request = {"domain": "x", "slot": "s", "format": "banner", "device": "mobile", "country": "US"}
    assert matching_rule(rules, request) is None
    assert matching_rule(rules, {**request, "format": "video"}) is rules[0]


# ---- validation --------------------------------------------------------------------------------

def problems(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(InputError) as exc:
        parse_scenario(data, "bad.toml")
    return exc.value.problems


def test_rules_must_name_what_the_scenario_has():
    data = market(news={"rules": [{"slot": "feed", "floor_cpm": 1.0},  # sport's slot, not news'
                                  {"domain": "sport.example", "floor_cpm": 1.0},
                                  {"country": "FR", "floor_cpm": 1.0},
                                  {"slot": "top", "floor_cpm": 1.0},
                                  {"slot": "top", "floor_cpm": 2.0}]})
    data["ssps"][1]["floors"] = {"rules": [{"domain": "news.example", "floor_cpm": 1.0},
                                           {"slot": "top", "floor_cpm": 1.0}]}
    got = dict(problems(data))
    assert set(got) == {"publishers[0].floors.rules[0].slot", "publishers[0].floors.rules[1].domain",
                        "publishers[0].floors.rules[2].country", "publishers[0].floors.rules[4]",
                        "ssps[1].floors.rules[0].domain", "ssps[1].floors.rules[1].slot"}
    assert "no slot 'feed'" in got["publishers[0].floors.rules[0].slot"]
    assert "'FR' is not in dmp.geos" in got["publishers[0].floors.rules[2].country"]
    assert "rules[3]" in got["publishers[0].floors.rules[4]"]
    assert "SSP 'ssp-b'" in got["ssps[1].floors.rules[0].domain"]


@pytest.mark.parametrize("floors, path", [
    ({"rules": [{"format": "audio", "floor_cpm": 1.0}]}, "publishers[0].floors.rules[0].format"),
    ({"rules": [{"device": "tv", "floor_cpm": 1.0}]}, "publishers[0].floors.rules[0].device"),
    ({"rules": [{"slot": "a b", "floor_cpm": 1.0}]}, "publishers[0].floors.rules[0].slot"),
    ({"rules": [{"floor_cpm": -1.0}]}, "publishers[0].floors.rules[0].floor_cpm"),
    ({"rules": [{"format": "video"}]}, "publishers[0].floors.rules[0].floor_cpm"),
    ({"rules": [{"floor": 1.0, "floor_cpm": 1.0}]}, "publishers[0].floors.rules[0].floor"),
    ({"floor_minimum": 1.0}, "publishers[0].floors.floor_minimum"),
    ({"floor_min": -0.1}, "publishers[0].floors.floor_min"),
    ({"dynamic": {"quantile": 1.5}}, "publishers[0].floors.dynamic.quantile"),
    ({"dynamic": {"rate": 0}}, "publishers[0].floors.dynamic.rate"),
    ({"dynamic": {"interval": "soon"}}, "publishers[0].floors.dynamic.interval"),
    ({"dynamic": {"min_requests": 0}}, "publishers[0].floors.dynamic.min_requests"),
    ({"dynamic": {"speed": 1}}, "publishers[0].floors.dynamic.speed"),
])
def test_bad_floors_fields_are_reported_with_their_path(floors, path):
    assert path in [p for p, _ in problems(market(news=floors))]


# ---- dynamic floors: the update rule -------------------------------------------------------------

def dynamic(table, floor_min=0.0, **spec) -> DynamicFloors:
    table = np.asarray(table, dtype=np.float64)
    return DynamicFloors(table, np.full(table.shape[0], floor_min), np.zeros(table.shape[0], np.int32),
                         (DynamicFloorSpec(**spec),))


def observe(d: DynamicFloors, slot, geo, cpm) -> None:
    slot = np.asarray(slot)
    d.observe(slot, np.asarray(geo, dtype=np.uint8), np.asarray(cpm, dtype=np.float64),
              np.ones(slot.size, dtype=np.bool_))


def test_floor_moves_rate_of_the_way_to_the_quantile():
    d = dynamic([[2.0, 1.0]], quantile=0.3, rate=0.5, min_requests=10)
    # Cell (0, 0): ten values, two unsold (0); ceil(0.3 * 10) = 3rd smallest = 1.0.
    observe(d, [0] * 6, [0] * 6, [5.0, 0.0, 8.0, 1.0, 3.0, 0.0])
    observe(d, [0] * 4, [0] * 4, [2.0, 4.0, 6.0, 7.0])
    d.update(0)
    assert d.table[0, 0] == pytest.approx(2.0 + 0.5 * (1.0 - 2.0))  # 1.5: down
    assert d.table[0, 1] == 1.0  # no requests: unchanged
    # Prices above the floor, nothing unsold: up, toward the 3rd of ten.
    observe(d, [0] * 10, [0] * 10, np.arange(10) + 3.0)
    d.update(0)
    assert d.table[0, 0] == pytest.approx(1.5 + 0.5 * (5.0 - 1.5))


def test_quantile_on_exact_multiples_is_not_pushed_up_by_float_error():
    d = dynamic([[0.0]], quantile=0.3, rate=1.0, min_requests=1)
    observe(d, [0] * 10, [0] * 10, np.arange(1, 11, dtype=float))  # 0.3 * 10 = 3.0000000000000004
    d.update(0)
    assert d.table[0, 0] == 3.0


def test_fewer_than_min_requests_keep_their_floor_and_floor_min_holds():
    d = dynamic([[1.0, 1.0]], floor_min=0.6, quantile=0.5, rate=1.0, min_requests=5)
    observe(d, [0] * 5, [0] * 5, [0.0] * 5)  # all unsold: target 0
    observe(d, [0] * 4, [1] * 4, [0.0] * 4)  # too few
    d.update(0)
    assert d.table[0].tolist() == [0.6, 1.0]
    # Observations are used once: an update with nothing new changes nothing.
    d.update(0)
    assert d.table[0].tolist() == [0.6, 1.0]


def test_only_counted_requests_of_the_groups_slots_are_observed():
    table = np.ones((3, 1))
    d = DynamicFloors(table, np.zeros(3), np.array([0, -1, 1], np.int32),
                      (DynamicFloorSpec(rate=1.0, min_requests=1), DynamicFloorSpec(rate=1.0, min_requests=1)))
    d.observe(np.array([0, 0, 1, 2]), np.zeros(4, np.uint8), np.array([4.0, 9.0, 7.0, 3.0]),
              np.array([True, False, True, True]))
    d.update(0)
    assert table[:, 0].tolist() == [4.0, 1.0, 1.0]  # slot 1 is static; slot 2 is group 1's
    d.update(1)
    assert table[:, 0].tolist() == [4.0, 1.0, 3.0]


# ---- dynamic floors in a run -------------------------------------------------------------------

def read_log(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def dynamic_run(tmp_path, monkeypatch, data):
    """Run with a log; record every observation and the table after each update."""
    observed, snapshots = [], []
    real_observe, real_update = DynamicFloors.observe, DynamicFloors.update

    def spy_observe(self, slot, geo, cpm, counted):
        observed.append((slot.copy(), geo.copy(), cpm.copy(), counted.copy()))
        real_observe(self, slot, geo, cpm, counted)

    def spy_update(self, g):
        before = self.table.copy()
        batch = list(observed)
        observed.clear()
        real_update(self, g)
        snapshots.append((g, before, batch, self.table.copy()))

    monkeypatch.setattr(floors_mod.DynamicFloors, "observe", spy_observe)
    monkeypatch.setattr(floors_mod.DynamicFloors, "update", spy_update)
    spec = parse_scenario(data, "dyn.toml")
    log = tmp_path / "imps.csv"
    report = simulate(spec, log_path=log)
    return spec, report, read_log(log), snapshots


def update_py(before, batch, slot_group, floor_min, spec, g, n_geo):
    """The README's dynamic rule, cell by cell, in plain Python."""
    values: dict[tuple[int, int], list[float]] = {}
    for slot, geo, cpm, counted in batch:
        for s, gg, v, c in zip(slot.tolist(), geo.tolist(), cpm.tolist(), counted.tolist()):
            if c and slot_group[s] == g:
                values.setdefault((s, gg), []).append(v)
    after = before.copy()
    for (s, gg), vs in values.items():
        if len(vs) < spec.min_requests:
            continue
        vs.sort()
        k = max(1, math.ceil(round(spec.quantile * len(vs), 9)))
        target = vs[k - 1]
        after[s, gg] = max(before[s, gg] + spec.rate * (target - before[s, gg]), floor_min[s])
    return after


def test_dynamic_floors_follow_the_documented_rule_in_a_run(tmp_path, monkeypatch):
    data = market(news={"floor_min": 0.2, "dynamic": {"interval": "30m", "quantile": 0.4,
                                                      "rate": 0.5, "min_requests": 20}},
                  games={"dynamic": {"interval": "45m", "quantile": 0.6, "rate": 1.0,
                                     "min_requests": 5}})
    spec, report, log, snapshots = dynamic_run(tmp_path, monkeypatch, data)
    world = build_market(spec)
    dyn = world.floors
    assert len(dyn.groups) == 2
    # 3 h: news updates before 30, 60, ..., 180 min (6); games before 45, 90, 135, 180 (4).
    assert sorted(g for g, *_ in snapshots) == [0] * 6 + [1] * 4
    # Each update does what the README says, on the prices the exchange fed it.
    # (Spies see every observation; update_py keeps only the group's slots.)
    pending = {0: [], 1: []}
    moved = 0
    for g, before, batch, after in snapshots:
        for other in pending:
            pending[other].extend(batch)
        want = update_py(before, pending[g], dyn.slot_group, dyn.floor_min, dyn.groups[g], g,
                         before.shape[1])
        pending[g] = []
        np.testing.assert_allclose(after, want, rtol=0, atol=1e-12)
        moved += int((after != before).sum())
    assert moved > 0
    # Static slots never move.
    static = dyn.slot_group < 0
    np.testing.assert_array_equal(snapshots[-1][3][static], world.floors.table[static])
    # The log's floors: the one in effect at the impression's time (new floors hold
    # from each multiple of the interval on).
    every = {0: 1800.0, 1: 2700.0}
    row_of = {(pub.id, slot.id): r for r, (pub, slot) in
              enumerate((p, s) for p in spec.publishers for s in p.slots)}
    history = {0: [world.floors.table.copy()], 1: [world.floors.table.copy()]}
    for g, _, _, after in snapshots:
        history[g].append(after)
    geo_of = world.audience.geo
    checked = 0
    for row in log:
        r = row_of[(row["publisher_id"], row["slot_id"])]
        geo = int(geo_of[int(row["user_id"])])
        g = int(dyn.slot_group[r])
        if g < 0:
            want = world.floors.table[r, geo]
        else:
            k = int(float(row["time_s"]) // every[g])
            want = history[g][k][r, geo]
            checked += 1
        assert float(row["floor_cpm"]) == pytest.approx(want, rel=1e-9)
        assert float(row["price_cpm"]) >= float(row["floor_cpm"])
    assert checked > 100


def test_dynamic_floors_are_deterministic():
    data = market(sport={"dynamic": {"interval": "20m", "quantile": 0.3}})
    spec = parse_scenario(data, "dyn.toml")
    a, b = simulate(spec).to_json(), simulate(spec).to_json()
    assert a == b
    static = simulate(parse_scenario(market(), "static.toml")).to_dict()
    moved = orjson.loads(a)
    sport = [p for p in moved["publishers"] if p["id"] == "sport"][0]
    sport_static = [p for p in static["publishers"] if p["id"] == "sport"][0]
    assert sport["requests"] == sport_static["requests"]  # the same traffic ...
    assert sport["avg_floor_cpm"] != sport_static["avg_floor_cpm"]  # ... other floors


# ---- every logged price meets the rules' floor ------------------------------------------------------

RULES = {"floor_min": 0.3, "default": 0.5,
         "rules": [{"format": "video", "floor_cpm": 2.5},
                   {"format": "video", "country": "CA", "floor_cpm": 1.8},
                   {"slot": "top", "device": "mobile", "country": "US", "floor_cpm": 1.1},
                   {"domain": "news.example", "slot": "top", "floor_cpm": 0.9},
                   {"country": "MX", "floor_cpm": 0.1}]}


@pytest.mark.parametrize("auction", ["second", "first"])
def test_every_logged_price_meets_the_floor_the_rules_give(tmp_path, auction):
    data = market()
    data["exchange"]["auction"] = auction
    data["ssps"][0]["floors"] = copy.deepcopy(RULES)
    data["publishers"][2]["floors"] = {"rules": [{"country": "US", "floor_cpm": 3.0}]}
    spec = parse_scenario(data, "rules.toml")
    log_path = tmp_path / "imps.csv"
    simulate(spec, log_path=log_path)
    log = read_log(log_path)
    world = build_market(spec)
    pubs = {p["id"]: p for p in data["publishers"]}
    geo_names = world.audience.geo_names
    seen = set()
    for row in log:
        pub = pubs[row["publisher_id"]]
        slot = next(s for s in pub["slots"] if s["id"] == row["slot_id"])
        country = geo_names[int(world.audience.geo[int(row["user_id"])])]
        want = rule_floor_py(effective_floors_py(data, pub), pub, slot, country)
        assert float(row["floor_cpm"]) == want, row
        assert float(row["price_cpm"]) >= want, row
        assert float(row["bid_cpm"]) >= want, row
        seen.add(want)
    assert len(log) > 500 and len(seen) >= 5  # many impressions, under many different floors


# ---- floor hits ----------------------------------------------------------------------------------

def test_floor_hits_count_unsold_below_floor_and_sales_at_the_floor():
    data = market()
    data["exchange"]["market"]["participation"] = 1.0  # a market bid on every request
    # news: a floor no bid reaches; sport: no campaign may buy, so the market wins
    # alone and pays the floor (a low one: the market's bid is above it); games:
    # campaigns compete too.
    data["publishers"][0]["floors"] = {"default": 5e4, "floor_min": 5e4}
    data["publishers"][1]["slots"][1]["floor_cpm"] = 0.05
    data["publishers"][1]["slots"][0]["floor_cpm"] = 0.05
    for camp in data["campaigns"]:
        camp["targeting"] = {"exclude_categories": ["sports"]}
    report = simulate(parse_scenario(data, "hits.toml")).to_dict()
    pubs = {p["id"]: p for p in report["publishers"]}
    news, sport, games = pubs["news"], pubs["sport"], pubs["games"]
    assert news["impressions"] == 0 and news["floor_hits"] == news["requests"] > 0
    assert sport["impressions"] == sport["requests"] == sport["floor_hits"] > 0
    assert sport["avg_price_cpm"] == pytest.approx(0.05)
    assert 0 < games["floor_hits"] < games["requests"]


def test_first_price_floor_hits_are_only_unsold_requests():
    data = market()
    data["exchange"]["auction"] = "first"
    data["exchange"]["market"]["participation"] = 1.0
    for camp in data["campaigns"]:
        camp["targeting"] = {"exclude_categories": ["sports"]}
    report = simulate(parse_scenario(data, "hits.toml")).to_dict()
    for p in report["publishers"]:
        assert p["floor_hits"] == p["requests"] - p["impressions"]  # every request had a bid
