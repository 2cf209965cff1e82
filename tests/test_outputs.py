"""Result files: the campaigns' CSV table, the impression log as CSV and as Parquet, and the
one atomic writer behind every file the project writes."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

import rtb.impression_log as il
from rtb.atomic import FILE_MODE, AtomicFile, write_atomic
from rtb.engine import simulate
from rtb.report import CSV_COLUMNS, CSV_FIELDS
from rtb.types import OUTCOME_NAMES
from test_cli import LOG_HEADER, MINIMAL_TOML, REPO, assert_clean_failure, rtb_in_process

needs_pyarrow = pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None,
                                   reason="pyarrow (the parquet extra) is not installed")


def hidden_files(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


# ---- rtb run --csv: one row per campaign ------------------------------------------------

@pytest.fixture(scope="module")
def campaigns_csv(two_hour_scenario, tmp_path_factory):
    folder = tmp_path_factory.mktemp("campaigns-csv")
    table, report = folder / "campaigns.csv", folder / "report.json"
    proc = rtb_in_process("run", two_hour_scenario, "--csv", table, "--out", report, "--quiet")
    assert proc.returncode == 0, proc.stderr
    return table, json.loads(report.read_bytes())


def test_csv_columns_are_the_reports_campaign_scalars_then_bid_outcomes(two_hour_spec):
    campaign = simulate(two_hour_spec).to_dict()["campaigns"][0]
    scalars = [k for k, v in campaign.items()
               if not isinstance(v, (dict, list)) and k != "frequency_cap"]
    assert list(CSV_FIELDS) == scalars  # a new report field needs a column here too
    assert CSV_COLUMNS[len(CSV_FIELDS):] == tuple(f"bid_outcomes.{n}" for n in OUTCOME_NAMES)


def test_csv_has_one_row_per_campaign_with_the_reports_values(campaigns_csv):
    table, report = campaigns_csv
    with open(table, newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r[0] for r in rows[1:]] == [c["id"] for c in report["campaigns"]]  # no totals row
    for row, campaign in zip(rows[1:], report["campaigns"]):
        values = [campaign[k] for k in CSV_FIELDS] + [campaign["bid_outcomes"][n]
                                                      for n in OUTCOME_NAMES]
        for name, cell, value in zip(CSV_COLUMNS, row, values):
            if value is None:
                assert cell == "", name  # null: an empty cell
            elif isinstance(value, str):
                assert cell == value, name
            else:
                assert float(cell) == value and type(value)(cell) == value, name
    assert any(c["cpa"] is None for c in report["campaigns"]), "no null in the sample to check"
    assert table.read_bytes().count(b"\n") == len(report["campaigns"]) + 1
    assert table.stat().st_mode & 0o777 == FILE_MODE and not hidden_files(table.parent)


@pytest.mark.skipif(importlib.util.find_spec("pandas") is None, reason="pandas not installed")
def test_pandas_reads_one_row_per_campaign(campaigns_csv):
    import pandas as pd

    table, report = campaigns_csv
    frame = pd.read_csv(table)
    assert list(frame["id"]) == [c["id"] for c in report["campaigns"]]
    assert frame["spend"].sum() == pytest.approx(report["totals"]["spend"])


def test_csv_in_a_missing_folder_exits_2_before_running(tmp_path):
    scenario = tmp_path / "ok.toml"
    scenario.write_text(MINIMAL_TOML)
    target = tmp_path / "missing" / "campaigns.csv"
    proc = rtb_in_process("run", scenario, "--csv", target, "--quiet")
    assert_clean_failure(proc, [str(target), "--csv", "does not exist"])
    assert proc.stdout == ""


# ---- the impression log: CSV and Parquet -----------------------------------------------

def csv_text(table) -> str:
    """A Parquet log's rows in the CSV log's format."""
    columns = [table.column(name).to_pylist() for name in il.LOG_COLUMNS]
    return "".join(f"{t:.3f},{u},{pub},{slot},{c},{f:.10g},{b:.10g},{p:.10g},{k:d},{v:d}\n"
                   for t, u, pub, slot, c, f, b, p, k, v in zip(*columns))


@needs_pyarrow
def test_parquet_and_csv_logs_hold_the_same_rows(two_hour_spec, tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv_log, parquet_log = tmp_path / "log.csv", tmp_path / "log.parquet"
    report = simulate(two_hour_spec, log_path=csv_log).to_json()
    monkeypatch.setattr(il, "ROW_GROUP_ROWS", 5000)  # several row groups in a short run
    assert simulate(two_hour_spec, log_path=parquet_log).to_json() == report
    log = pq.ParquetFile(parquet_log)
    assert log.schema_arrow == il.parquet_schema()
    assert log.schema_arrow.field("clicked").type == pa.bool_()
    assert log.metadata.num_row_groups > 2
    header, body = csv_log.read_text().split("\n", 1)
    assert header == LOG_HEADER
    assert log.metadata.num_rows == body.count("\n") == json.loads(report)[
        "exchange"]["impressions_to_campaigns"] > 5000
    # Formatted as the CSV formats them, the Parquet rows are the CSV's bytes.
    assert csv_text(log.read()) == body
    assert parquet_log.stat().st_mode & 0o777 == FILE_MODE and not hidden_files(tmp_path)


@pytest.mark.parametrize("name", ["log.csv", pytest.param("log.parquet", marks=needs_pyarrow)])
def test_an_interrupted_run_leaves_no_log(two_hour_spec, tmp_path, name):
    def stop(fraction: float) -> None:
        if fraction > 0.5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        simulate(two_hour_spec, log_path=tmp_path / name, progress=stop)
    assert list(tmp_path.iterdir()) == []


@needs_pyarrow
def test_a_parquet_log_without_impressions_has_the_columns(tmp_path):
    import pyarrow.parquet as pq

    labels = SimpleNamespace(slots=("news,top",), campaigns=("c1",))
    log = il.open_impression_log(tmp_path / "empty.PARQUET", labels)
    log.close()
    table = pq.read_table(tmp_path / "empty.PARQUET")
    assert table.num_rows == 0 and table.schema == il.parquet_schema()


def test_a_parquet_log_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now fails
    labels = SimpleNamespace(slots=("news,top",), campaigns=("c1",))
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'rtbsim\[parquet\]'"):
        il.open_impression_log(tmp_path / "log.parquet", labels)
    assert list(tmp_path.iterdir()) == []


def test_cli_parquet_log_without_pyarrow_exits_2_before_the_run(tmp_path):
    scenario = tmp_path / "ok.toml"
    scenario.write_text(MINIMAL_TOML)
    log = tmp_path / "log.parquet"
    # pyarrow hidden: find_spec and import both see None in sys.modules.
    code = ("import sys; sys.modules['pyarrow'] = None; from rtb.cli import app;"
            f" sys.argv = ['rtb', 'run', {str(scenario)!r}, '--log', {str(log)!r}, '--quiet']; app()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "COLUMNS": "200"}, timeout=60)
    assert_clean_failure(proc, [])
    assert proc.stderr.strip() == ("command line: --log: a .parquet log needs the parquet extra:"
                                   " pip install 'rtbsim[parquet]'")
    assert proc.stdout == "" and list(tmp_path.iterdir()) == [scenario]


# ---- one atomic writer --------------------------------------------------------------------

def test_atomic_file_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "out.json"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), AtomicFile(target) as out:
        out.file.write(b"half")
        raise RuntimeError
    assert target.read_bytes() == b"old" and hidden_files(tmp_path) == []
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new" and hidden_files(tmp_path) == []
    assert target.stat().st_mode & 0o777 == FILE_MODE


def test_every_writer_uses_the_one_helper():
    """mkstemp and os.replace appear only in rtb/atomic.py."""
    for path in sorted(p for package in ("rtb", "dsp", "ssp", "dmp")
                       for p in (REPO / package).glob("*.py")):
        if path.name != "atomic.py":
            text = path.read_text()
            assert "mkstemp" not in text and "os.replace" not in text, path
