"""The tables rtb prints (rtb/tables.py): readable at 80 columns, complete when wide.

At 80 and 120 columns every table must show each campaign id whole on one line, every
number whole (no "…"), the currency, and what was run in its title.
"""

from __future__ import annotations

import copy
import io
import re

import pytest
from rich.console import Console

from rtb import simulate
from rtb.tables import (TOO_FEW, WIDE_RUN_TABLE, campaign_table, compare_table, optimize_table,
                        plan_table, sweep_table)

IDS = ["sneakers-retargeting", "sneakers-prospecting", "mealkit-foodies", "mealkit-video",
       "gadgets-in-market", "gadgets-cpc"]
BUDGETS = [30.0, 150.0, 25.0, 200.0, 30.0, 500.0]
WIDTHS = [80, 120]


@pytest.fixture(scope="module")
def report(two_hour_spec) -> dict:
    return simulate(two_hour_spec, seed=4).to_dict()


def render(renderable, width: int) -> list[str]:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    return console.file.getvalue().splitlines()


def whole(word: str, line: str) -> bool:
    """`word` stands in `line` on its own, not part of a longer id or number (a comma,
    colon or full stop may follow it as punctuation)."""
    return re.search(rf"(?<![\w.,:-]){re.escape(word)}(?![\w-]|[.,:][\w-])", line) is not None


def assert_readable(lines: list[str], width: int, ids: list[str], currency: str) -> str:
    """Fits the width, cuts nothing, names every id whole and the currency; the text."""
    text = "\n".join(lines)
    assert max(len(line) for line in lines) <= width, text
    assert "…" not in text and "..." not in text, text
    for cid in ids:
        assert any(whole(cid, line) for line in lines), f"{cid} not whole on one line:\n{text}"
    assert whole(currency, text), text
    return text


def row_of(lines: list[str], label: str) -> list[str]:
    """Every line that starts with `label` (one per block of columns)."""
    return [line for line in lines if line.split() and line.split()[0] == label]


# ---- rtb run --------------------------------------------------------------------------

@pytest.mark.parametrize("width", WIDTHS)
def test_run_table_fits_with_whole_names_budgets_and_both_romis(report, width):
    lines = render(campaign_table(report, width), width)
    text = assert_readable(lines, width, [c["id"] for c in report["campaigns"]], "USD")
    assert text.isascii()
    for c in report["campaigns"]:
        row = " ".join(row_of(lines, c["id"]))
        for figure in (f"{c['budget']:,.2f}", f"{c['spend']:,.2f}", f"{c['impressions']:,}",
                       f"{c['reach']:,}"):
            assert whole(figure, row), (figure, row)
        for key in ("romi", "incremental_romi"):
            assert whole("-" if c[key] is None else f"{c[key]:+.1%}", row), (key, row)
    assert "attributed" in text.lower() and "incr. ROMI" in text.replace("\n", " ")
    assert "act on incr. ROMI" in " ".join(text.split())  # which ROMI to act on, said on the table
    assert "seed 4" in text and "as written" in text


def test_run_table_marks_spent_budgets_and_says_how(report):
    report = copy.deepcopy(report)
    first, second = report["campaigns"][:2]
    first["spend"], second["spend"] = first["budget"] * 0.996, second["budget"] * 0.99
    lines = render(campaign_table(report, 80), 80)
    assert row_of(lines, first["id"])[0].split()[3] == "all"
    assert row_of(lines, second["id"])[0].split()[3] == "99%"
    assert "all = spent to within 0.5%" in " ".join(" ".join(lines).split())


def test_run_title_says_budget_scale(report):
    report = copy.deepcopy(report)
    report["scenario"]["budget_scale"] = 2.0
    report["scenario"]["currency"] = "EUR"
    text = "\n".join(render(campaign_table(report, 80), 80))
    assert "budgets x2, seed 4" in text and "money in EUR" in text and "USD" not in text


@pytest.mark.parametrize("width", WIDTHS)
def test_run_table_with_large_figures_cuts_nothing(report, width):
    """Millions in money and counts (what squeezed names and cut numbers before)."""
    report = copy.deepcopy(report)
    for m in report["campaigns"] + [report["totals"]]:
        for key in ("budget", "spend", "revenue", "cpa", "cpc", "ecpm"):
            if m[key] is not None:
                m[key] = m[key] * 1e6 + 0.25
        for key in ("impressions", "reach", "clicks", "conversions"):
            m[key] *= 10_000
    report["campaigns"][0]["id"] = "a-rather-long-campaign-id-for-the-table"
    lines = render(campaign_table(report, width), width)
    assert_readable(lines, width, [c["id"] for c in report["campaigns"]], "USD")
    for c in report["campaigns"]:
        row = " ".join(row_of(lines, c["id"]))
        assert whole(f"{c['budget']:,.2f}", row) and whole(f"{c['impressions']:,}", row), row


def test_wide_run_table_shows_every_figure(report):
    lines = render(campaign_table(report, WIDE_RUN_TABLE), WIDE_RUN_TABLE)
    header = next(line for line in lines if "campaign" in line)
    for name in ("budget", "spend", "used", "impressions", "reach", "freq", "clicks", "CTR",
                 "conv", "eCPM", "CPC", "CPA", "revenue", "ROMI", "incr. ROMI"):
        assert name in header
    total = next(line for line in lines if "total" in line)
    assert f"{report['totals']['spend']:,.2f}" in total
    assert "More figures" not in "\n".join(lines)


# ---- rtb compare and rtb sweep ----------------------------------------------------------

def d(mean, half):
    return {"mean": mean, "ci95": [mean - half, mean + half], "pairs": 3}


COMPARE = {
    "summary_version": 1, "scenario": "quickstart", "currency": "USD",
    "campaign": "sneakers-prospecting", "budget_scale": 1.0, "seeds": [1, 2, 3], "missing_seeds": [],
    "strategies": [
        {"name": name, "folder": name, "strategy": strategy,
         "means": {"spend": 149.481234 * k, "impressions": 111714.0 * k, "reach": 50624.0,
                   "clicks": 172.3, "conversions": 13.3 * k, "incremental_conversions": 4.7 * k,
                   "revenue": 1170.0 * k, "cpa": 11.5, "romi": 2.521, "incremental_romi": -0.187}}
        for k, (name, strategy) in enumerate(
            [("baseline", {"kind": "value", "shading": 0.7}),
             ("strategy-1", {"kind": "linear", "base_cpm": 2.0, "avg_ctr": 0.002}),
             ("strategy-2", {"kind": "fixed", "bid_cpm": 3.0})], start=1)],
    "differences": [
        {"strategy": name, "against": "baseline",
         **{m: d(v, abs(v) / 3 + 0.01) for m, v in
            [("spend", 149.48), ("impressions", 111714.0), ("reach", 0.0), ("clicks", 1.5),
             ("conversions", 13.3), ("incremental_conversions", 4.7), ("revenue", 1170.0),
             ("cpa", -1.25), ("romi", 0.121), ("incremental_romi", -0.05)]}}
        for name in ("strategy-1", "strategy-2")],
}


@pytest.mark.parametrize("width", WIDTHS)
def test_compare_table_fits(width):
    lines = render(compare_table(COMPARE, width), width)
    text = assert_readable(lines, width, ["sneakers-prospecting"], "USD")
    assert whole(f"{149.481234 * 3:,.2f}", text) and whole("+149.48", text)
    assert "strategies on the same traffic" in text and "3 seeds" in text
    assert "incr. ROMI" in text and "ROMI" in text


def sweep_summary() -> dict:
    def figures(k: int, scale: float) -> dict:
        f = {"budget": BUDGETS[k] * scale, "spend": BUDGETS[k] * scale * 0.97,
             "impressions": 111714.0 * scale, "reach": 50624.0 * scale, "clicks": 172.0,
             "conversions": 13.3 * scale, "revenue": 1170.0 * scale, "romi": 2.52,
             "incremental_romi": -0.187}
        f["range"] = {key: sorted([v * 0.9, v * 1.1]) for key, v in f.items()}
        return f

    scales = [0.5, 1.0, 2.0]
    return {"summary_version": 2, "scenario": "quickstart", "currency": "USD",
            "scenario_sha256": "0" * 64, "runs": [], "missing": [],
            "by_scale": [{"budget_scale": s, "seeds": 3,
                          "campaigns": [{"id": cid, **figures(k, s)} for k, cid in enumerate(IDS)],
                          "totals": figures(1, s * 6)} for s in scales]}


@pytest.mark.parametrize("width", WIDTHS)
def test_sweep_table_fits(width):
    summary = sweep_summary()
    lines = render(sweep_table(summary, width), width)
    text = assert_readable(lines, width, IDS, "USD")
    assert whole(f"{500.0 * 2:,.2f}", text)  # gadgets-cpc's budget at x2
    assert "budget sweep" in text and "x0.5, x1, x2" in text and "3 seeds each" in text
    assert "ROMI" in text and "incr. ROMI" in text


def test_sweep_table_shows_the_seeds_of_each_scale_when_they_differ():
    summary = sweep_summary()
    summary["by_scale"][0]["seeds"] = 2
    lines = render(sweep_table(summary, 80), 80)
    assert "seeds as shown" in lines[0]
    assert row_of(lines, "budgets")[0].split()[:2] == ["budgets", "seeds"]
    assert row_of(lines, "x0.5")[0].split()[:2] == ["x0.5", "2"]


def test_without_a_width_a_table_takes_the_console_s(report):
    for table, headers in [(compare_table(COMPARE), ("CPA", "impressions", "clicks")),
                           (sweep_table(sweep_summary()), ("impressions", "reach", "revenue"))]:
        lines = render(table, 400)
        assert not [h for h in headers if not any(h in line for line in lines)]
        assert "More figures" not in "\n".join(lines)
    for table, ids in [(compare_table(COMPARE), []), (sweep_table(sweep_summary()), IDS),
                       (campaign_table(report), [c["id"] for c in report["campaigns"]]),
                       (campaign_table(report, 200), [c["id"] for c in report["campaigns"]])]:
        assert_readable(render(table, 80), 80, ids, "USD")


# ---- rtb plan -------------------------------------------------------------------------

def F(mean, half=None, vs=None, too_few=False) -> dict:
    """A figure over seeds as plan.json writes it."""
    f = {"mean": mean, "low": None if half is None else mean - half,
         "high": None if half is None else mean + half}
    if vs is not None:
        f["vs_current"] = {"mean": vs[0], "low": vs[0] - vs[1], "high": vs[0] + vs[1]}
    if too_few:
        f["too_few"] = True
    return f


def plan_figures(budget: float, k: int, variant: int) -> dict:
    vs = (lambda x, h: (x, h)) if variant else (lambda x, h: None)
    conv = 13.3 + k + 4.1 * variant
    return {"budget": F(budget, 0.0, vs(budget * 0.3 * variant, 0.0)),
            "spend": F(budget * 0.97, 1.234, vs(12.345 * variant, 2.5)),
            "impressions": F(111714.0), "reach": F(50624.0), "clicks": F(172.0),
            "conversions": F(conv, 2.1, vs(4.1, 2.0)),
            "incremental_conversions": F(4.5, 1.5, vs(1.2, 0.8)),
            "revenue": F(1170.0 + k, 80.0, vs(120.0, 40.0)),
            "incremental_revenue": F(450.0, 30.0, vs(40.0, 20.0)),
            "romi": F(2.523, 0.41, vs(0.121, 0.05), too_few=k == 4),
            "incremental_romi": F(-0.187, 0.12, vs(0.04, 0.02), too_few=k in (0, 4)),
            "cpa": F(11.5, 2.0, vs(-1.2, 0.5), too_few=k == 4)}


def plan_summary(marginal: bool = True) -> dict:
    variants = []
    for v, (name, changes) in enumerate([
            ("current", []),
            ("more-retargeting", ["move sneakers-prospecting:sneakers-retargeting=30%"]),
            ("video-cut", ["budget mealkit-video=-20%", "budget gadgets-cpc=+10%"])]):
        campaigns = [{"id": cid, "advertiser": cid.split("-")[0] + "-co",
                      **plan_figures(BUDGETS[k], k, v)} for k, cid in enumerate(IDS)]
        variants.append({"name": name, "changes": changes, "folder": name, "campaigns": campaigns,
                         "totals": plan_figures(sum(BUDGETS), 1, v)})
    ranked = [{"id": cid, "extra_budget": BUDGETS[k] * 0.2, "rank": r,
               "spend": F(BUDGETS[k] * 0.19, 1.0), "spent_share": F(0.95, 0.04),
               "conversions": F(1.5, 0.5), "incremental_conversions": F(0.8, 0.3),
               "conversions_per_100": F(5.123, 1.5), "incremental_conversions_per_100": F(2.345, 0.9),
               "romi": F(0.35, 0.2), "incremental_romi": F(0.12 - r / 10, 0.1)}
              for r, (k, cid) in enumerate(sorted(enumerate(IDS), key=lambda p: -p[0]), start=1)]
    return {"plan_version": 1, "scenario": "quickstart", "currency": "USD", "seeds": [1, 2, 3],
            "missing_seeds": [], "confidence": 0.95, "min_events": 10, "variants": variants,
            "marginal": {"step": 0.2, "per": 100.0, "campaigns": ranked} if marginal else None}


@pytest.mark.parametrize("width", WIDTHS)
def test_plan_table_fits_with_intervals_changes_and_too_few(width):
    summary = plan_summary()
    summary["marginal"]["campaigns"][-1]["spent_share"] = F(-1e-9, 0.04)
    lines = render(plan_table(summary, width), width)
    text = assert_readable(lines, width, IDS, "USD")
    flat = " ".join(text.split())
    assert "quickstart: plan, 3 variants on 3 seeds" in flat
    assert "move sneakers-prospecting:sneakers-retargeting=30%" in flat  # what each variant is
    for budget in BUDGETS:
        assert whole(f"{budget:,.2f}", text), budget  # budgets whole, with their cents
    assert whole("±2.1", text) and whole("+4.1", text) and "(±2.0)" in text
    assert whole(TOO_FEW, text) and "too few: a ROMI or CPA resting on under 10" in flat
    for variant in ("current", "more-retargeting", "video-cut"):
        assert len(row_of(lines, variant)) >= len(IDS) + 1  # a row in every campaign's block
    # The marginal section: ranked, with what 100 USD more buys.
    assert "Where the next 100 USD does the most" in flat
    ranked = [line.split()[1] for line in lines
              if len(line.split()) > 1 and line.split()[0].isdigit() and line.split()[1] in IDS]
    assert ranked == IDS[::-1]
    best = next(line for line in lines if line.split()[:2] == ["1", IDS[-1]])
    assert best.split()[2:] == ["100.00", "95%", "2.35", "+2.0%", "5.12", "+35.0%"]
    last = next(line for line in lines if line.split()[:2] == ["6", IDS[0]])
    assert last.split()[3] == "0%"  # a figure that rounds to zero has no minus sign


def test_plan_table_without_marginal_and_with_one_seed():
    summary = plan_summary(marginal=False)
    summary["seeds"], summary["missing_seeds"] = [1], [2, 3]
    for v in summary["variants"]:
        for m in v["campaigns"] + [v["totals"]]:
            for f in m.values():
                if isinstance(f, dict):
                    f["low"] = f["high"] = None
    lines = render(plan_table(summary, 80), 80)
    text = assert_readable(lines, 80, IDS, "USD")
    assert "Where the next" not in text and "±2.1" not in text
    assert "on 1 seed (2 not run yet)" in " ".join(text.split())


# ---- rtb optimize ---------------------------------------------------------------------

def optimize_result(goal: bool = True) -> dict:
    split = dict(zip(IDS, [45.5, 120.25, 25.0, 150.0, 30.0, 564.25]))
    current_split = dict(zip(IDS, BUDGETS))

    def expected(shift: float) -> dict:
        return {"campaigns": [{"id": cid, "advertiser": "x", **plan_figures(b + shift, k, 0)}
                              for k, (cid, b) in enumerate(current_split.items())],
                "totals": plan_figures(sum(BUDGETS), 1, 0)}

    return {"scenario": "quickstart", "currency": "EUR", "objective": "profit", "incremental": True,
            "total_budget": 935.0, "split": split, "current_split": current_split,
            "expected": expected(10.0), "current": expected(0.0),
            "gain": {"mean": 123.456, "low": 80.5, "high": 166.4}, "found_better": True,
            "goal": None if not goal else {
                "target_conversions": 60, "min_romi": 0.2, "reachable": False,
                "reason": "At most 52.3 conversions (interval 48.1 to 56.5) with a ROMI of at least"
                          " +20%: gadgets-cpc and sneakers-prospecting already spend their budgets"
                          " and the rest cannot absorb more."}}


@pytest.mark.parametrize("width", WIDTHS)
def test_optimize_table_fits_with_budgets_and_gain(width):
    result = optimize_result(goal=False)
    lines = render(optimize_table(result, width), width)
    text = assert_readable(lines, width, IDS, "EUR")
    flat = " ".join(text.split())
    assert "the budget split with the most incremental profit, 935.00 EUR in all" in flat
    for cid in IDS:
        row = " ".join(row_of(lines, cid))
        assert whole(f"{result['current_split'][cid]:,.2f}", row), row
        assert whole(f"{result['split'][cid]:,.2f}", row), row
    assert whole("+15.50", text) and whole("-29.75", text)  # the changes of budget
    assert ("Expected gain in incremental profit on fresh seeds: +123.46 EUR (interval +80.50"
            " to +166.40 EUR).") in flat


@pytest.mark.parametrize("width", [80, 120])
def test_an_unreachable_goal_says_why_without_a_split(width):
    result = optimize_result()
    lines = render(optimize_table(result, width), width)
    flat = " ".join(" ".join(lines).split())
    assert flat.startswith("quickstart: a budget for 60 incremental conversions at a ROMI of at least +20%")
    assert "Not reachable." in flat and "Expected gain" not in flat
    assert result["goal"]["reason"] in flat  # wrapped, never cut
    assert all(len(line) <= width for line in lines)


def test_a_reachable_goal_shows_its_budget_and_split():
    result = optimize_result()
    result["goal"]["reachable"], result["goal"]["reason"] = True, "Reached on the fresh seeds."
    flat = " ".join(" ".join(render(optimize_table(result, 80), 80)).split())
    assert "the smallest budget for 60 incremental conversions at a ROMI of at least +20%: 935.00 EUR" in flat
    assert "Goal (60 incremental conversions at a ROMI of at least +20%): reachable. Reached" in flat


def test_optimize_table_when_nothing_better_is_found():
    result = optimize_result(goal=False)
    result["found_better"], result["split"] = False, dict(result["current_split"])
    result["gain"] = {"mean": 0.0, "low": None, "high": None}
    text = " ".join("\n".join(render(optimize_table(result, 80), 80)).split())
    assert "No better split found: keep the current one." in text and "Goal" not in text
