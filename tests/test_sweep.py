"""rtb sweep: a scenario at several budget scales and seeds, resumable, Ctrl-C safe."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

import rtb.sweep as sw
from rtb.cli import sweep_table
from rtb.engine import simulate
from rtb.scenario import load_scenario
from test_cli import rtb


def test_plan_is_every_pair_once_scales_outermost():
    runs = sw.plan([0.5, 2.0, 0.5], [3, 4])
    assert [(r.budget_scale, r.seed) for r in runs] == [(0.5, 3), (0.5, 4), (2.0, 3), (2.0, 4)]
    assert len({r.file_name for r in sw.plan([1.0000001, 1.0000002], [1])}) == 2


def test_pooled_runs_equal_single_runs_and_summary_averages_seeds(two_hour_spec, tmp_path):
    runs = sw.plan([0.5, 2.0], [3, 4])
    summary = sw.sweep(two_hour_spec, runs, tmp_path, workers=2)
    reports = {}
    for run in runs:
        expected = simulate(two_hour_spec, run.seed, budget_scale=run.budget_scale).to_json()
        assert (tmp_path / run.file_name).read_bytes() == expected, run
        reports[run] = json.loads(expected)
    assert summary == json.loads((tmp_path / sw.SUMMARY_FILE).read_bytes())
    assert summary["missing"] == [] and len(summary["runs"]) == 4
    assert summary["currency"] == "USD"
    half = summary["by_scale"][0]
    assert half["budget_scale"] == 0.5 and half["seeds"] == 2
    for k, row in enumerate(half["campaigns"]):
        spends = [reports[r]["campaigns"][k]["spend"] for r in runs if r.budget_scale == 0.5]
        assert row["spend"] == pytest.approx(sum(spends) / 2, abs=1e-6)
        assert row["range"]["spend"] == [min(spends), max(spends)]
    conversions = [reports[r]["totals"]["conversions"] for r in runs if r.budget_scale == 0.5]
    assert half["totals"]["range"]["conversions"] == [min(conversions), max(conversions)]
    # The table shows each scale's lowest to highest conversions over its seeds.
    console = Console(width=250, record=True, file=io.StringIO())
    console.print(sweep_table(summary))
    text = console.export_text()
    total_block = text[text.index("\ntotal"):]  # the totals' block comes last
    assert f"{min(conversions):,.1f} to {max(conversions):,.1f}" in total_block
    # A bigger budget buys at least as much in total.
    assert summary["by_scale"][1]["totals"]["spend"] >= half["totals"]["spend"]


def test_rerun_does_only_missing_runs(two_hour_spec, tmp_path, monkeypatch):
    runs = sw.plan([0.5, 1.0], [7])
    sw.sweep(two_hour_spec, runs, tmp_path)
    kept = (tmp_path / runs[0].file_name).read_bytes()
    (tmp_path / runs[1].file_name).unlink()
    done = []
    real = sw.run_one
    monkeypatch.setattr(sw, "run_one", lambda *a: done.append(a[1]) or real(*a))
    summary = sw.sweep(two_hour_spec, runs, tmp_path)
    assert done == [runs[1]]
    assert (tmp_path / runs[0].file_name).read_bytes() == kept
    assert summary["missing"] == []


def test_ctrl_c_keeps_finished_runs_and_writes_no_partial_file(two_hour_spec, tmp_path,
                                                                monkeypatch):
    runs = sw.plan([0.5, 1.0, 2.0], [7])
    real = sw.run_one

    def interrupted_second(scenario, run, threads=None):
        if run == runs[1]:
            raise KeyboardInterrupt
        return real(scenario, run, threads)

    monkeypatch.setattr(sw, "run_one", interrupted_second)
    with pytest.raises(sw.SweepInterrupted) as stop:
        sw.sweep(two_hour_spec, runs, tmp_path)
    assert (stop.value.done, stop.value.total) == (1, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([runs[0].file_name, sw.SUMMARY_FILE])
    summary = json.loads((tmp_path / sw.SUMMARY_FILE).read_bytes())
    assert summary["missing"] == [runs[1].file_name, runs[2].file_name]


def test_cli_sweep_prints_a_table_and_saves_every_run(two_hour_scenario, tmp_path):
    out = tmp_path / "what-if"
    proc = rtb("sweep", two_hour_scenario, "--budget-scales", "0.5,1", "--out-dir", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "budget sweep" in proc.stdout and "ROMI" in proc.stdout
    seed = load_scenario(two_hour_scenario).simulation.seed
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"scale-0.5_seed-{seed}.json", f"scale-1.0_seed-{seed}.json",
                            sw.SUMMARY_FILE])


def test_cli_sweep_draws_the_response_curves(two_hour_scenario, tmp_path):
    pytest.importorskip("matplotlib")
    out, picture = tmp_path / "what-if", tmp_path / "curves.png"
    args = ("sweep", two_hour_scenario, "--budget-scales", "0.5,1", "--seeds", "1,2",
            "--out-dir", out, "--plot", picture, "--quiet")
    assert rtb(*args).returncode == 0
    drawn = picture.read_bytes()
    assert drawn.startswith(b"\x89PNG\r\n\x1a\n") and len(drawn) > 10_000
    # Run again: nothing to simulate, the same picture to the byte.
    assert rtb(*args).returncode == 0 and picture.read_bytes() == drawn


def test_cli_sweep_plot_of_another_kind_exits_2_before_any_run(two_hour_scenario, tmp_path):
    proc = rtb("sweep", two_hour_scenario, "--out-dir", tmp_path / "out", "--plot", tmp_path / "c.gif")
    assert proc.returncode == 2 and "--plot: must end in .png, .svg, .pdf" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option, value, words", [
    ("--budget-scales", "0.5,x", "'x' is not a number"),
    ("--budget-scales", "0", "must be in (0"),
    ("--seeds", "-1", "must be >= 0"),
    ("--workers", "0", "must be >= 1"),
    ("--executor", "slurm", "'slurm' is not one of local, dask"),
    ("--scheduler", "tcp://127.0.0.1:1", "goes with --executor dask"),
])
def test_cli_sweep_bad_option_exits_2(two_hour_scenario, tmp_path, option, value, words):
    proc = rtb("sweep", two_hour_scenario, "--out-dir", tmp_path / "out", option, value)
    assert proc.returncode == 2
    assert f"command line: {option}: " in proc.stderr and words in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_cli_sweep_out_dir_that_is_a_file_exits_2(two_hour_scenario, tmp_path):
    target = tmp_path / "taken"
    target.write_text("")
    proc = rtb("sweep", two_hour_scenario, "--out-dir", target)
    assert proc.returncode == 2 and "--out-dir: is not a folder" in proc.stderr


def test_dask_executor_runs_equal_single_runs(two_hour_spec, tmp_path):
    """The same sweep on a local Dask cluster (a worker process): the same reports."""
    distributed = pytest.importorskip("distributed")
    runs = sw.plan([0.5, 1.0], [5])
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        summary = sw.sweep(two_hour_spec, runs, tmp_path, executor="dask",
                           scheduler=cluster.scheduler_address)
    assert summary["missing"] == []
    for run in runs:
        expected = simulate(two_hour_spec, run.seed, budget_scale=run.budget_scale).to_json()
        assert (tmp_path / run.file_name).read_bytes() == expected, run


def test_a_folder_of_another_scenario_is_refused(two_hour_scenario, two_hour_spec, tmp_path):
    out = tmp_path / "what-if"
    out.mkdir()
    sw.sweep(two_hour_spec, sw.plan([1.0], [7]), out)
    before = sorted(p.name for p in out.iterdir())
    text = two_hour_scenario.read_text()
    assert "\nseed = 7\n" in text
    edited = tmp_path / "edited.toml"
    edited.write_text(text.replace("\nseed = 7\n", "\nseed = 8\n"))
    with pytest.raises(sw.FolderOfAnotherSweep):
        sw.sweep(load_scenario(edited), sw.plan([1.0, 2.0], [7]), out)
    assert sorted(p.name for p in out.iterdir()) == before
    proc = rtb("sweep", edited, "--out-dir", out)
    assert proc.returncode == 2 and "--out-dir: holds runs made from something else" in proc.stderr
    assert "Traceback" not in proc.stderr
    sw.sweep(two_hour_spec, sw.plan([1.0], [7]), out)  # the same scenario may resume
