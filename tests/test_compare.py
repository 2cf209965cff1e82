"""rtb compare: one campaign's strategies on the same traffic, paired differences."""

from __future__ import annotations

import json
import math

import pytest

import rtb.compare as cmp
import rtb.sweep as sw
from rtb.engine import simulate
from rtb.errors import InputError
from rtb.strategy_spec import DeprecatedSpelling, parse_strategy
from test_cli import rtb
from markets import interrupt_run_at

CAMPAIGN = "sneakers-prospecting"  # a fixed 2.20 CPM bid in the quickstart
OWN = {"kind": "fixed", "bid_cpm": 2.2}
HIGHER = {"kind": "fixed", "bid_cpm": 3.0}


# Student's t 0.975 quantiles for 1-30 degrees of freedom, as printed in the standard tables.
T975_TABLE = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201,
              2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074,
              2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


@pytest.mark.parametrize("pairs", [2, 3, 4, 11, 31, 1001])
def test_interval_half_width_is_the_tables_t_times_the_standard_error(pairs):
    # Differences alternating 0 and 1 (and a last 0 when odd): a known sample sd.
    diffs = [k % 2 for k in range(pairs)]
    d = cmp.paired_difference(diffs, [0] * pairs)
    mean = sum(diffs) / pairs
    sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / (pairs - 1))
    t = (d["ci95"][1] - d["ci95"][0]) / 2 / (sd / math.sqrt(pairs))
    table = T975_TABLE[pairs - 2] if pairs - 1 <= len(T975_TABLE) else 1.96
    assert t == pytest.approx(table, abs=0.0006 if pairs - 1 <= len(T975_TABLE) else 0.003)
    assert d["mean"] == pytest.approx(mean, abs=1e-6) and d["pairs"] == pairs


def test_paired_difference_by_hand():
    d = cmp.paired_difference([3, 5, 10, None], [1, 2, 4, 7])
    # Differences 2, 3, 6: mean 11/3, sample sd sqrt(13/3); with 2 degrees of freedom
    # t's quantile has a closed form: (2p - 1) / sqrt(2p(1 - p)) = 4.302653 at p = 0.975.
    t = 0.95 / math.sqrt(2 * 0.975 * 0.025)
    half = t * math.sqrt(13 / 3) / math.sqrt(3)
    assert d["pairs"] == 3 and d["mean"] == pytest.approx(11 / 3, abs=1e-6)
    assert d["ci95"] == pytest.approx([11 / 3 - half, 11 / 3 + half], abs=1e-6)
    assert cmp.paired_difference([1.0], [0.5]) == {"mean": 0.5, "ci95": None, "pairs": 1}
    assert cmp.paired_difference([None], [1.0]) == {"mean": None, "ci95": None, "pairs": 0}


def test_equal_differences_give_a_point_interval_without_a_warning(recwarn):
    assert cmp.paired_difference([3.0, 5.0, 7.5], [1.0, 3.0, 5.5]) == {
        "mean": 2.0, "ci95": [2.0, 2.0], "pairs": 3}
    assert cmp.paired_difference([1, 2], [1, 2]) == {"mean": 0.0, "ci95": [0.0, 0.0], "pairs": 2}
    assert not recwarn.list


def test_same_traffic_for_every_strategy(two_hour_spec, tmp_path):
    seeds = [1, 2]
    summary = cmp.compare(two_hour_spec, CAMPAIGN, [OWN, HIGHER], seeds, tmp_path, workers=2)
    assert summary == json.loads((tmp_path / cmp.SUMMARY_FILE).read_bytes())
    assert summary["seeds"] == seeds and summary["missing_seeds"] == []
    assert summary["currency"] == "USD"
    run_name = {seed: sw.SweepRun(1.0, seed).file_name for seed in seeds}
    # The baseline is the scenario as it is: the runs are rtb run's reports.
    for seed in seeds:
        expected = simulate(two_hour_spec, seed).to_json()
        assert (tmp_path / "baseline" / run_name[seed]).read_bytes() == expected
    # The scenario's own strategy, run again as a contender, differs by exactly nothing:
    # the same requests, users and outcomes.
    same, higher = summary["differences"]
    assert same["strategy"] == "strategy-1" and higher["strategy"] == "strategy-2"
    for metric in cmp.METRICS:
        assert same[metric]["mean"] in (0.0, None), metric
        assert same[metric]["ci95"] in ([0.0, 0.0], None), metric
    # A higher fixed bid: each difference is the mean of the per-seed report differences.
    def campaign(folder, seed):
        report = json.loads((tmp_path / folder / run_name[seed]).read_bytes())
        return next(c for c in report["campaigns"] if c["id"] == CAMPAIGN)

    diffs = [campaign("strategy-2", s)["impressions"] - campaign("baseline", s)["impressions"]
             for s in seeds]
    assert higher["impressions"]["mean"] == pytest.approx(sum(diffs) / 2)
    assert higher["impressions"]["pairs"] == 2
    assert summary["strategies"][2]["strategy"]["bid_cpm"] == 3.0


def test_ctrl_c_keeps_finished_runs_and_the_summary_covers_complete_seeds(two_hour_spec, tmp_path,
                                                                           monkeypatch):
    real = sw.run_one
    calls = interrupt_run_at(monkeypatch, 4)
    with pytest.raises(sw.SweepInterrupted) as stop:
        cmp.compare(two_hour_spec, CAMPAIGN, [HIGHER], [3, 4], tmp_path)
    assert (stop.value.done, stop.value.total) == (3, 4)
    summary = json.loads((tmp_path / cmp.SUMMARY_FILE).read_bytes())
    assert summary["seeds"] == [3] and summary["missing_seeds"] == [4]
    # The same call does only the missing run.
    monkeypatch.setattr(sw, "run_one", lambda *a: calls.append(a[1]) or real(*a))
    summary = cmp.compare(two_hour_spec, CAMPAIGN, [HIGHER], [3, 4], tmp_path)
    assert calls[4:] == [sw.SweepRun(1.0, 4)] and summary["seeds"] == [3, 4]


def test_bad_strategy_or_campaign_names_the_option(two_hour_spec):
    with pytest.raises(InputError) as bad:
        parse_strategy('{ kind = "value", shading = 0 }', "--strategy 1")
    assert bad.value.lines() == ["command line: --strategy 1.shading: Input should be greater"
                                 " than 0"]
    with pytest.raises(InputError, match="--strategy 1: unknown strategy kind 'kind = value'"):
        parse_strategy("kind = value", "--strategy 1")
    with pytest.raises(InputError, match="--campaign: no campaign 'nope'; the scenario has"):
        cmp.with_strategy(two_hour_spec, "nope", OWN)


@pytest.mark.parametrize("strategy", [
    "linear:base_cpm=2,avg_ctr=0.002",
    '{ kind = "linear", base_cpm = 2, avg_ctr = 0.002 }',
    {"kind": "linear", "base_cpm": 2.0, "avg_ctr": 0.002},
    parse_strategy("linear:base_cpm=2,avg_ctr=0.002", "--strategy 1"),
])
def test_every_form_of_a_strategy_gives_the_same_variant(two_hour_spec, strategy):
    variant = cmp.with_strategy(two_hour_spec, CAMPAIGN, strategy)
    expected = cmp.with_strategy(two_hour_spec, CAMPAIGN, {"kind": "linear", "base_cpm": 2.0,
                                                           "avg_ctr": 0.002})
    assert variant == expected
    assert variant.campaigns[1].strategy.model_dump() == {"kind": "linear", "base_cpm": 2.0,
                                                          "avg_ctr": 0.002}


def test_a_strategy_without_what_only_replay_derives_is_refused(two_hour_spec):
    with pytest.raises(InputError) as bad:
        cmp.with_strategy(two_hour_spec, CAMPAIGN, {"kind": "mcpc"})
    assert bad.value.lines() == ["command line: campaigns[1].strategy.target_cpc: required: only"
                                 " rtb replay may leave target_cpc out (it derives it from the"
                                 " log's training data)"]
    with pytest.warns(DeprecatedSpelling), pytest.raises(InputError, match="avg_ctr: required"):
        parse_strategy("lin:b0=2", "--strategy 1")


def test_cli_compare_prints_the_differences(two_hour_scenario, tmp_path):
    out = tmp_path / "strategies"
    proc = rtb("compare", two_hour_scenario, "--campaign", CAMPAIGN,
               "--strategy", '{ kind = "fixed", bid_cpm = 3.0 }', "--seeds", "1,2",
               "--out-dir", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "strategies on the same traffic, as written, 2 seeds; money in USD" in proc.stdout
    assert "bid_cpm = 3.0" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["baseline", cmp.SUMMARY_FILE, "strategy-1"]
    # The same strategy in the short form (an old spelling, too) is the same comparison:
    # nothing to run again, the same summary.
    summary = (out / cmp.SUMMARY_FILE).read_bytes()
    for short in ("fixed:bid_cpm=3", "const:bid=3"):
        proc = rtb("compare", two_hour_scenario, "--campaign", CAMPAIGN, "--strategy", short,
                   "--seeds", "1,2", "--out-dir", out, "--quiet")
        assert proc.returncode == 0, proc.stderr
        assert (out / cmp.SUMMARY_FILE).read_bytes() == summary
    assert proc.stderr.strip() == ("warning: strategy 'const:bid=3': deprecated names const (now"
                                   " fixed), bid (now bid_cpm); they go in the next release")


@pytest.mark.parametrize("args, words", [
    (["--strategy", '{ kind = "fixed", bid_cpm = -1 }'], "command line: --strategy 1.bid_cpm: "),
    (["--strategy", "{ kind = ", "--seeds", "1,2"], "command line: --strategy 1: not a TOML"),
    (["--strategy", "fixed:bid_cpm=-1"], "command line: --strategy 1.bid_cpm: "),
    (["--strategy", "fixed:bid_cpm=1", "--strategy", "fixed:bid=x"],
     "command line: --strategy 2.bid_cpm: Input should be a valid number"),
    (["--strategy", "linear:base_cpm=2"], "command line: --strategy 1.avg_ctr: required"),
    (["--strategy", "turbo:x=1"], "command line: --strategy 1: unknown strategy kind 'turbo'"),
    (["--strategy", '{ kind = "fixed", bid_cpm = 1 }', "--seeds", "3"], "--seeds: needs two seeds"),
    (["--strategy", '{ kind = "fixed", bid_cpm = 1 }', "--campaign", "nope"], "--campaign: no campaign"),
])
def test_cli_compare_bad_input_exits_2_and_writes_nothing(two_hour_scenario, tmp_path, args, words):
    base = ["compare", two_hour_scenario, "--campaign", CAMPAIGN, "--out-dir", tmp_path / "out"]
    proc = rtb(*base, *args)
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_folder_of_other_strategies_is_refused(two_hour_spec, tmp_path):
    cmp.compare(two_hour_spec, CAMPAIGN, [HIGHER], [5, 6], tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.json")}
    with pytest.raises(sw.FolderOfAnotherSweep):
        cmp.compare(two_hour_spec, CAMPAIGN, [OWN], [5, 6], tmp_path)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.json")} == before
