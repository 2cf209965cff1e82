"""rtb plan: variants against current on the same seeds, intervals, the next dollar."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import rtb.sweep as sw
from rtb.changes import CURRENT, variant_from_options
from rtb.cli import app
from rtb.engine import simulate
from rtb.plan import MIN_EVENTS, PLAN_FILE, run_plan
from markets import interrupt_run_at

SEEDS = [1, 2]
SAME = variant_from_options("same", [], [], [], ["dmp.consent_rate=0.75"])  # as written
SMALL_CPC = variant_from_options("small-cpc", ["gadgets-cpc=5"], [], [], [])


@pytest.fixture(scope="module")
def planned(two_hour_spec, tmp_path_factory):
    out = tmp_path_factory.mktemp("plan")
    summary = run_plan(two_hour_spec, [SAME, SMALL_CPC], SEEDS, out, marginal_step=0.2)
    return summary, out


def variant(summary: dict, name: str) -> dict:
    return next(v for v in summary["variants"] if v["name"] == name)


def test_current_is_the_scenario_as_run_and_its_figures_are_the_seed_means(planned, two_hour_spec):
    summary, out = planned
    assert [v["name"] for v in summary["variants"]] == [CURRENT, "same", "small-cpc"]
    assert summary["seeds"] == SEEDS and summary["missing_seeds"] == []
    assert summary["currency"] == "USD"
    reports = [simulate(two_hour_spec, seed) for seed in SEEDS]
    for seed, report in zip(SEEDS, reports):
        assert (out / CURRENT / sw.SweepRun(1.0, seed).file_name).read_bytes() == report.to_json()
    current = variant(summary, CURRENT)
    for k, campaign in enumerate(current["campaigns"]):
        spend = [r.to_dict()["campaigns"][k]["spend"] for r in reports]
        assert campaign["spend"]["mean"] == pytest.approx(sum(spend) / 2, abs=1e-6)
        if spend[0] != spend[1]:  # two seeds: t(0.975, 1 df) = 12.706 times the standard error
            half = 12.706 * abs(spend[0] - spend[1]) / 2
            assert campaign["spend"]["high"] - campaign["spend"]["mean"] == pytest.approx(half, rel=1e-3)
        assert "vs_current" not in campaign["spend"]
    assert json.loads((out / PLAN_FILE).read_bytes()) == summary


def test_a_variant_that_changes_nothing_differs_by_exactly_zero(planned):
    summary, _ = planned
    same = variant(summary, "same")
    for row in same["campaigns"] + [same["totals"]]:
        for name, figure in row.items():
            if isinstance(figure, dict) and figure.get("mean") is not None:
                # (no interval where only one seed has the figure: a CPA needs a conversion)
                assert figure["vs_current"]["mean"] in (0.0, None), name
                assert figure["vs_current"]["low"] in (0.0, None), name
                assert figure["vs_current"]["high"] in (0.0, None), name


def test_a_budget_change_shows_as_a_paired_difference(planned):
    summary, _ = planned
    small = variant(summary, "small-cpc")
    assert small["changes"] == ["budget gadgets-cpc=5"]
    cpc = next(c for c in small["campaigns"] if c["id"] == "gadgets-cpc")
    assert cpc["budget"]["vs_current"] == {"mean": -495.0, "low": -495.0, "high": -495.0}
    assert small["totals"]["budget"]["vs_current"]["mean"] == -495.0
    assert cpc["spend"]["vs_current"]["mean"] < 0  # it spent more than 5 before


def test_romi_and_cpa_on_too_few_conversions_are_flagged(planned):
    summary, _ = planned
    flagged = 0
    for v in summary["variants"]:
        for row in v["campaigns"] + [v["totals"]]:
            few = row["conversions"]["mean"] < MIN_EVENTS
            assert row["romi"].get("too_few", False) == few
            assert row["cpa"].get("too_few", False) == few
            assert row["incremental_romi"].get("too_few", False) == \
                (row["incremental_conversions"]["mean"] < MIN_EVENTS)
            flagged += few
    assert flagged > 0  # two hours of the quickstart: most campaigns have few conversions


def test_the_next_dollar_ranks_every_campaign(planned, two_hour_spec):
    summary, _ = planned
    marginal = summary["marginal"]
    assert marginal["step"] == 0.2
    rows = marginal["campaigns"]
    assert sorted(r["id"] for r in rows) == sorted(c.id for c in two_hour_spec.campaigns)
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    # Those that spend most of the extra budget first, each group best first.
    spends = [r["spent_share"]["mean"] >= 0.5 for r in rows]
    assert spends == sorted(spends, reverse=True)
    for group in (True, False):
        means = [r["incremental_romi"]["mean"] for r, s in zip(rows, spends) if s == group]
        assert means == sorted(means, reverse=True)
    assert marginal["advice"].startswith(("Put the next 100 USD into", "No campaign"))
    budgets = {c.id: c.budget for c in two_hour_spec.campaigns}
    for r in rows:
        assert r["extra_budget"] == pytest.approx(0.2 * budgets[r["id"]], abs=1e-6)
        assert r["conversions_per_100"]["mean"] == pytest.approx(
            r["conversions"]["mean"] * 100 / r["extra_budget"], abs=1e-5)
        assert -0.01 <= r["spent_share"]["mean"] <= 1.01


def test_a_second_call_runs_nothing_and_gives_the_same_plan(planned, two_hour_spec, monkeypatch):
    summary, out = planned
    before = (out / PLAN_FILE).read_bytes()
    monkeypatch.setattr(sw, "run_one", lambda *a: pytest.fail("ran again"))
    assert run_plan(two_hour_spec, [SAME, SMALL_CPC], SEEDS, out, marginal_step=0.2) == summary
    assert (out / PLAN_FILE).read_bytes() == before


def test_ctrl_c_keeps_finished_runs_and_the_plan_covers_complete_seeds(two_hour_spec, tmp_path,
                                                                        monkeypatch):
    real = sw.run_one
    calls = interrupt_run_at(monkeypatch, 4)
    with pytest.raises(sw.SweepInterrupted) as stop:
        run_plan(two_hour_spec, [SMALL_CPC], SEEDS, tmp_path)
    assert (stop.value.done, stop.value.total) == (3, 4)
    partial = json.loads((tmp_path / PLAN_FILE).read_bytes())
    assert partial["seeds"] == [1] and partial["missing_seeds"] == [2]
    monkeypatch.setattr(sw, "run_one", lambda *a: calls.append(a[1]) or real(*a))
    assert run_plan(two_hour_spec, [SMALL_CPC], SEEDS, tmp_path)["seeds"] == SEEDS
    assert calls[4:] == [sw.SweepRun(1.0, 2)]


# ---- the command ------------------------------------------------------------------------

def plan_cli(*args) -> object:
    return CliRunner().invoke(app, ["plan", *map(str, args)])


def test_cli_plan_prints_every_variant_and_writes_plan_json(planned, two_hour_scenario):
    summary, out = planned
    result = plan_cli(two_hour_scenario, "--out-dir", out, "--seeds", "1,2", "--budget",
                      "gadgets-cpc=5", "--quiet", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "scenario: budget gadgets-cpc=5" in result.output
    written = json.loads((out / PLAN_FILE).read_bytes())
    assert [v["name"] for v in written["variants"]] == [CURRENT, "scenario"]
    # The same runs as the small-cpc variant: a name is not part of what is run.
    assert variant(written, "scenario")["totals"] == variant(summary, "small-cpc")["totals"]


@pytest.mark.parametrize("args, message", [
    (["--budget", "nope=x2"], "command line: --budget nope=x2: no campaign 'nope'"),
    (["--set", "dmp.consent_rate=2"], "--set dmp.consent_rate=2: dmp.consent_rate: Input should be"),
    (["--move", "prospecting:retargeting=150%"], "less than the whole"),
    (["--seeds", "3"], "--seeds: needs two seeds or more"),
    (["--marginal", "--step", "0"], "--step: 0 must be more than 0 %"),
    (["--html", "page.txt"], "--html: a page is a .html or .htm file"),
])
def test_cli_plan_bad_input_exits_2_naming_it_and_writes_nothing(two_hour_scenario, tmp_path, args,
                                                                   message):
    out = tmp_path / "out"
    result = plan_cli(two_hour_scenario, "--out-dir", out, "--quiet", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists() or not any(out.rglob("*.json"))


def test_cli_plan_file_errors_name_the_file(two_hour_scenario, tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text('[[variants]]\nname = "x"\nset = { "dmp.users" = 0 }\n')
    result = plan_cli(two_hour_scenario, "--out-dir", tmp_path / "out", "--plan", plan, "--quiet")
    assert result.exit_code == 2
    assert f"{plan}: variant x: set dmp.users=0: dmp.users: Input should be greater than" in result.output
