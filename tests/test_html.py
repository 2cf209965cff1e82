"""The HTML pages (rtb.html): escaped, the same bytes each time, fetching nothing, and
rendered by a real headless browser without an error and not blank."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest

from rtb.errors import InputError
from rtb.html import check_html_option, render_optimize_page, render_plan_page, render_sweep_page, write_page

pytest.importorskip("matplotlib")

HOSTILE = '<script>alert(1)</script>'
IDS = ["sneakers-retargeting-eu-west-lookalike-2024-q3", "sneakers-prospecting-broad-audience-video-ctv",
       "running-shoes-prospecting-contextual-sports-news", "running-shoes-retargeting-cart-abandoners-7d",
       f'socks-"quoted" & {HOSTILE}', "gift-cards-seasonal-holiday-push-display-native-mobile"]
BUDGETS = [150.0, 900.0, 420.0, 75.0, 30.0, 1250.0]
FEWER = range(2, 6)  # the sweep's and the optimisation's campaigns (fewer: the test's time)


def _f(mean, spread=0.1, change=None) -> dict:
    """A figure: mean and a symmetric interval, and its change against current if given."""
    if mean is None:
        figure = {"mean": None, "low": None, "high": None}
    else:
        figure = {"mean": mean, "low": mean - abs(mean) * spread, "high": mean + abs(mean) * spread}
    if change is not None:
        figure["vs_current"] = _f(change, 0.6)  # the same seeds: no change is exactly 0
    return figure


def _campaign(k: int, scale: float, baseline: dict | None) -> dict:
    budget = BUDGETS[k] * scale
    spend = budget * 0.93
    conversions = (spend ** 0.7) / 4 if k != 4 else 1.0
    revenue = conversions * 60.0
    figures = {"budget": budget, "spend": spend, "impressions": spend / 2.5 * 1000,
               "reach": spend / 2.5 * 610, "clicks": spend / 2.5 * 4, "conversions": conversions,
               "incremental_conversions": conversions * 0.4, "revenue": revenue,
               "incremental_revenue": revenue * 0.4, "romi": (revenue * 0.3 - spend) / spend,
               "incremental_romi": (revenue * 0.12 - spend) / spend, "cpa": spend / conversions}
    row = {"id": IDS[k], "advertiser": "sneaker-co" if k < 4 else HOSTILE}
    for name, value in figures.items():
        change = None if baseline is None else value - baseline[name]["mean"]
        row[name] = _f(value, 0.0 if name == "budget" else 0.12, change)
    if k == 4:  # a campaign with too few conversions to judge
        row["romi"]["too_few"] = row["incremental_romi"]["too_few"] = True
        row["cpa"]["too_few"] = True
    if k == 5 and scale < 1:  # figures left null
        for name in ("romi", "incremental_romi", "cpa"):
            row[name] = _f(None)
    return row


def plan_summary() -> dict:
    """Three plans for six campaigns; the third plan's name is hostile."""
    scales = {"current": [1.0] * 6, "more-retargeting": [1.3, 0.7, 1.0, 1.5, 1.0, 1.0],
              HOSTILE: [1.0, 1.0, 0.8, 1.0, 1.2, 0.5]}
    variants = []
    for name, row in scales.items():
        base = variants[0] if variants else None
        campaigns = [_campaign(k, s, base and base["campaigns"][k]) for k, s in enumerate(row)]
        totals = {}
        for key in campaigns[0]:
            if key in ("id", "advertiser"):
                continue
            total = sum(c[key]["mean"] or 0.0 for c in campaigns)
            before = base and base["totals"][key]["mean"]
            totals[key] = _f(total, change=None if before is None else total - before)
        totals["romi"] = _f(None)  # any figure may be null
        variants.append({"name": name, "folder": name if name != HOSTILE else "v3",
                         "changes": [] if base is None else
                         [f"move {IDS[1]}:{IDS[0]}=30%", f"scale {HOSTILE}=1.2"],
                         "campaigns": campaigns, "totals": totals})
    marginal = [{"id": cid, "extra_budget": BUDGETS[k] * 0.2, "spend": _f(BUDGETS[k] * 0.18),
                 "conversions": _f(2.0 - k * 0.3), "incremental_conversions": _f(0.8 - k * 0.1),
                 "conversions_per_100": _f(1.1 - k * 0.15), "incremental_conversions_per_100": _f(None),
                 "romi": _f(0.4 - k * 0.1), "incremental_romi": _f(-0.1 * k)}
                for k, cid in enumerate(IDS)]
    return {"plan_version": 1, "scenario": f"quickstart {HOSTILE}", "currency": "USD",
            "seeds": [1, 2, 3, 4, 5], "missing_seeds": [4], "confidence": 0.95, "min_events": 10,
            "variants": variants, "marginal": {"step": 0.2, "campaigns": marginal}}


def sweep_summary() -> dict:
    def row(cid, k, scale):
        budget = BUDGETS[k] * scale
        means = {"budget": budget, "spend": budget * 0.9, "impressions": budget * 400,
                 "reach": budget * 250, "clicks": budget * 1.5, "conversions": budget ** 0.7 / 4,
                 "revenue": budget ** 0.7 * 15, "romi": 0.5 / scale - 0.3,
                 "incremental_romi": None if k == 2 else 0.2 / scale - 0.4}
        return {"id": cid, **means, "range": {name: None if v is None else [v * 0.9, v * 1.1]
                                              for name, v in means.items()}}

    by_scale = [{"budget_scale": s, "seeds": 3, "campaigns": [row(IDS[k], k, s) for k in FEWER],
                 "totals": row("", 0, s)} for s in (2.0, 0.5, 1.0)]
    return {"summary_version": 2, "scenario": HOSTILE, "currency": "EUR", "runs": [],
            "missing": ["scale-2.0_seed-3.json"], "by_scale": by_scale}


def optimize_result(curves: bool = True) -> dict:
    current = {IDS[k]: BUDGETS[k] for k in FEWER}
    split = {IDS[k]: BUDGETS[k] * (1.0 if k == 2 else 1.4 if k % 2 else 0.6) for k in FEWER}

    def figures(budgets):
        return {"campaigns": [{"id": cid, "budget": _f(b, 0), "spend": _f(b * 0.9),
                               "conversions": _f(b ** 0.7 / 4), "romi": _f(0.3),
                               "incremental_romi": _f(None)} for cid, b in budgets.items()],
                "totals": {"budget": _f(sum(budgets.values()), 0), "conversions": _f(50.0)}}

    result = {"scenario": "quickstart", "currency": "USD", "objective": "profit", "incremental": True,
              "total_budget": sum(current.values()), "split": split, "current_split": current,
              "expected": figures(split), "current": figures(current),
              "gain": {"mean": 120.5, "low": 40.0, "high": 200.0}, "found_better": True,
              "goal": {"target_conversions": 400, "min_romi": 0.2, "reachable": False,
                       "reason": f"at most 310 conversions within the budget {HOSTILE}"}}
    if curves:
        result["curves"] = [{"id": cid, "points": [
            {"budget": b, "spend": _f(b * 0.9), "conversions": _f(b ** 0.7 / 4),
             "romi": _f(0.9 - b / 2000)} for b in (current[cid] * 0.5, current[cid], current[cid] * 2)]}
            for cid in current]
    return result


PAGES = {"plan": lambda: render_plan_page(plan_summary()),
         "sweep": lambda: render_sweep_page(sweep_summary()),
         "optimize": lambda: render_optimize_page(optimize_result())}


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    return {kind: render().decode("utf-8") for kind, render in PAGES.items()}


# ---------------------------------------------------------------------------------
# Without a browser

def test_hostile_names_are_text_never_markup(pages):
    for kind, text in pages.items():
        assert "<script" not in text.lower(), kind
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text, kind
        assert '"quoted" & <' not in text and "socks-&quot;quoted&quot; &amp; &lt;script&gt;" in text


def test_the_same_input_gives_the_same_bytes():
    smaller = plan_summary()  # the sweep's: test_write_page_and_the_option_check
    for variant in smaller["variants"]:
        del variant["campaigns"][2:]
    assert render_plan_page(smaller) == render_plan_page(smaller)


def test_nothing_is_fetched_nor_linked(pages):
    allowed = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}  # names, not fetched
    for kind, text in pages.items():
        assert set(re.findall(r"https?://[^\s\"'<>)]*", text)) <= allowed, kind
        assert not re.search(r"<(script|img|iframe|object|embed|link(?![^>]*href=\"data:,\"))", text), kind
        assert "Content-Security-Policy" in text


def test_every_campaign_and_every_budget_is_on_the_plan_page(pages):
    text = pages["plan"]
    for cid in IDS:
        assert html_text(cid) in text
    for variant in plan_summary()["variants"]:
        for campaign in variant["campaigns"]:
            budget = campaign["budget"]["mean"]
            assert f">{label(budget, 'USD')}<" in text, budget  # a point's label in a chart
    assert "too few" in text and "–" in text
    assert "Where the next money goes furthest" in text
    assert text.count("<svg") == 1 + len(IDS)  # change bars, and curves per campaign


def test_sweep_and_optimize_pages_label_every_budget(pages):
    for group in sweep_summary()["by_scale"]:
        for campaign in group["campaigns"]:
            assert f">{label(campaign['budget'], 'EUR')}<" in pages["sweep"]
    result = optimize_result()
    for curve in result["curves"]:  # the proposed budgets are not among the curves' points
        for budget in (*[point["budget"] for point in curve["points"]], result["split"][curve["id"]]):
            assert f">{label(budget, 'USD')}<" in pages["optimize"]
    for k in FEWER:
        assert html_text(IDS[k]) in pages["sweep"] and html_text(IDS[k]) in pages["optimize"]
    assert "not reachable" in pages["optimize"] and "+120.50 USD" in pages["optimize"]


def test_missing_curves_and_a_bare_plan_are_tolerated():
    text = render_optimize_page(optimize_result(curves=False)).decode()
    assert text.count("<svg") == 1  # the split only
    bare = render_plan_page({"scenario": "s", "variants": [{"name": "current", "campaigns": [
        {"id": "a", "budget": None, "spend": {"mean": None, "low": None, "high": None}}]}]}).decode()
    assert ">a<" in bare and "next money" not in bare


@pytest.mark.parametrize("kind, data", [
    ("plan", {}), ("sweep", {}), ("optimize", {}),
    ("plan", {"variants": [{"name": None, "campaigns": [{"id": None}]}, {"campaigns": [{"id": None}]}],
              "marginal": {"campaigns": [{}]}, "seeds": None, "confidence": "high"}),
    ("sweep", {"by_scale": [{"budget_scale": 1, "campaigns": [{"id": "a", "range": None}]}]}),
    ("optimize", {"split": {"a": None}, "curves": [{"id": "a", "points": [{}]}], "gain": None,
                  "goal": {"reachable": True}}),
])
def test_empty_and_null_inputs_give_a_page(kind, data):
    text = {"plan": render_plan_page, "sweep": render_sweep_page,
            "optimize": render_optimize_page}[kind](data).decode()
    assert text.startswith("<!DOCTYPE html>") and text.endswith("</html>\n")


def test_write_page_and_the_option_check(tmp_path):
    tiny = sweep_summary()
    for group in tiny["by_scale"]:
        del group["campaigns"][1:]
    write_page("sweep", tiny, tmp_path / "sweep.html")
    assert (tmp_path / "sweep.html").read_bytes() == render_sweep_page(tiny)
    assert [p.name for p in tmp_path.iterdir()] == ["sweep.html"]  # no temporary left
    check_html_option(tmp_path / "a.HTM")
    check_html_option(None)
    with pytest.raises(InputError, match="a page is a .html or .htm file"):
        check_html_option(tmp_path / "a.pdf")
    with pytest.raises(ValueError, match="a page is one of plan, sweep, optimize"):
        write_page("report", {}, tmp_path / "x.html")


def html_text(name: str) -> str:
    import html

    return html.escape(name, quote=True)


def label(budget: float, currency: str) -> str:
    from rtb.html_format import budget_label

    return html_text(budget_label(budget, currency))


# ---------------------------------------------------------------------------------
# In a real browser

BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def find_chromium() -> str | None:
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for all the pages (a start costs about a second)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install '.[test]')")
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium found (/usr/bin/chromium or chromium on PATH): apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=BROWSER_ARGS)
        yield browser
        browser.close()


@pytest.mark.parametrize("kind", PAGES)
def test_the_page_renders_in_a_browser_fetching_nothing(browser, pages, kind, tmp_path):
    from PIL import Image
    import numpy as np

    path = tmp_path / f"{kind}.html"
    path.write_text(pages[kind], encoding="utf-8")
    url = path.as_uri()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    requests, errors = [], []
    context.route(re.compile(r"^(?!file:).*"), lambda route: route.abort())  # never the network
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("dialog", lambda dialog: (errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    try:
        page.goto(url, wait_until="load")
        assert page.locator("svg").count() == pages[kind].count("<svg")
        assert HOSTILE in page.inner_text("body")  # shown as text
        shots = [page.screenshot(), page.locator("svg").first.screenshot()]  # the top; a chart
    finally:
        context.close()
    assert errors == []
    assert requests == [url]
    for shot in shots:
        pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"))
        assert pixels.shape[0] > 200 and pixels.shape[1] > 800
        rgb = pixels.reshape(-1, 3).astype(np.int32)
        colours = np.unique(rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2])  # 1-D: fast
        assert len(colours) > 50, "the screenshot is nearly one colour"
        assert (pixels < 200).any(axis=2).mean() > 0.02, "the screenshot is nearly blank"
