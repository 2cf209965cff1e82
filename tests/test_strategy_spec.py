"""rtb.strategy_spec: one model and one parser for scenarios, rtb compare and rtb replay."""

from __future__ import annotations

import pytest

from dsp.strategies import ConstantBid, LinearBid, McpcBid, OrtbBid, RandomBid, ValueBid, from_spec
from rtb.errors import InputError
from rtb.strategy_spec import (DeprecatedSpelling, FixedBidSpec, LinearBidSpec, McpcBidSpec,
                               OrtbBidSpec, RandomBidSpec, ValueBidSpec, parse_strategy, short_form,
                               strategy_data)

# (short form, TOML inline table, the model both give)
FORMS = [
    ("fixed:bid_cpm=2.5", '{ kind = "fixed", bid_cpm = 2.5 }', FixedBidSpec(kind="fixed", bid_cpm=2.5)),
    ("linear:base_cpm=80,avg_ctr=0.001", '{ kind = "linear", base_cpm = 80, avg_ctr = 0.001 }',
     LinearBidSpec(kind="linear", base_cpm=80, avg_ctr=0.001)),
    ("value:shading=0.7", '{ kind = "value", shading = 0.7 }', ValueBidSpec(kind="value", shading=0.7)),
    ("value", '{ kind = "value" }', ValueBidSpec(kind="value")),
    ("mcpc:target_cpc=0.8", '{ kind = "mcpc", target_cpc = 0.8 }',
     McpcBidSpec(kind="mcpc", target_cpc=0.8)),
    ("ortb:c=50,lam=5.2e-7", '{ kind = "ortb", c = 50, lam = 5.2e-7 }',
     OrtbBidSpec(kind="ortb", c=50, lam=5.2e-7)),
    ("random:max_cpm=300", '{ kind = "random", max_cpm = 300 }',
     RandomBidSpec(kind="random", max_cpm=300)),
]


@pytest.mark.parametrize("short, table, model", FORMS)
def test_both_forms_give_the_same_model(short, table, model):
    assert parse_strategy(short, "--strategy") == model
    assert parse_strategy(table, "--strategy") == model
    assert parse_strategy(f"  {short} ", "--strategy") == model
    # The canonical short form reads back to the same model.
    assert parse_strategy(short_form(model), "--strategy") == model


@pytest.mark.parametrize("old, new", [
    ("lin:b0=80,avg_ctr=0.001", "linear:base_cpm=80,avg_ctr=0.001"),
    ("linear:b0=80,avg_ctr=0.001", "linear:base_cpm=80,avg_ctr=0.001"),
    ("const:bid=3", "fixed:bid_cpm=3"),
    ("rand:max=300", "random:max_cpm=300"),
    ("ortb:c=50,lambda=5.2e-7", "ortb:c=50,lam=5.2e-7"),
])
def test_old_replay_spellings_are_deprecated_aliases(old, new):
    with pytest.warns(DeprecatedSpelling, match=r"deprecated names .*\(now .*\); they go in the next"):
        spec = parse_strategy(old, "--strategy")
    assert spec == parse_strategy(new, "--strategy")


def test_aliases_belong_to_the_short_form_only():
    with pytest.raises(InputError) as bad:
        parse_strategy('{ kind = "lin", b0 = 80 }', "--strategy")
    assert bad.value.lines() == ["command line: --strategy: unknown strategy kind 'lin'; expected one"
                                 " of fixed, linear, value, mcpc, ortb, random, shaded, budget_ortb, python"]


@pytest.mark.parametrize("text, field, words", [
    ("fixed:bid_cpm=-1", "--strategy.bid_cpm", "greater than or equal to 0"),
    ('{ kind = "fixed", bid_cpm = -1 }', "--strategy.bid_cpm", "greater than or equal to 0"),
    ("fixed:bid_cpm=abc", "--strategy.bid_cpm", "valid number"),
    ("fixed:bid_cpm=2e6", "--strategy.bid_cpm", "less than or equal to 1000000"),
    ("fixed", "--strategy.bid_cpm", "Field required"),
    ("fixed:bid_cpm", "--strategy", "expected NAME=VALUE"),
    ("fixed:bid_cpm=1,bid=2", "--strategy", "bid_cpm: given twice"),
    ("fixed:bid_cpm=1,price=2", "--strategy.price", "unknown parameter of 'fixed'; it takes bid_cpm"),
    ('{ kind = "value", shading = 0 }', "--strategy.shading", "greater than 0"),
    ("value:shading=0.5,x=1", "--strategy.x", "unknown parameter of 'value'; it takes shading"),
    ("ortb:c=1", "--strategy.lam", "Field required"),
    ("magic:x=1", "--strategy", "unknown strategy kind 'magic'; expected one of fixed, linear"),
    ('{ kind = "magic" }', "--strategy", "unknown strategy kind 'magic'"),
    ("{ bid_cpm = 1 }", "--strategy", "missing kind"),
    ("{ kind = ", "--strategy", "not a TOML inline table"),
    ('{ kind = "fixed", bid_cpm = 1 }\nbid = 2', "--strategy", "not one TOML inline table"),
    ("", "--strategy", "unknown strategy kind ''"),
    # What only rtb replay can derive, a scenario (and so rtb compare) must give.
    ("linear:base_cpm=80", "--strategy.avg_ctr", "required: only rtb replay may leave avg_ctr out"),
    ('{ kind = "mcpc" }', "--strategy.target_cpc", "required: only rtb replay may leave target_cpc"),
])
def test_bad_input_names_the_field_and_the_problem(text, field, words):
    with pytest.raises(InputError) as bad:
        parse_strategy(text, "--strategy")
    problems = dict(bad.value.problems)
    assert bad.value.file == "command line" and field in problems, bad.value.problems
    assert words in problems[field]
    assert f"command line: {field}: {problems[field]}" in bad.value.lines()


def test_replay_may_leave_out_what_it_derives():
    assert parse_strategy("linear:base_cpm=80", "--strategy", require_all=False) == \
        LinearBidSpec(kind="linear", base_cpm=80)
    assert parse_strategy("mcpc", "--strategy", require_all=False) == McpcBidSpec(kind="mcpc")
    assert short_form(McpcBidSpec(kind="mcpc")) == "mcpc"


def test_strategy_data_keeps_values_as_written_for_the_model():
    assert strategy_data(" linear: base_cpm = 80 , ") == {"kind": "linear", "base_cpm": "80"}
    with pytest.raises(ValueError, match="given twice"):
        strategy_data("linear:base_cpm=1,base_cpm=2")


@pytest.mark.parametrize("short, _, model", FORMS)
def test_from_spec_builds_the_dsp_strategy(short, _, model):
    strategy = from_spec(model, value_per_conversion=90.0)
    expected = {"fixed": ConstantBid(2.5), "linear": LinearBid(80, 0.001),
                "value": ValueBid(90.0, model.shading if model.kind == "value" else 1.0),
                "mcpc": McpcBid(0.8), "ortb": OrtbBid(50, 5.2e-7), "random": RandomBid(300)}
    assert strategy == expected[model.kind]


def test_from_spec_refuses_what_is_not_set():
    with pytest.raises(ValueError, match="not set"):
        from_spec(LinearBidSpec(kind="linear", base_cpm=80))
    with pytest.raises(ValueError, match="not set"):
        from_spec(ValueBidSpec(kind="value"))  # no advertiser's value
