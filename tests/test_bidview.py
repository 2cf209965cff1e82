"""What a bidder sees (dsp.strategies.BidView) and learns (Feedback), on the two-hour quickstart.

A recording strategy bids like a built-in and keeps every view and feedback; the
tick's request batches are recorded beside it, so each view can be checked against
a plain-Python twin of the targeting rule and the report.
"""

from __future__ import annotations

import numpy as np
import pytest

from dsp.strategies import ConstantBid, LinearBid, McpcBid
from rtb import simulate
from rtb.exchange import Exchange
from rtb.market import build_market
from rtb.scenario import load_scenario
from rtb.types import MICROS_PER_UNIT

CAMPAIGNS = {  # the quickstart's own strategies for them, as classes
    "mealkit-foodies": LinearBid(2.0, 0.002),  # segment-targeted
    "mealkit-video": ConstantBid(9.0),  # a flight inside the run; the private deal admits it
    "gadgets-cpc": McpcBid(0.8),  # no segments: sees users with and without consent
}
FIELDS = ("time_s", "publisher", "slot", "format", "device", "geo", "segments", "deal",
          "deal_floor_cpm", "paced_in", "floor_cpm", "pctr", "pcvr")


class Recording:
    """Bids as `inner` does, on the view; keeps what it saw and what it was told."""

    def __init__(self, inner):
        self.inner, self.views, self.feedback = inner, [], []

    def bid(self, view):
        seen = {name: np.array(getattr(view, name)) for name in FIELDS}
        for name in ("spend", "budget_left", "daily_budget_left", "day_left_s", "flight_left_s",
                     "tick_start_s", "tick_end_s", "labels"):
            seen[name] = getattr(view, name)
        self.views.append(seen)
        return self.inner.bid(view)

    def observe(self, feedback):
        self.feedback.append(feedback)


@pytest.fixture(scope="module")
def spec(two_hour_scenario, tmp_path_factory):
    """The two-hour quickstart with conversions that come within the two hours."""
    text = two_hour_scenario.read_text()
    for old, new in [('conversion_delay = "8h"', 'conversion_delay = "10m"'),
                     ("cvr = { banner = 0.025, video = 0.02, native = 0.03 }",
                      "cvr = { banner = 0.5, video = 0.5, native = 0.5 }")]:
        assert old in text, f"the quickstart changed: {old!r} not found"
        text = text.replace(old, new)
    path = tmp_path_factory.mktemp("bidview") / "quickstart-2h-converting.toml"
    path.write_text(text)
    return load_scenario(path)


@pytest.fixture(scope="module")
def runs(spec):
    """(plain report, recorded report, recorders, the ticks' request batches, market)."""
    plain = simulate(spec)
    batches = []
    original = Exchange._floors_in_force

    def recording_floors(self, requests):
        batch = original(self, requests)
        batches.append(batch)
        return batch

    recorders = {cid: Recording(inner) for cid, inner in CAMPAIGNS.items()}
    patch = pytest.MonkeyPatch()
    patch.setattr(Exchange, "_floors_in_force", recording_floors)
    try:
        recorded = simulate(spec, strategies=recorders)
    finally:
        patch.undo()
    return plain, recorded, recorders, batches, build_market(spec)


def _campaign(report, cid):
    return next(c for c in report.to_dict()["campaigns"] if c["id"] == cid)


def _eligible_py(market, c, batch):
    """The requests campaign c may bid on, request by request: targeting bits (brand
    safety clears them), flight, a private deal's buyers."""
    table, deals = market.campaigns, market.deals.deals
    rows = []
    for i in range(batch.time_s.size):
        word = int(table.slot_words[batch.target_row[i], c // 64]) & int(table.user_words[batch.user[i], c // 64])
        d = int(batch.deal[i])
        if ((word >> (c % 64)) & 1 and table.flight_start_s[c] <= batch.time_s[i] < table.flight_end_s[c]
                and (d < 0 or not deals.private[d] or deals.allowed[d, c])):
            rows.append(i)
    return np.array(rows, dtype=np.int64)


def test_a_recording_strategy_that_bids_like_the_built_in_changes_no_byte(runs):
    plain, recorded, *_ = runs
    assert recorded.to_json() == plain.to_json()


def test_views_hold_exactly_the_eligible_requests_with_their_fields(runs):
    _, _, recorders, batches, market = runs
    by_start = {float(b.time_s[0]) // market.tick_s: b for b in batches if b.time_s.size}
    visible, consent = market.audience.visible_segments, market.audience.consent
    for cid, recorder in recorders.items():
        c = market.campaigns.ids.index(cid)
        assert len(recorder.views) > 50
        for view in recorder.views:
            batch = by_start[view["tick_start_s"] // market.tick_s]
            rows = _eligible_py(market, c, batch)
            np.testing.assert_array_equal(view["time_s"], batch.time_s[rows])
            np.testing.assert_array_equal(view["slot"], batch.slot[rows])
            np.testing.assert_array_equal(view["deal"], batch.deal[rows])
            np.testing.assert_array_equal(view["segments"], visible[batch.user[rows]])
            np.testing.assert_array_equal(view["device"], market.inventory.slot_device[batch.slot[rows]])
            assert ((view["tick_start_s"] <= view["time_s"]) & (view["time_s"] < view["tick_end_s"])).all()
            # Segments only with consent, and only the user's own.
            no_consent = ~consent[batch.user[rows]]
            assert (view["segments"][no_consent] == 0).all()
            assert (view["segments"] & ~market.audience.segments[batch.user[rows]] == 0).all()
            has_deal = view["deal"] >= 0
            assert np.isnan(view["deal_floor_cpm"][~has_deal]).all()
            np.testing.assert_array_equal(view["deal_floor_cpm"][has_deal],
                                          market.deals.deals.floor_cpm[view["deal"][has_deal]])
            assert view["labels"].campaign == cid
    # The quickstart exercises what is checked: users without consent in the broad
    # campaign's view, the private deal's requests in meal-kit's only.
    gadgets, mealkit = recorders["gadgets-cpc"].views, recorders["mealkit-video"].views
    assert any((v["segments"] == 0).any() and (v["segments"] != 0).any() for v in gadgets)
    assert any((v["deal"] >= 0).any() for v in mealkit)
    assert all(not market.deals.deals.private[v["deal"][v["deal"] >= 0]].any() for v in gadgets)


def test_the_kernel_counts_the_same_requests_as_the_views(runs):
    """Every view row is a bid the kernel found targeted: the bid outcomes after the
    targeting test (paced .. won) add up to the views' sizes."""
    _, recorded, recorders, *_ = runs
    for cid, recorder in recorders.items():
        outcomes = _campaign(recorded, cid)["bid_outcomes"]
        targeted = sum(v for k, v in outcomes.items() if k not in ("not_targeted", "blocked"))
        assert targeted == sum(v["time_s"].size for v in recorder.views), cid


def test_campaign_state_in_the_view_and_the_feedback_add_up_to_the_report(runs):
    _, recorded, recorders, *_ = runs
    for cid, recorder in recorders.items():
        report = _campaign(recorded, cid)
        budget_micros = round(report["budget"] * MICROS_PER_UNIT)
        ticks = {f.tick_start_s: f for f in recorder.feedback}
        spent_micros = 0  # from the feedback of the ticks before
        for view in recorder.views:
            assert round(view["spend"] * MICROS_PER_UNIT) == spent_micros
            assert round(view["budget_left"] * MICROS_PER_UNIT) == budget_micros - spent_micros
            assert 0 < view["day_left_s"] <= 86_400 and view["flight_left_s"] > 0
            feedback = ticks.get(view["tick_start_s"])
            if feedback is not None:
                # won: rows of this tick's view, with the times and prices paid there.
                np.testing.assert_array_equal(view["time_s"][feedback.won], feedback.time_s)
                assert (feedback.price_cpm >= view["floor_cpm"][feedback.won]).all()
                spent_micros += feedback.spend_micros
        costs = [np.rint(f.cost * MICROS_PER_UNIT).astype(np.int64) for f in recorder.feedback]
        assert sum(int(c.sum()) for c in costs) == sum(f.spend_micros for f in recorder.feedback)
        assert sum(f.spend_micros for f in recorder.feedback) == round(report["spend"] * MICROS_PER_UNIT)
        assert sum(int(f.clicked.sum()) for f in recorder.feedback) == report["clicks"]
        # Conversions: those credited to the campaign (the report's attributed count),
        # in the tick they are settled, each naming an impression the campaign won.
        conversions = np.concatenate([f.conversion_time_s for f in recorder.feedback])
        impressions = np.concatenate([f.conversion_impression_s for f in recorder.feedback])
        won_at = np.concatenate([f.time_s for f in recorder.feedback])
        assert conversions.size == report["conversions"]
        assert np.isin(impressions, won_at).all() and (impressions < conversions).all()
        for f in recorder.feedback:
            assert ((f.tick_start_s <= f.conversion_time_s) & (f.conversion_time_s < f.tick_end_s)).all()
    assert sum(_campaign(recorded, cid)["conversions"] for cid in recorders) >= 5
