"""rtb.optimize: the best split of a total budget and the budget for a goal, by simulation.

The market is the two-hour quickstart cut to two campaigns whose budgets bind, with
clicks and conversions made common and quick, and one advertiser's sale worth far more
(sneakers-prospecting returns much more per unit of budget than gadgets-cpc): cheap
runs (about 0.4 s) whose right answer is known. Few seeds, scales and iterations keep
the file near 30 s.
"""

from __future__ import annotations

import math
import shutil

import orjson
import pytest

import rtb.optimize as opt
import rtb.sweep as sw
from rtb.errors import InputError
from rtb.response_curves import Curve, allocate, proportional_split
from rtb.scenario import parse_scenario
from rtb.spec_base import MAX_TOTAL_BUDGET
from rtb.sweep import Runner, SweepInterrupted
from rtb.types import OUTCOME_NAMES

RICH, POOR = "sneakers-prospecting", "gadgets-cpc"
CHEAP = dict(search_seeds=[1, 2], confirm_seeds=[11, 12, 13], scales=(0.5, 1.0, 2.0))
SPLIT_ARGS = dict(bounds={POOR: (0.5, 8.0)}, max_iterations=1, **CHEAP)


def value_market(spec):
    data = spec.model_dump(mode="json")
    budgets = {RICH: 5.0, POOR: 5.0}
    data["campaigns"] = [dict(c, budget=budgets[c["id"]]) for c in data["campaigns"]
                         if c["id"] in budgets]
    for advertiser in data["advertisers"]:
        if advertiser["id"] == "sneaker-co":
            advertiser["value_per_conversion"] = 900.0  # gadget-store's is 240, at a lower margin
    behaviour = data["behaviour"]
    behaviour["ctr"] = {"banner": 0.02, "video": 0.06, "native": 0.04}
    behaviour["cvr"] = {"banner": 0.2, "video": 0.2, "native": 0.2}
    behaviour["conversion_delay"] = 300
    return parse_scenario(data, "test market")


@pytest.fixture(scope="module")
def market(two_hour_spec):
    return value_market(two_hour_spec)


def micros(split: dict) -> int:
    return sum(round(v * 1e6) for v in split.values())


@pytest.fixture(scope="module")
def optimized(market, tmp_path_factory):
    """An optimisation interrupted by Ctrl-C after a few runs, then run to the end."""
    out = tmp_path_factory.mktemp("optimize")
    done = []
    real = sw.run_one

    def interrupted(*args):
        if len(done) == 4:
            raise KeyboardInterrupt
        done.append(args[1])
        return real(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sw, "run_one", interrupted)
        with pytest.raises(SweepInterrupted), Runner(1) as runner:
            opt.optimize_split(market, 10.0, out_dir=out, runner=runner, **SPLIT_ARGS)
    assert len(list((out / opt.EVALS_FOLDER).glob("*/scale-*.json"))) == 4  # kept
    with Runner(1) as runner:
        result = opt.optimize_split(market, 10.0, out_dir=out, runner=runner, **SPLIT_ARGS)
    return out, result


# ---- the best split ---------------------------------------------------------------------

def test_split_sums_to_the_total_within_bounds(optimized):
    out, result = optimized
    for split in (result["split"], result["current_split"], result["best_found"]["split"]):
        assert micros(split) == 10_000_000
        assert 0.5 <= split[POOR] <= 8.0 and split[RICH] > 0
    assert result["bounds"] == {RICH: [1e-06, 10.0], POOR: [0.5, 8.0]}
    assert orjson.loads((out / opt.OPTIMIZE_FILE).read_bytes()) == result
    assert [c["id"] for c in result["expected"]["campaigns"]] == [RICH, POOR]
    assert result["expected"]["totals"]["conversions"]["vs_current"]["mean"] is not None
    curve = next(c for c in result["curves"] if c["id"] == RICH)["points"]
    assert [p["budget"] for p in curve] == [2.5, 5.0, 10.0]
    assert {"mean", "low", "high"} <= curve[0]["conversions"].keys()


def test_budget_moves_to_the_campaign_that_returns_more(optimized):
    _, result = optimized
    assert result["split"][RICH] > result["current_split"][RICH] == 5.0
    assert result["found_better"] is True
    assert result["gain"]["mean"] > 0 and result["gain"]["low"] > 0  # on fresh seeds
    assert result["confirm_seeds"] == [11, 12, 13] and result["search_seeds"] == [1, 2]
    profit = result["expected"]["totals"]["revenue"]["vs_current"]["mean"]
    assert profit > 0


def test_a_second_call_runs_nothing_and_gives_the_same_bytes(optimized, market, monkeypatch):
    out, result = optimized
    before = (out / opt.OPTIMIZE_FILE).read_bytes()
    done = []
    monkeypatch.setattr(sw, "run_one", lambda *a: done.append(a[1]))
    with Runner(1) as runner:
        again = opt.optimize_split(market, 10.0, out_dir=out, runner=runner, **SPLIT_ARGS)
    assert done == []
    assert again == result and (out / opt.OPTIMIZE_FILE).read_bytes() == before
    assert again["evaluations"] == len(list((out / opt.EVALS_FOLDER).glob("*/scale-*.json")))


def test_a_proposal_worse_on_fresh_seeds_is_not_recommended(optimized, market, tmp_path,
                                                              monkeypatch):
    out, _ = optimized
    shutil.copytree(out, tmp_path / "out")
    bad = (2_000_000, 8_000_000)  # most of the money on the poorer campaign
    monkeypatch.setattr(opt, "search_split", lambda *a, **k: bad)
    with Runner(1) as runner:
        result = opt.optimize_split(market, 10.0, out_dir=tmp_path / "out", runner=runner,
                                    **SPLIT_ARGS)
    assert result["found_better"] is False
    assert result["split"] == result["current_split"] == {RICH: 5.0, POOR: 5.0}
    assert result["gain"]["mean"] == 0
    assert result["best_found"]["split"] == {RICH: 2.0, POOR: 8.0}
    assert result["best_found"]["gain"]["mean"] < 0


def test_fit_and_allocation_keep_the_total_and_the_bounds():
    low, high = (1, 2_000_000, 1), (10_000_000, 3_000_000, 10_000_000)
    split = proportional_split((5_000_000, 1_000_000, 3), low, high, 7_777_777)
    assert sum(split) == 7_777_777 and split[1] == 2_000_000
    assert all(lo <= x <= hi for x, lo, hi in zip(split, low, high))

    class Goal:  # what allocate reads of the problem
        pass

    goal = Goal()
    goal.low, goal.high = low, high
    curves = [{"curve": Curve([(1.0, 1.0), (2.0, 1.5), (4.0, 1.6)])},  # saturates
              {"curve": Curve([(1.0, 3.0), (4.0, 12.0)])},  # best, but bounded
              {"curve": Curve([(1.0, -1.0), (3.0, -2.0)])}]  # loses money
    split = allocate(curves, goal, 6_000_000, (2_000_000, 2_000_000, 2_000_000))
    assert sum(split) == 6_000_000
    assert split[1] == 3_000_000 and split[2] == 1 and split[0] == 6_000_000 - 3_000_001
    curve = Curve([(1.0, 1.0), (2.0, 1.1), (3.0, 3.0)])  # the envelope is concave
    assert curve(2.0) == pytest.approx(2.0) and curve(10.0) == pytest.approx(3.0)


# ---- the budget for a goal ----------------------------------------------------------------

def test_a_goal_beyond_reach_says_how_far_and_why(market, tmp_path):
    with Runner(1) as runner:
        result = opt.budget_for_goal(market, 1_000_000, out_dir=tmp_path, runner=runner, **CHEAP)
    goal = result["goal"]
    assert result["reachable"] is goal["reachable"] is False
    assert result["reason"] == goal["reason"]
    assert any(name in goal["reason"] for name in OUTCOME_NAMES), goal["reason"]
    assert goal["reason"].startswith("At most ") and "%" in goal["reason"]
    most = goal["most"]
    assert 0 < most["conversions"]["mean"] < 1_000_000 and most["conversions"]["low"] is not None
    assert most["budget"] == 1000.0  # budgets a hundred times the current: they do not bind
    assert most["spend"]["mean"] < 100
    assert result["objective"] == "conversions" and micros(result["split"]) == 1_000_000_000


@pytest.fixture(scope="module")
def modest(market, tmp_path_factory):
    out = tmp_path_factory.mktemp("goal")
    shown = []
    with Runner(1) as runner:
        result = opt.budget_for_goal(market, 60, min_romi=1.0, out_dir=out, runner=runner,
                                     rounds=2, progress=shown.append, **CHEAP)
    assert shown == sorted(shown) and shown[-1] == 1.0 and len(shown) > 5
    return out, result


def test_a_modest_goal_is_reached_with_its_budget(modest):
    _, result = modest
    goal = result["goal"]
    assert result["reachable"] is goal["reachable"] is True, goal["reason"]
    assert result["expected"]["totals"]["conversions"]["mean"] >= 60
    assert result["expected"]["totals"]["romi"]["mean"] >= 1.0
    assert micros(result["split"]) == round(result["total_budget"] * 1e6)
    assert 10.0 < result["total_budget"] < 1000.0  # more than now, less than unbound
    assert f"{result['total_budget']:,.2f} USD" in goal["reason"]
    assert goal["most"]["conversions"]["mean"] > 60


def test_a_goal_whose_romi_floor_binds_first(modest, market, tmp_path):
    out, _ = modest
    shutil.copytree(out, tmp_path / "out")
    with Runner(1) as runner:
        result = opt.budget_for_goal(market, 60, min_romi=2000.0, out_dir=tmp_path / "out",
                                     runner=runner, rounds=2, **CHEAP)
    goal = result["goal"]
    assert goal["reachable"] is False
    assert "ROMI falls below +200000% before the target" in goal["reason"], goal["reason"]
    assert goal["most"]["conversions"]["mean"] < 60


def test_a_goal_beyond_the_total_allowed_says_the_budget_binds(modest, market, tmp_path):
    out, _ = modest
    shutil.copytree(out, tmp_path / "out")
    with Runner(1) as runner:
        result = opt.budget_for_goal(market, 100, max_total_budget=8.0, out_dir=tmp_path / "out",
                                     runner=runner, **CHEAP)
    assert result["reachable"] is False and result["total_budget"] == 8.0
    assert micros(result["split"]) == 8_000_000
    assert "the total budget allowed, 8.00 USD, binds" in result["reason"], result["reason"]
    assert "out_of_budget" in result["reason"]


# ---- input -------------------------------------------------------------------------------

@pytest.mark.parametrize("total, bounds, option, message", [
    (10.0, {"no-such": (1, 2)}, "--bounds", "no campaign 'no-such'"),
    (10.0, {RICH: (3, 2)}, "--bounds", "the minimum 3.00 is more than the maximum 2.00"),
    (10.0, {RICH: (6, 9), POOR: (5, 9)}, "--bounds", "add up to 11.00, more than the total"),
    (10.0, {RICH: (0, 2), POOR: (0, 3)}, "--bounds", "add up to 5.00, less than the total"),
    (10.0, {RICH: (math.nan, 2)}, "--bounds", "not a budget"),
    (10.0, {RICH: (1, 2), "sneakers": (1, 2)}, "--bounds", "both name campaign"),
    (0.0, {}, "--total-budget", "must be more than 0"),
    (-5.0, {}, "--total-budget", "must be more than 0"),
    (math.inf, {}, "--total-budget", "finite"),
    (MAX_TOTAL_BUDGET * 2, {}, "--total-budget", "more than the most"),
])
def test_bad_bounds_and_totals_are_input_errors(market, tmp_path, total, bounds, option, message):
    with pytest.raises(InputError) as info, Runner(1) as runner:
        opt.optimize_split(market, total, bounds=bounds, out_dir=tmp_path, runner=runner)
    (field, problem), = info.value.problems
    assert info.value.file == "command line" and field == option and message in problem, problem
    assert not (tmp_path / opt.EVALS_FOLDER).exists()


def test_bad_objective_seeds_and_goal_are_input_errors(market, tmp_path):
    with Runner(1) as runner:
        for call, option in [
            (lambda: opt.optimize_split(market, 10, objective="clicks", out_dir=tmp_path,
                                        runner=runner), "--objective"),
            (lambda: opt.optimize_split(market, 10, search_seeds=[1, 2], confirm_seeds=[2, 3],
                                        out_dir=tmp_path, runner=runner), "--seeds"),
            (lambda: opt.budget_for_goal(market, 0, out_dir=tmp_path, runner=runner),
             "--target-conversions"),
            (lambda: opt.budget_for_goal(market, 10, min_romi=-2, out_dir=tmp_path,
                                         runner=runner), "--min-romi"),
        ]:
            with pytest.raises(InputError) as info:
                call()
            assert info.value.problems[0][0] == option


def test_bounds_options_parse_to_pairs():
    assert opt.parse_bounds(["a:b=1:2", "c=:500", "d=100:"]) == {
        "a:b": (1.0, 2.0), "c": (0.0, 500.0), "d": (100.0, math.inf)}
    for text in ["c=1", "=1:2", "c=x:2", "c=1:2:3", "c"]:
        with pytest.raises(InputError) as info:
            opt.parse_bounds([text])
        assert info.value.problems[0][0] == "--bounds"
    with pytest.raises(InputError, match="bounded twice"):
        opt.parse_bounds(["c=1:2", "c=2:3"])


# ---- the command ------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--objective", "clicks"], "--objective: 'clicks' is not one of profit, conversions, revenue"),
    (["--min-romi", "20%"], "--min-romi: goes with --target-conversions"),
    (["--bounds", "gadgets-cpc=5"], "--bounds: expected CAMPAIGN=MIN:MAX"),
    (["--bounds", "nobody=1:2"], "nobody"),
    (["--total-budget", "-5"], "--total-budget"),
    (["--seeds", "1"], "--seeds: needs two seeds or more"),
    (["--target-conversions", "10", "--min-romi", "lots"], "--min-romi: 'lots' is not a share"),
    (["--html", "page.png"], "--html: a page is a .html or .htm file"),
])
def test_cli_optimize_bad_input_exits_2_naming_it(two_hour_scenario, tmp_path, args, message):
    from typer.testing import CliRunner

    from rtb.cli import app

    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["optimize", str(two_hour_scenario), "--out-dir", str(out),
                                      "--quiet", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not any(out.rglob("*.json")) if out.exists() else True
