"""The compact per-user row (rtb/layout.py): the same reports as the wide row, what it
holds for which runs, and the estimate's arithmetic equal to the state's."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

import rtb.exchange
import rtb.state
from rtb import simulate
from rtb.books import all_touches
from rtb.engine import Run
from rtb.estimate import user_row_layout
from rtb.layout import (BY_EXPOSURES, COUNTER, NO_COLUMN, RING, cap_columns, high_bytes,
                        row_layout, touch_rank_bits, value_bits)
from rtb.market import build_market
from rtb.scenario import parse_scenario
from touch_book import HIGH_DTYPES, high_width, touch_value, wide_value

DAY = 86_400.0


def market(duration: str, *, advertiser_cap: bool = False, start: str = "2026-11-27T00:00:00Z",
           dmp: dict | None = None):
    """Two advertisers (one with three campaigns), calendar and rolling caps of several
    windows, enough requests on few users that caps and touches are busy: the capped
    campaigns bid highest, every one wins and is capped. dmp: more of the DMP's fields."""
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
        "dmp": {"users": 3_000, "activity_skew": 1.5} | (dmp or {}),
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
    assert two_hours.high == 0  # 2 h of clock units and 2 rank bits: 31 bits
    day = user_row_layout(market("26h", advertiser_cap=True))
    # 26 h: 35 bits, a high byte for each ring time and touch.
    assert (day.n_counts, day.ring, day.touch_bytes, day.n_adv_counts) == (2, 5, 5, 1)
    assert day.high == 1
    kinds = ["calendar", "calendar", "rolling", "rolling", None]
    windows = [DAY, 3600.0, 6 * 3600.0, 1800.0, 1.0]
    assert cap_columns(kinds, windows, 0.0, 7200.0) == [BY_EXPOSURES, COUNTER, BY_EXPOSURES,
                                                        RING, NO_COLUMN]
    assert cap_columns(kinds, windows, 0.0, 7200.0, compact=False) == [COUNTER, COUNTER, RING,
                                                                       RING, NO_COLUMN]


def test_high_parts_fit_exactly():
    # The largest touch: ((units + 1) << bits) | (2**bits - 1); the high part holds its
    # bits past 32 in the fewest of 0, 1, 2 or 4 bytes.
    assert touch_rank_bits(1) == 0 and touch_rank_bits(3) == 2 and touch_rank_bits(4) == 2
    assert value_bits(65_535.0, 0) == 32 and value_bits(65_536.0, 0) == 33
    assert value_bits(16_383.0, 2) == 32 and value_bits(16_384.0, 2) == 33
    assert high_bytes(65_535.0, 0) == 0 and high_bytes(65_536.0, 0) == 1
    assert high_bytes(16_383.0, 2) == 0 and high_bytes(16_384.0, 2) == 1
    # 40 bits: 2**24 s of clock units; 48 bits: 2**32 s (more than touches can say).
    assert high_bytes(2.0**24 - 1, 0) == 1 and high_bytes(2.0**24, 0) == 2
    assert high_bytes(2.0**22 - 1, 2) == 1 and high_bytes(2.0**22, 2) == 2
    assert high_bytes(2.0**32 - 1, 0) == 2 and high_bytes(2.0**32, 0) == 4
    # Not compact: a high part however short the run.
    assert high_bytes(7200.0, 0, compact=False) == 1 and high_bytes(2.0**24, 0, compact=False) == 2
    two_hours = row_layout(1, 1, 0.0, 7200.0, [None], [0], [1.0], 0, 1)
    assert (two_hours.high, two_hours.touch_bytes) == (0, 4)
    assert row_layout(1, 1, 0.0, 7200.0, [None], [0], [1.0], 0, 1, compact=False).touch_bytes == 5
    week = row_layout(1, 1, 0.0, 7 * DAY, [None], [0], [1.0], 0, 1)
    assert value_bits(7 * DAY, 0) == 36  # a week does not fit 32 bits of clock units
    assert (week.high, week.touch_bytes) == (1, 5)  # a high byte, not a wider touch


@pytest.mark.parametrize("duration", ["2h", "26h"])
def test_estimate_lays_out_the_row_of_the_state(duration):
    for cap in (False, True):
        spec = market(duration, advertiser_cap=cap)
        assert rtb.state.user_layout(build_market(spec)) == user_row_layout(spec)


@pytest.mark.parametrize("duration, seconds, high", [("2h", 7200.0, 0), ("7d", 7 * DAY, 1)])
def test_rows_are_one_buffer_and_touches_read_wide(duration, seconds, high):
    """A 2-hour run's ring times and touches fit 32 bits: no high part. A week's need
    36 bits and more: a high byte, which its late touches and ring times use. Either
    way, touches read back whole."""
    run = Run(market(duration, advertiser_cap=True))
    run.finish()
    s = run.state
    base = s.users.exposures.base
    for column in (s.caps.counts, s.caps.ring_low, s.caps.ring_high, s.caps.adv_counts,
                   s.users.touch_low, s.users.touch_high):
        assert column.base is base or column.base.base is base
    for column in (s.caps.ring_high, s.users.touch_high):
        assert high_width(column) == high and column.dtype == HIGH_DTYPES[high]
    touches = all_touches(s.users)
    assert (touches >= 0).any()
    # Every touch is a campaign of its own advertiser, at a time inside the run, and what
    # the user's row holds (tests/touch_book.py's reading).
    campaign, advertiser = touches & 0xFFFF, touches * 0 + range(touches.shape[1])
    seen = touches >= 0
    assert (run.market.campaigns.advertiser[campaign[seen]] == advertiser[seen]).all()
    assert ((touches[seen] >> 16) < seconds * 65536).all()
    for u, a in zip(*np.nonzero(seen)):
        assert touches[u, a] == wide_value(s.users, touch_value(s.users, s.users.row_of[u], a), a)
    late = (touches[seen] >> 16) >= 65_536 * 65_536  # after 65,536 s: past 32 bits
    assert late.any() == bool(s.users.touch_high.any()) == bool(s.caps.ring_high.any()) == (high > 0)


def test_rows_are_handed_out_in_order_of_first_appearance(monkeypatch):
    """An id gets a row when it first appears in a request, the next free one (row 0 is
    every request's without an id, and never written): rows 1 .. rows_in_use - 1 go to
    the ids requested, in order, each once; the ids never requested have none (0), and
    the rows past those handed out are all zero bytes."""
    drawn = []  # (user, user_row) of each tick's requests, in tick order
    hand_out = rtb.exchange.assign_user_rows_nb

    def spy(row_of, rows_in_use, user, no_id_row):
        user_row = hand_out(row_of, rows_in_use, user, no_id_row)
        drawn.append((user.copy(), user_row.copy()))
        return user_row

    monkeypatch.setattr(rtb.exchange, "assign_user_rows_nb", spy)
    # Half an hour: most ids never show up; without consent a request carries no id;
    # ids churn, so new ones appear during the run.
    run = Run(market("30m", dmp={"consent_rate": 0.7, "identity": {"id_lifetime": "10m"}}))
    run.finish()
    users, n = run.state.users, run.market.n_users
    user = np.concatenate([u for u, _ in drawn])
    user_row = np.concatenate([r for _, r in drawn])
    with_id = user < users.no_id_row
    assert with_id.any() and not with_id.all()
    assert (user_row[~with_id] == 0).all()
    # The ids in order of first appearance get rows 1, 2, ...
    ids, first = np.unique(user[with_id], return_index=True)
    in_order = ids[np.argsort(first)]
    rows_in_use = int(users.rows_in_use[0])
    assert rows_in_use == in_order.size + 1
    assert (users.row_of[in_order] == np.arange(1, rows_in_use)).all()
    assert (user_row[with_id] == users.row_of[user[with_id]]).all()
    never = np.setdiff1d(np.arange(n), in_order)
    assert 0 < never.size and (users.row_of[never] == 0).all()
    assert sorted(users.row_of[users.row_of > 0].tolist()) == list(range(1, rows_in_use))
    # The whole buffer, padding too: row 0 and the rows past those handed out are zero.
    layout = rtb.state.user_layout(run.market)
    flat = users.exposures.base
    while flat.base is not None:
        flat = flat.base
    start = run.state.caps.ring_low.ctypes.data - flat.ctypes.data  # each row's first byte
    buffer = flat[start:start + (n + 1) * layout.row_bytes].reshape(n + 1, layout.row_bytes)
    assert (buffer[:, layout.exposures_at:layout.exposures_at + layout.nc] == users.exposures).all()
    assert users.exposures.shape[0] == n + 1 and users.exposures.strides[0] == layout.row_bytes
    assert buffer[:rows_in_use].any(axis=1).sum() > rows_in_use // 2  # the rows are written
    assert not buffer[0].any() and not buffer[rows_in_use:].any()
