"""The tables rtb prints (rtb/tables.py): readable at 80 columns, complete when wide."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from rtb import simulate
from rtb.tables import WIDE_RUN_TABLE, campaign_table


@pytest.fixture(scope="module")
def report(two_hour_spec) -> dict:
    return simulate(two_hour_spec, seed=4).to_dict()


def render(table, width: int) -> list[str]:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(table)
    return console.file.getvalue().splitlines()


def test_run_table_fits_80_columns_with_whole_names_and_both_romis(report):
    lines = render(campaign_table(report, 80), 80)
    assert max(len(line) for line in lines) <= 80
    text = "\n".join(lines)
    for c in report["campaigns"]:
        row = next(line for line in lines if line.split() and line.split()[0] == c["id"])
        romi = "-" if c["romi"] is None else f"{c['romi']:+.0%}"
        incr = "-" if c["incremental_romi"] is None else f"{c['incremental_romi']:+.0%}"
        assert row.split()[-2:] == [romi, incr]
        assert f"{c['impressions']:,}" in row.split()
    assert "attributed" in text and "incr." in text  # which ROMI is which, said on the table
    assert text.isascii()


def test_wide_run_table_shows_every_figure(report):
    lines = render(campaign_table(report, WIDE_RUN_TABLE), WIDE_RUN_TABLE)
    header = next(line for line in lines if "campaign" in line)
    for name in ("impressions", "reach", "freq", "clicks", "CTR", "conv", "spend", "eCPM", "CPC",
                 "CPA", "revenue", "ROMI", "incr. ROMI"):
        assert name in header
    total = next(line for line in lines if "total" in line)
    assert f"{report['totals']['spend']:,.2f}" in total
