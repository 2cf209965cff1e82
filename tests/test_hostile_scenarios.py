"""Hostile input: what `rtb validate` accepts must run to the end without a crash, a hang
or an overflow. Each case here was a crasher (issue "Hostile input") or was found by
tests/test_fuzz.py; each is refused with a message that names the limit, or runs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import rtb
from hostile_base import tiny_scenario
from rtb.engine import simulate
from rtb.errors import InputError, printable
from rtb.scenario import parse_scenario
from rtb.tables import campaign_table
from test_cli import rtb as rtb_cli

INT64_MAX = 2**63 - 1


def problems(data: dict) -> list[str]:
    """The problems parse_scenario reports, as lines; [] if the scenario is valid."""
    try:
        parse_scenario(data, "hostile.toml")
    except InputError as exc:
        return exc.lines()
    return []


def mutated(path: str, value) -> dict:
    """The tiny scenario with the value at a dotted path (list indices as numbers) replaced."""
    data = tiny_scenario()
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = data
    for part in parents:
        node = node[part]
    node[last] = value
    return data


def test_tiny_scenario_is_valid():
    assert problems(tiny_scenario()) == []


# ---- refused at validation, with the limit in the message -------------------------------

@pytest.mark.parametrize("path, value, expected", [
    # geo codes are one byte
    ("dmp.geos", {f"G{i}": 1.0 for i in range(256)}, "at most 255 geos"),
    # calendar and rolling cap windows of 1e-12 s
    ("campaigns.0.frequency_cap.window", 1e-12, "greater than or equal to 1"),
    ("campaigns.0.frequency_cap", {"impressions": 1, "window": 1e-12, "kind": "rolling"},
     "greater than or equal to 1"),
    ("advertisers.0.frequency_cap", {"impressions": 1, "window": 0.5}, "greater than or equal to 1"),
    # a 1e-300 s tick, and a tick too short for the duration
    ("simulation.tick", 1e-300, "greater than or equal to 0.001"),
    ("simulation.tick", 0.001, "at most 1,000,000"),
    # NaN and inf named as such
    ("exchange.market.median_cpm", math.nan, "finite number, not nan"),
    ("exchange.market.sigma", math.inf, "finite number, not inf"),
    ("campaigns.0.budget", math.inf, "finite number, not inf"),
    ("campaigns.0.strategy", {"kind": "fixed", "bid_cpm": math.nan}, "finite number, not nan"),
    ("dmp.geos", {"US": math.inf}, "finite number, not inf"),
    ("dmp.devices", {"desktop": math.nan, "mobile": 1.0}, "finite number, not nan"),
    ("behaviour.ctr", {"banner": math.nan}, "finite number, not nan"),
    ("exchange.market.median_cpm", "nan", "finite number, not 'nan'"),
    ("simulation.duration", "9" * 400 + "s", "finite number, not inf"),
    # shares and rates in [0, 1]
    ("dmp.consent_rate", 1.5, "less than or equal to 1"),
    ("dmp.segments.0.share", -0.1, "greater than or equal to 0"),
    ("exchange.market.participation", 2.0, "less than or equal to 1"),
    # weights whose sum would overflow to inf
    ("publishers.0.hourly_shape", [1e308] * 24, "less than or equal to 1000000000"),
    ("publishers.0.weekly_shape", [1e308] * 7, "less than or equal to 1000000000"),
    ("dmp.geos", {"US": 1e308, "CA": 1e308}, "less than or equal to 1000000000"),
    # traffic
    ("publishers.0.slots.0.daily_requests", 1e15, "less than or equal to 1000000000"),
    # too few users for the devices the slots need
    ("dmp.users", 1, "at least 2"),
    ("dmp.devices", {"desktop": 1.0, "mobile": 0.0}, "no mobile users"),
    # a seed that does not fit the report's int64
    ("simulation.seed", 2**63, "less than or equal to 9223372036854775807"),
    ("simulation.seed", -1, "greater than or equal to 0"),
    # sizes
    ("dmp.users", 10**9, "less than or equal to 100000000"),
    ("name", "x" * 1000, "at most 200 characters"),
    ("behaviour.conversion_delay", 1e300, "less than or equal to 316224000"),
    ("behaviour.attribution_window", 1e300, "less than or equal to 316224000"),
])
def test_refused_with_the_limit(path, value, expected):
    lines = problems(mutated(path, value))
    assert lines, f"{path} = {value!r} was accepted"
    assert any(expected in line for line in lines), lines


def test_huge_daily_requests_over_a_long_run_are_refused():
    data = mutated("publishers.0.slots.0.daily_requests", 1e9)
    data["simulation"]["duration"] = "30d"
    assert any("requests over the run, at most 1e+09" in line for line in problems(data))


def test_too_many_campaigns_slots_and_budgets_are_refused():
    data = tiny_scenario()
    base = data["campaigns"][0]
    data["campaigns"] = [dict(base, id=f"c{i}") for i in range(1001)]
    assert any("at most 1000 items" in line for line in problems(data))
    data = tiny_scenario()
    data["publishers"] = [dict(data["publishers"][0], id=f"p{i}") for i in range(2)]
    data["publishers"][0]["slots"] = [dict(data["publishers"][0]["slots"][0], id=f"s{i}")
                                      for i in range(10_000)]
    assert any("10,002 slots in all, at most 10,000" in line for line in problems(data))
    data = tiny_scenario()
    data["campaigns"] = [dict(base, id=f"c{i}", budget=1e9) for i in range(11)]
    assert any("budgets total 1.1e+10, at most 1e+10" in line for line in problems(data))


def test_the_tick_and_window_minimums_are_accepted():
    data = mutated("campaigns.0.frequency_cap.window", 1.0)
    data["simulation"]["tick"] = 0.5
    assert problems(data) == []


# ---- runs that used to crash or overflow, now to the end ----------------------------------

def ledger_fits(report: dict) -> None:
    ledger = report["ledger"]
    assert ledger["imbalance_micros"] == 0
    for name, value in ledger.items():
        assert math.isfinite(value) and 0 <= value * 1e6 < INT64_MAX, (name, value)


def test_first_price_market_with_huge_prices_keeps_money_in_int64():
    # median 1e6 CPM with sigma 5 drew prices of 1e19 CPM: publisher revenue went negative.
    data = tiny_scenario()
    data["exchange"] = {"auction": "first", "market": {"kind": "lognormal", "median_cpm": 1e6,
                                                       "sigma": 5.0}}
    data["campaigns"][0]["strategy"] = {"kind": "fixed", "bid_cpm": 1e6}
    report = simulate(parse_scenario(data, "hostile.toml")).to_dict()
    ledger_fits(report)
    assert report["ledger"]["publisher_revenue"] > 0
    assert all(p["revenue"] >= 0 for p in report["publishers"])


def test_two_users_for_two_devices_run():
    # With users = 2 a draw could give both the same device; the slots of the other one
    # then found no user half-way through the run.
    data = mutated("dmp.users", 2)
    data["simulation"]["duration"] = "10m"
    for seed in range(8):
        ledger_fits(simulate(parse_scenario(data, "hostile.toml"), seed=seed).to_dict())


def test_largest_seed_runs_and_is_reported():
    spec = parse_scenario(mutated("simulation.seed", INT64_MAX), "hostile.toml")
    assert simulate(spec, budget_scale=0.5).to_dict()["scenario"]["seed"] == INT64_MAX


# ---- what reaches the terminal -------------------------------------------------------------

def test_markup_and_control_characters_in_the_name_are_shown_as_written(tmp_path):
    path = tmp_path / "markup.json"
    data = tiny_scenario()
    data["name"] = "[/bold] [red]x\x1b[2J"
    data["simulation"]["duration"] = "10m"
    path.write_text(json.dumps(data))
    proc = rtb_cli("run", path, "--quiet", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "[/bold] [red]x\\x1b[2J" in proc.stdout
    assert "\x1b" not in proc.stdout


def test_table_escapes_names():
    report = {"scenario": {"name": "[/bold]\x07", "seed": 1, "budget_scale": 1.0},
              "campaigns": [], "totals": {k: None for k in (
                  "impressions", "reach", "frequency", "clicks", "ctr", "conversions", "spend",
                  "ecpm", "cpc", "cpa", "revenue", "romi", "incremental_romi", "budget")}}
    from rich.console import Console
    console = Console(width=200, record=True, file=open("/dev/null", "w"))
    console.print(campaign_table(report))
    assert "[/bold]\\x07" in console.export_text()


def test_control_characters_in_unknown_keys_are_escaped(tmp_path):
    data = tiny_scenario()
    data["\x1b]0;pwned\x07name"] = 1
    lines = problems(data)
    assert lines == ["hostile.toml: \\x1b]0;pwned\\x07name: Extra inputs are not permitted"]
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(data))
    proc = rtb_cli("validate", path, timeout=60)
    assert proc.returncode == 2
    assert "\x1b" not in proc.stderr and "\x07" not in proc.stderr
    assert "\\x1b]0;pwned\\x07name" in proc.stderr


def test_printable_escapes_every_control_character():
    assert printable("a\nb\tc\x1b[0m\x9b\u202e\u2028ok") == "a\\x0ab\\x09c\\x1b[0m\\x9b\\u202e\\u2028ok"


# ---- rtb.simulate's arguments -------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_spec():
    return parse_scenario(tiny_scenario(), "tiny.toml")


@pytest.mark.parametrize("call, error, words", [
    (lambda s: simulate(tiny_scenario()), TypeError, "scenario must be an rtb.Scenario"),
    (lambda s: simulate(Path("scenarios/quickstart.toml")), TypeError, "not PosixPath"),
    (lambda s: simulate(s, seed="7"), TypeError, "seed must be an int or None, not str"),
    (lambda s: simulate(s, seed=1.5), TypeError, "seed must be an int"),
    (lambda s: simulate(s, seed=2**63), ValueError, "seed must be in [0, 2**63)"),
    (lambda s: simulate(s, seed=-1), ValueError, "seed must be in"),
    (lambda s: simulate(s, budget_scale="2"), TypeError, "budget_scale must be a number"),
    (lambda s: simulate(s, budget_scale=math.nan), ValueError, "positive and finite"),
    (lambda s: simulate(s, budget_scale=0), ValueError, "positive and finite"),
    (lambda s: simulate(s, budget_scale=1e300), ValueError, "at most 1e+12"),
    (lambda s: simulate(s, log_path=3), TypeError, "log_path must be a str or path"),
    (lambda s: simulate(s, progress=3), TypeError, "progress must be callable"),
])
def test_simulate_names_the_wrong_argument(tiny_spec, call, error, words):
    with pytest.raises(error) as info:
        call(tiny_spec)
    assert words in str(info.value)


def test_simulate_is_exported_with_the_same_checks(tiny_spec):
    with pytest.raises(TypeError, match="scenario must be"):
        rtb.simulate({"name": "x"})


def test_market_prices_are_capped_at_max_cpm():
    from rtb.scenario import LognormalMarketSpec
    from rtb.spec_base import MAX_CPM
    from ssp.market import BackgroundMarket
    import numpy as np

    spec = LognormalMarketSpec(kind="lognormal", median_cpm=MAX_CPM, sigma=5.0)
    prices = BackgroundMarket(spec).draw(100_000, np.random.default_rng(1))
    assert np.nanmax(prices) == MAX_CPM and np.nanmin(prices) > 0
