"""Pictures of a budget sweep (rtb.plot): drawn from the summary, the same bytes each time."""

from __future__ import annotations

import pytest

from rtb.plot import plot_format, plot_sweep
from rtb.sweep import SUMMARY_FIELDS

pytest.importorskip("matplotlib")


def _figures(**given) -> dict:
    figures = {name: given.get(name, 1.0) for name in SUMMARY_FIELDS}
    figures["range"] = {name: None if figures[name] is None else [figures[name] * 0.9,
                                                                   figures[name] * 1.1]
                        for name in SUMMARY_FIELDS}
    return figures


def _summary() -> dict:
    """Two scales; the campaign bought nothing at the lower one (no ROMI there)."""
    return {"scenario": "tiny", "by_scale": [
        {"budget_scale": 2.0, "seeds": 3, "totals": _figures(),
         "campaigns": [{"id": "spring-sale", **_figures(spend=40.0, conversions=6.0, romi=0.5)}]},
        {"budget_scale": 0.5, "seeds": 3, "totals": _figures(),
         "campaigns": [{"id": "spring-sale", **_figures(spend=0.0, conversions=0.0, romi=None)}]},
    ]}


def test_svg_names_the_campaign_and_is_the_same_bytes_twice(tmp_path):
    first, second = tmp_path / "a.svg", tmp_path / "b.svg"
    plot_sweep(_summary(), first)
    plot_sweep(_summary(), second)
    text = first.read_text()
    assert "spring-sale" in text and "budget scale" in text
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.svg", "b.svg"]  # no temporary left


def test_pdf_has_no_creation_date_and_other_suffixes_are_refused(tmp_path):
    plot_sweep(_summary(), tmp_path / "c.PDF")
    assert b"CreationDate" not in (tmp_path / "c.PDF").read_bytes()
    assert plot_format(tmp_path / "c.PDF") == "pdf" and plot_format(tmp_path / "c.jpg") is None
    with pytest.raises(ValueError, match="a picture is one of png, svg, pdf"):
        plot_sweep(_summary(), tmp_path / "c.jpg")
