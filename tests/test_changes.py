"""Scenario variants (rtb.changes): budgets, moves, any field by its path, plan files."""

from __future__ import annotations

import pytest

from rtb.changes import Change, apply_changes, load_plan, parse_value
from rtb.errors import InputError
from rtb.scenario import load_scenario
from rtb.types import MICROS_PER_UNIT
from test_cli import QUICKSTART


@pytest.fixture(scope="module")
def spec():
    return load_scenario(QUICKSTART)


def budgets(scenario) -> dict[str, tuple[float, float | None]]:
    return {c.id: (c.budget, c.daily_budget) for c in scenario.campaigns}


def micros(value: float) -> int:
    return round(value * MICROS_PER_UNIT)


@pytest.mark.parametrize("value, budget", [("x1.3", 195.0), ("*2", 300.0), ("+20%", 180.0),
                                           ("-20%", 120.0), ("+12.5", 162.5), ("-50", 100.0),
                                           ("5000", 5000.0), ("0.000001", 0.000001)])
def test_budget_forms(spec, value, budget):
    changed = apply_changes(spec, [Change("budget", f"sneakers-prospecting={value}")])
    assert budgets(changed)["sneakers-prospecting"] == (budget, None)
    others = {k: v for k, v in budgets(changed).items() if k != "sneakers-prospecting"}
    assert others == {k: v for k, v in budgets(spec).items() if k != "sneakers-prospecting"}


def test_budget_scales_the_daily_budget_in_proportion_and_daily_budget_alone(spec):
    changed = apply_changes(spec, [Change("budget", "retargeting=x2")])
    assert budgets(changed)["sneakers-retargeting"] == (60.0, 60.0)
    changed = apply_changes(spec, [Change("daily-budget", "retargeting=-50%")])
    assert budgets(changed)["sneakers-retargeting"] == (30.0, 15.0)
    changed = apply_changes(spec, [Change("daily-budget", "prospecting=40")])  # none before
    assert budgets(changed)["sneakers-prospecting"] == (150.0, 40.0)


def test_a_move_keeps_the_total_exactly(spec):
    changed = apply_changes(spec, [Change("move", "prospecting:retargeting=30%")])
    assert budgets(changed)["sneakers-prospecting"] == (105.0, None)
    assert budgets(changed)["sneakers-retargeting"] == (75.0, 75.0)
    odd = apply_changes(spec, [Change("move", "gadgets-cpc:mealkit-foodies=33.3333333%")])
    assert sum(micros(c.budget) for c in odd.campaigns) == sum(micros(c.budget) for c in spec.campaigns)
    amount = apply_changes(spec, [Change("move", "mealkit-video:gadgets-in-market=12.25")])
    assert budgets(amount)["mealkit-video"][0] == 187.75
    assert budgets(amount)["gadgets-in-market"] == (42.25, 42.25)


def test_ids_holding_a_colon_are_split_where_both_sides_name_a_campaign(spec):
    data = spec.model_dump()
    data["campaigns"][0]["id"] = "eu:retargeting"
    from rtb.scenario import parse_scenario

    colon = parse_scenario(data, "test")
    changed = apply_changes(colon, [Change("move", "eu:retargeting:sneakers-prospecting=10")])
    assert budgets(changed)["eu:retargeting"][0] == 20.0


@pytest.mark.parametrize("change, message", [
    (Change("budget", "gadgets=x2"), "'gadgets' matches several campaigns: gadgets-in-market, gadgets-cpc"),
    (Change("budget", "nope=x2"), "no campaign 'nope'; the scenario has sneakers-retargeting"),
    (Change("budget", "prospecting=-100%"), "leaves a budget of 0"),
    (Change("budget", "prospecting=lots"), "is not a budget change"),
    (Change("budget", "prospecting"), "expected TARGET=VALUE"),
    (Change("budget", "prospecting=x1e12"), "campaigns[1].budget"),
    (Change("daily-budget", "prospecting=x2"), "has no daily budget to change"),
    (Change("move", "prospecting:retargeting=100%"), "less than the whole"),
    (Change("move", "prospecting:prospecting=10%"), "to itself"),
    (Change("move", "prospecting=10%"), "expected FROM:TO=AMOUNT"),
    (Change("move", "prospecting:retargeting=-10%"), "has no sign"),
    (Change("set", "dmp.consent_rat=0.6"), "dmp.consent_rat: dmp has no field 'consent_rat'"),
    (Change("set", "dmp.consent_rate=2"), "dmp.consent_rate: Input should be less than or equal to 1"),
    (Change("set", "exchange.auction=third"), "exchange.auction"),
    (Change("set", "campaigns.nobody.budget=5"), "campaigns.nobody: campaigns has no item 'nobody'"),
    (Change("set", "dmp.users.more=5"), "dmp.users: is a value, not a table"),
    (Change("set", "publishers.99.category=x"), "publishers.99: publishers has 6 items"),
    (Change("set", "dmp.consent_rate.DE=0.4"),
     "dmp.consent_rate.DE: 'DE' is not a geo of dmp.geos; dmp.consent_rate by geo takes US, CA"),
    (Change("set", "dmp.consent_rate.CA=1.5"), "dmp.consent_rate.CA: Input should be less than or equal to 1"),
])
def test_bad_changes_name_the_change_the_field_and_the_problem(spec, change, message):
    with pytest.raises(InputError) as exc:
        apply_changes(spec, [change])
    text = str(exc.value)
    assert text.startswith(f"command line: --{change.kind} {change.text}")
    assert message in text


def test_set_reaches_any_field_by_path(spec):
    changed = apply_changes(spec, [
        Change("set", "dmp.consent_rate=0.6"),
        Change("set", "exchange.auction=first"),  # a bare word is a string
        Change("set", "campaigns.retargeting.frequency_cap.impressions=5"),
        Change("set", "campaigns.mealkit-video.frequency_cap={ impressions = 2, window = \"6h\" }"),
        Change("set", "publishers.daily-news.slots.top-banner.floor_cpm=2.5"),
        Change("set", "publishers.1.domain=\"sports.example\""),
        Change("set", "simulation.tick=2m"),
    ])
    assert changed.dmp.consent_rate == 0.6 and changed.exchange.auction == "first"
    assert changed.campaigns[0].frequency_cap.impressions == 5
    assert changed.campaigns[3].frequency_cap.window == 6 * 3600.0
    assert changed.publishers[0].slots[0].floor_cpm == 2.5
    assert changed.publishers[1].domain == "sports.example"
    assert changed.simulation.tick == 120.0
    assert spec.dmp.consent_rate == 0.75  # the scenario itself is untouched


def test_a_geo_of_a_single_consent_rate_makes_it_a_table_over_every_geo(spec):
    """The quickstart gives one rate (0.75) for US and CA: setting CA's makes the
    table { US = 0.75, CA = 0.4 }; a second geo set afterwards edits that table."""
    assert spec.dmp.consent_rate == 0.75
    changed = apply_changes(spec, [Change("set", "dmp.consent_rate.CA=0.4")])
    assert changed.dmp.consent_rate == {"US": 0.75, "CA": 0.4}
    assert changed.dmp.consent_by_geo() == [0.75, 0.4]
    both = apply_changes(spec, [Change("set", "dmp.consent_rate.CA=0.4"),
                                Change("set", "dmp.consent_rate.US=0.9")])
    assert both.dmp.consent_rate == {"US": 0.9, "CA": 0.4}
    table = apply_changes(spec, [Change("set", "dmp.consent_rate={ US = 0.5, CA = 0.5 }"),
                                 Change("set", "dmp.consent_rate.US=0.2")])
    assert table.dmp.consent_rate == {"US": 0.2, "CA": 0.5}
    assert spec.dmp.consent_rate == 0.75  # the scenario itself is untouched


def test_values_read_as_toml_else_as_text():
    assert parse_value("0.6") == 0.6 and parse_value("true") is True
    assert parse_value("[1, 2]") == [1, 2] and parse_value("first") == "first"
    assert parse_value('"6h"') == "6h" and parse_value("{ a = 1 }") == {"a": 1}


def test_plan_file_variants(tmp_path, spec):
    path = tmp_path / "plan.toml"
    path.write_text('[[variants]]\nname = "more-retargeting"\nmove = ["prospecting:retargeting=30%"]\n'
                    '[[variants]]\nname = "consent-60"\nset = { "dmp.consent_rate" = 0.6,'
                    ' "exchange.auction" = "first" }\nbudget = ["gadgets-cpc=x0.5"]\n'
                    '[[variants]]\nname = "caps"\nset = ["campaigns.retargeting.frequency_cap.impressions=5"]\n')
    variants = load_plan(path)
    assert [v.name for v in variants] == ["more-retargeting", "consent-60", "caps"]
    assert [str(c) for c in variants[1].changes] == [
        "budget gadgets-cpc=x0.5", "set dmp.consent_rate=0.6", 'set exchange.auction="first"']
    changed = apply_changes(spec, variants[1].changes, f"{path}: variant consent-60")
    assert changed.exchange.auction == "first" and budgets(changed)["gadgets-cpc"][0] == 250.0


@pytest.mark.parametrize("text, message", [
    ('[[variants]]\nname = "current"\n', "variants.0.name: 'current' is the scenario as written"),
    ('[[variants]]\nname = "a"\n[[variants]]\nname = "a"\n', "variants.1.name: duplicate name 'a'"),
    ('[[variants]]\nname = "a"\nbudgets = ["x=1"]\n', "variants.0.budgets: Extra inputs"),
    ('[[variants]]\nname = "../up"\n', "variants.0.name: String should match pattern"),
    ("variants = [", "invalid TOML"),
    ("", "variants: Field required"),
])
def test_bad_plan_files_name_the_file_and_field(tmp_path, text, message):
    path = tmp_path / "plan.toml"
    path.write_text(text)
    with pytest.raises(InputError) as exc:
        load_plan(path)
    assert str(exc.value).startswith(str(path)) and message in str(exc.value)
