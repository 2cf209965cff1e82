"""The compact per-user row (rtb/layout.py): the same reports as the wide row, what it
holds for which runs, and the estimate's arithmetic equal to the state's."""

from __future__ import annotations

import orjson
import pytest

import rtb.state
from rtb import simulate
from rtb.books import all_touches
from rtb.engine import Run
from rtb.estimate import user_row_layout
from rtb.layout import (BY_EXPOSURES, COUNTER, NO_COLUMN, RING, cap_columns, narrow_touch_fits,
                        row_layout, touch_rank_bits)
from rtb.market import build_market
from rtb.scenario import parse_scenario

DAY = 86_400.0


def market(duration: str, *, advertiser_cap: bool = False, start: str = "2026-11-27T00:00:00Z"):
    """Two advertisers (one with three campaigns), calendar and rolling caps of several
    windows, enough requests on few users that caps and touches are busy: the capped
    campaigns bid highest, every one wins and is capped."""
    caps = [{"impressions": 2, "window": "1d", "kind": "calendar"},
            {"impressions": 3, "window": "1h", "kind": "calendar"},
            {"impressions": 2, "window": "6h", "kind": "rolling"},
            {"impressions": 3, "window": "30m", "kind": "rolling"}, None]
    campaigns = []
    for c, cap in enumerate(caps):
        camp = {"id": f"c{c}", "advertiser": "a" if c < 3 else "b", "dsp": "d",
                "budget": 1e6, "pacing": "asap", "strategy": {"kind": "fixed", "bid_cpm": [3.0, 4.0, 5.0, 8.0, 2.0][c]}}
        if cap is not None:
            camp["frequency_cap"] = cap
        campaigns.append(camp)
    advertisers = [{"id": "a", "value_per_conversion": 50.0},
                   {"id": "b", "value_per_conversion": 20.0}]
    if advertiser_cap:
        advertisers[1]["frequency_cap"] = {"impressions": 4, "window": "1h"}
    return parse_scenario({
        "name": "layout",
        "simulation": {"seed": 5, "start": start, "duration": duration, "tick": "5m"},
        "exchange": {"market": {"kind": "lognormal", "median_cpm": 1.5}},
        "ssps": [{"id": "s"}],
        "publishers": [{"id": "p", "ssp": "s", "slots": [
            {"id": "x", "daily_requests": 200_000, "floor_cpm": 0.1}]}],
        "dsps": [{"id": "d"}],
        "advertisers": advertisers,
        "campaigns": campaigns,
        "dmp": {"users": 3_000, "activity_skew": 1.5},
        "behaviour": {"ctr": {"banner": 0.05}, "cvr": {"banner": 0.3},
                      "organic_conversion_rate": 0.05, "conversion_delay": "20m",
                      "attribution_window": "2h"},
    }, "layout.toml")


def _report(spec, compact: bool, monkeypatch) -> bytes:
    monkeypatch.setattr(rtb.state, "COMPACT_ROWS", compact)
    return orjson.dumps(simulate(spec).to_dict(), option=orjson.OPT_SORT_KEYS)


@pytest.mark.parametrize("duration, advertiser_cap", [
    ("2h", False), ("2h", True), ("8h", True), ("26h", False)])
def test_compact_rows_give_the_wide_rows_report(duration, advertiser_cap, monkeypatch):
    spec = market(duration, advertiser_cap=advertiser_cap)
    assert _report(spec, True, monkeypatch) == _report(spec, False, monkeypatch)


def test_a_run_that_crosses_a_calendar_window_keeps_its_counter(monkeypatch):
    """Starting at 23:00, the 1 d calendar window ends an hour in: a counter of its own."""
    spec = market("2h", start="2026-11-27T23:00:00Z")
    m = build_market(spec)
    assert user_row_layout(spec).n_counts == 2  # the 1 d and the 1 h calendar caps
    assert rtb.state.user_layout(m) == user_row_layout(spec)
    assert _report(spec, True, monkeypatch) == _report(spec, False, monkeypatch)


def test_what_each_run_keeps():
    two_hours = user_row_layout(market("2h"))
    # 1 d calendar, 6 h and 30 m... 2 h: 1 d (window outlasts) and 6 h rolling by exposures;
    # the 1 h calendar window ends inside; the 30 m rolling cap keeps 3 times.
    assert (two_hours.n_counts, two_hours.ring, two_hours.touch_bytes) == (1, 3, 4)
    day = user_row_layout(market("26h", advertiser_cap=True))
    assert (day.n_counts, day.ring, day.touch_bytes, day.n_adv_counts) == (2, 5, 8, 1)
    kinds = ["calendar", "calendar", "rolling", "rolling", None]
    windows = [DAY, 3600.0, 6 * 3600.0, 1800.0, 1.0]
    assert cap_columns(kinds, windows, 0.0, 7200.0) == [BY_EXPOSURES, COUNTER, BY_EXPOSURES,
                                                        RING, NO_COLUMN]
    assert cap_columns(kinds, windows, 0.0, 7200.0, compact=False) == [COUNTER, COUNTER, RING,
                                                                       RING, NO_COLUMN]


def test_narrow_touches_fit_exactly():
    # ((units + 1) << bits) | (2**bits - 1) < 2**32
    assert touch_rank_bits(1) == 0 and touch_rank_bits(3) == 2 and touch_rank_bits(4) == 2
    assert narrow_touch_fits(65_535.0, 0) and not narrow_touch_fits(65_536.0, 0)
    assert narrow_touch_fits(16_383.0, 2) and not narrow_touch_fits(16_384.0, 2)
    layout = row_layout(1, 1, 0.0, 7 * DAY, [None], [0], [1.0], 0, 1)
    assert layout.touch_bytes == 8  # a week does not fit 32 bits of clock units


@pytest.mark.parametrize("duration", ["2h", "26h"])
def test_estimate_lays_out_the_row_of_the_state(duration):
    for cap in (False, True):
        spec = market(duration, advertiser_cap=cap)
        assert rtb.state.user_layout(build_market(spec)) == user_row_layout(spec)


def test_rows_are_one_buffer_and_touches_read_wide():
    run = Run(market("2h", advertiser_cap=True))
    run.finish()
    s = run.state
    base = s.users.exposures.base
    for column in (s.caps.counts, s.caps.times, s.caps.adv_counts, s.users.last_touch):
        assert column.base is base or column.base.base is base
    touches = all_touches(s.users)
    assert s.users.last_touch.dtype.itemsize == 4 and (touches >= 0).any()
    # Every touch is a campaign of its own advertiser, at a time inside the run.
    campaign, advertiser = touches & 0xFFFF, touches * 0 + range(touches.shape[1])
    seen = touches >= 0
    assert (run.market.campaigns.advertiser[campaign[seen]] == advertiser[seen]).all()
    assert ((touches[seen] >> 16) < 2 * 3600 * 65536).all()
