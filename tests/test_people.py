"""People behind the ids (rtb.people): the person-level book against a plain-Python walk
of the impression log, its windows against the kernel's, the report's figures against a
hand count, and cap leakage against its closed form.

The runs record every won impression with a recording fake of the impression log
(exact float times, in the order the exchange writes them). Until the market itself
groups ids into people, the tests group the ids themselves (group sizes drawn from a
known distribution): the book does not care where a person's ids come from.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from itertools import pairwise
from types import SimpleNamespace

import numpy as np
import pytest

from rtb.engine import Run
from rtb.people import HISTOGRAM_BINS, new_people_book, people_figures, record_people
from rtb.scenario import Scenario
from rtb.types import CAP_CALENDAR, CAP_ROLLING, LOSS_FREQUENCY_CAPPED

GROUP_SIZES = {1: 0.5, 2: 0.3, 3: 0.2}  # ids per person in the tests' own grouping


class RecordingLog:
    """The impression log's interface, keeping the rows in memory."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def write(self, time_s, user, slot, campaign, *rest) -> None:
        self.parts.append((np.array(time_s, dtype=np.float64), np.array(user, dtype=np.int64),
                           np.array(campaign, dtype=np.int64)))

    def close(self) -> None: ...

    def abort(self) -> None: ...

    def rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.parts:
            return tuple(np.empty(0, dtype=d) for d in (np.float64, np.int64, np.int64))
        return tuple(np.concatenate(c) for c in zip(*self.parts))


def tiny_scenario(*, start="2026-03-02T10:20:00Z", duration="6h", users=60,
                  daily_requests=20_000.0, campaigns=None, advertiser_cap=None) -> dict:
    """One publisher, desktop and mobile banners, three campaigns that outbid the market
    (calendar cap, rolling cap, none), two advertisers."""
    if campaigns is None:
        campaigns = [
            {"id": "calendar", "advertiser": "a", "bid": 6.0,
             "frequency_cap": {"impressions": 3, "window": "1h", "kind": "calendar"}},
            {"id": "rolling", "advertiser": "a", "bid": 5.0,
             "frequency_cap": {"impressions": 2, "window": "30m", "kind": "rolling"}},
            {"id": "free", "advertiser": "b", "bid": 4.0},
        ]
    if advertiser_cap is None:
        advertiser_cap = {"impressions": 4, "window": "2h"}
    return {
        "name": "people",
        "simulation": {"seed": 11, "start": start, "duration": duration, "tick": "300s"},
        "exchange": {"auction": "second", "fee": 0.1,
                     "market": {"kind": "lognormal", "median_cpm": 0.5, "sigma": 0.3,
                                "participation": 0.5}},
        "ssps": [{"id": "ssp", "fee": 0.1}],
        "publishers": [{"id": "pub", "ssp": "ssp", "category": "news", "slots": [
            {"id": "d", "format": "banner", "device": "desktop", "daily_requests": daily_requests,
             "floor_cpm": 0.1},
            {"id": "m", "format": "banner", "device": "mobile", "daily_requests": daily_requests,
             "floor_cpm": 0.1}]}],
        "dsps": [{"id": "dsp", "fee": 0.1}],
        "advertisers": [{"id": "a", "value_per_conversion": 50.0, "frequency_cap": advertiser_cap},
                        {"id": "b", "value_per_conversion": 50.0}],
        "campaigns": [{"id": c["id"], "advertiser": c["advertiser"], "dsp": "dsp", "budget": 1000.0,
                       "strategy": {"kind": "fixed", "bid_cpm": c["bid"]}, "pacing": "asap",
                       **({"frequency_cap": c["frequency_cap"]} if "frequency_cap" in c else {})}
                      for c in campaigns],
        "dmp": {"users": users, "devices": {"desktop": 0.5, "mobile": 0.5}, "geos": {"US": 1.0},
                "consent_rate": 1.0, "activity_skew": 0.1, "segments": []},
        "behaviour": {"ctr": {"banner": 0.002, "video": 0.01, "native": 0.005}},
    }


def run_recorded(data: dict):
    """A run of the scenario with every won impression recorded: (run, time, id, campaign)."""
    run = Run(Scenario.model_validate(data))
    log = RecordingLog()
    run.exchange.log = log
    report = run.finish()
    return run, report, *log.rows()


def group_ids(n_ids: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """person i8[n_ids] for consecutive ids grouped by sizes drawn from GROUP_SIZES, and
    the ids per person."""
    rng = np.random.default_rng(seed)
    sizes = rng.choice(list(GROUP_SIZES), size=n_ids, p=list(GROUP_SIZES.values()))
    ends = np.cumsum(sizes)
    sizes = sizes[: np.searchsorted(ends, n_ids) + 1]
    sizes[-1] -= ends[sizes.size - 1] - n_ids  # the last person takes the ids left
    return np.repeat(np.arange(sizes.size), sizes), sizes


def recorded_book(run, time_s, person, campaign, n_people):
    """The people book after feeding it the run's impressions tick by tick, as the
    exchange would."""
    book = new_people_book(run.market, n_people)
    tick = run.market.tick_s
    bounds = np.searchsorted(time_s, np.arange(0.0, run.market.duration_s + tick, tick))
    for lo, hi in pairwise(bounds):
        record_people(book, run.market, time_s[lo:hi], person[lo:hi], campaign[lo:hi])
    return book


def people_py(market, time_s, person, campaign):
    """The person-level caps as a plain walk, with windows by their index in UTC epoch
    time (floor((start + t) / window)) rather than by running boundaries."""
    table = market.campaigns
    epoch = market.start.timestamp()
    exposures, adv_exposures = Counter(), Counter()
    window_counts, recent = Counter(), defaultdict(list)
    leakage = np.zeros(len(table.ids), dtype=np.int64)
    adv_leakage = np.zeros(market.advertiser_value.size, dtype=np.int64)
    for t, p, c in zip(time_s.tolist(), person.tolist(), campaign.tolist()):
        a = int(table.advertiser[c])
        exposures[p, c] += 1
        adv_exposures[p, a] += 1
        limit, window = int(table.cap_limit[c]), float(table.cap_window_s[c])
        if table.cap_kind[c] == CAP_CALENDAR:
            key = (p, c, int((epoch + t) // window))
            leakage[c] += window_counts[key] >= limit
            window_counts[key] += 1
        elif table.cap_kind[c] == CAP_ROLLING:
            leakage[c] += sum(1 for s in recent[p, c] if s > t - window) >= limit
            recent[p, c].append(t)
        if market.advertiser_cap_impressions[a] > 0:
            key = (p, -1 - a, int((epoch + t) // float(market.advertiser_cap_window_s[a])))
            adv_leakage[a] += window_counts[key] >= market.advertiser_cap_impressions[a]
            window_counts[key] += 1
    return exposures, adv_exposures, leakage, adv_leakage


@pytest.fixture(scope="module")
def recorded():
    return run_recorded(tiny_scenario())


def test_the_book_matches_a_plain_walk_of_the_log(recorded):
    run, _, time_s, ids, campaign = recorded
    assert np.all(np.diff(time_s) >= 0), "the exchange writes impressions in time order"
    person_of, sizes = group_ids(run.market.n_users)
    person = person_of[ids]
    book = recorded_book(run, time_s, person, campaign, sizes.size)
    exposures, adv_exposures, leakage, adv_leakage = people_py(run.market, time_s, person, campaign)
    assert (leakage[:2] > 0).all() and adv_leakage[0] > 0, "nothing to check: no person went past a cap"
    assert book.leakage.tolist() == leakage.tolist()
    assert book.adv_leakage.tolist() == adv_leakage.tolist()
    expected = np.zeros_like(book.exposures)
    for (p, c), n in exposures.items():
        expected[p, c] = min(n, 255)
    assert np.array_equal(book.exposures, expected)
    expected = np.zeros_like(book.adv_exposures)
    for (p, a), n in adv_exposures.items():
        expected[p, a] = min(n, 255)
    assert np.array_equal(book.adv_exposures, expected)


def test_one_id_per_person_the_book_is_the_kernels_twin(recorded):
    """People = ids: the person-level caps are the kernel's, window for window (an
    off-by-one window boundary would show as leakage), and exposures are the kernel's."""
    run, report, time_s, ids, campaign = recorded
    book = recorded_book(run, time_s, ids, campaign, run.market.n_users)
    nc = len(run.market.campaigns.ids)
    assert book.leakage.tolist() == [0] * nc
    assert book.adv_leakage.tolist() == [0, 0]
    # The kernel's exposures are per row (rows handed out as ids appear; row 0, never
    # written, is every other id's): each id's through its row.
    users = run.state.users
    assert np.array_equal(book.exposures, users.exposures[users.row_of, :nc])
    assert not users.exposures[0].any()
    assert (run.state.book.outcomes[:2, LOSS_FREQUENCY_CAPPED] > 0).all(), "both caps should bite"
    state = SimpleNamespace(book=run.state.book, users=run.state.users, people=book)
    per_campaign, advertisers = people_figures(run.market, state)
    for c, figures in zip(report.data["campaigns"], per_campaign):
        assert figures["reach_people"] == c["reach"] == c["reach_people"]
        assert figures["cap_leakage"] == c["cap_leakage"] == 0
        assert figures["frequency_people"] == c["frequency"]
    assert advertisers == report.data["advertisers"]


def test_figures_are_a_hand_count_of_the_log(recorded):
    run, report, time_s, ids, campaign = recorded
    person_of, sizes = group_ids(run.market.n_users)
    person = person_of[ids]
    book = recorded_book(run, time_s, person, campaign, sizes.size)
    state = SimpleNamespace(book=run.state.book, users=run.state.users, people=book)
    per_campaign, advertisers = people_figures(run.market, state)
    table = run.market.campaigns
    for c, figures in enumerate(per_campaign):
        mine = campaign == c
        per_person = Counter(person[mine].tolist())
        reach_people = len(per_person)
        assert figures["reach_people"] == reach_people
        assert figures["frequency_people"] == round(int(mine.sum()) / reach_people, 6)
        histogram = [sum(1 for n in per_person.values() if min(n, HISTOGRAM_BINS) == k)
                     for k in range(1, HISTOGRAM_BINS + 1)]
        assert figures["frequency_histogram"] == histogram
        assert sum(histogram) == reach_people
        assert reach_people < len(set(ids[mine].tolist())) == report.data["campaigns"][c]["reach"]
    for a, figures in enumerate(advertisers):
        mine = table.advertiser[campaign] == a
        assert figures["id"] == run.market.labels.advertisers[a]
        assert figures["impressions"] == int(mine.sum())
        assert figures["reach"] == len(set(ids[mine].tolist()))
        per_person = Counter(person[mine].tolist())
        assert figures["reach_people"] == len(per_person)
        assert figures["frequency"] == round(int(mine.sum()) / figures["reach"], 6)
        assert figures["frequency_people"] == round(int(mine.sum()) / len(per_person), 6)
        assert sum(figures["frequency_histogram"]) == len(per_person)
    assert advertisers[0]["cap_leakage"] == int(book.adv_leakage[0]) > 0
    assert advertisers[1]["cap_leakage"] is None  # b has no cap


def capped_scenario(k: int, identity: dict | None = None) -> dict:
    """One campaign with a per-id cap of k over a calendar day that covers the run,
    enough traffic to fill every id's cap, and, if given, a dmp.identity."""
    data = tiny_scenario(
        start="2026-03-02T00:00:00Z", duration="6h", users=400, daily_requests=60_000.0,
        campaigns=[{"id": "capped", "advertiser": "b", "bid": 9.0,
                    "frequency_cap": {"impressions": k, "window": "1d", "kind": "calendar"}}],
        advertiser_cap={"impressions": 250, "window": "1d"})
    if identity is not None:
        data["dmp"]["identity"] = identity
    return data


def test_cap_leakage_is_the_closed_form_over_ids_per_person():
    """A per-id cap of k in a window covering the whole run, and a market that fills
    every id's cap: a person with j ids sees j*k impressions, k of them within a cap
    a person-level counter would allow, so leakage per person is max(0, n - k) =
    k*(j - 1), and its mean over people is k*(E[j] - 1) for the id-count distribution."""
    k = 3
    run, report, time_s, ids, campaign = run_recorded(capped_scenario(k))
    per_id = np.bincount(ids, minlength=run.market.n_users)
    assert (per_id == k).all(), "the test needs every id's cap filled"
    person_of, sizes = group_ids(run.market.n_users, seed=9)
    person = person_of[ids]
    book = recorded_book(run, time_s, person, campaign, sizes.size)
    per_person = np.bincount(person, minlength=sizes.size)
    # The hand count: impressions past the k-th, per person.
    assert int(book.leakage[0]) == int(np.maximum(per_person - k, 0).sum())
    # Every id full: k*(j - 1) per person, exactly.
    assert int(book.leakage[0]) == k * int((sizes - 1).sum())
    # Against the closed form over the distribution: the mean over people within four
    # standard errors of k*(E[j] - 1).
    mean_j = sum(j * p for j, p in GROUP_SIZES.items())
    sd_j = np.sqrt(sum(p * (j - mean_j) ** 2 for j, p in GROUP_SIZES.items()))
    measured = book.leakage[0] / sizes.size
    assert abs(measured - k * (mean_j - 1)) < 4 * k * sd_j / np.sqrt(sizes.size)
    assert report.data["campaigns"][0]["reach"] == run.market.n_users


def test_without_identity_people_are_ids_in_the_report(recorded):
    """No churn, one device, consent 1: every people figure equals the id figure."""
    _, report, time_s, _, _ = recorded
    for c in report.data["campaigns"]:
        assert c["reach_people"] == c["reach"]
        assert c["frequency_people"] == c["frequency"]
        assert sum(c["frequency_histogram"]) == c["reach_people"]
        assert c["cap_leakage"] == 0
    for a in report.data["advertisers"]:
        assert a["reach_people"] == a["reach"] and a["frequency_people"] == a["frequency"]
        assert a["cap_leakage"] in (0, None)
    assert report.data["totals"]["reach_people"] == report.data["totals"]["reach"]
    assert report.data["identity"]["reach"].startswith("distinct ids")
    won = sum(c["bid_outcomes"]["won"] for c in report.data["campaigns"])
    assert won == time_s.size == sum(a["impressions"] for a in report.data["advertisers"])
    assert datetime.fromisoformat(report.data["scenario"]["start"])  # a report, not a stub


def test_plan_figures_and_page_give_reach_and_frequency_per_person():
    """plan.json's figures gain reach and frequency in people (mean, interval, paired
    change), per campaign, in total and per advertiser; the page shows them."""
    pytest.importorskip("matplotlib")
    from rtb.html import render_plan_page
    from rtb.plan import variant_figures

    def reports(budget: float) -> list[dict]:
        out = []
        for seed in (1, 2):
            data = tiny_scenario(duration="1h")
            data["simulation"]["seed"] = seed
            data["campaigns"][2]["budget"] = budget
            out.append(run_recorded(data)[1].data)
        return out

    current, half = reports(1000.0), reports(0.05)
    rows = [{"name": "current", "changes": [], **variant_figures(current, None)},
            {"name": "half", "changes": ["budget free=0.05"], **variant_figures(half, current)}]
    totals = rows[1]["totals"]
    for name in ("reach_people", "frequency_people", "frequency"):
        assert set(totals[name]) >= {"mean", "low", "high", "vs_current"}
    campaign = rows[1]["campaigns"][0]
    assert campaign["reach_people"]["mean"] == np.mean([r["campaigns"][0]["reach_people"] for r in half])
    assert "cap_leakage" in campaign and "cap_leakage" not in totals
    advertiser = rows[1]["advertisers"][1]
    assert advertiser["id"] == "b"
    assert advertiser["reach_people"]["vs_current"]["mean"] < 0  # less budget, fewer people
    # One campaign on the page: its charts (matplotlib) are most of the test's time.
    summary = {"scenario": "people", "currency": "USD", "seeds": [1, 2], "confidence": 0.95,
               "min_events": 10, "variants": [row | {"campaigns": row["campaigns"][:1]}
                                              for row in rows]}
    page = render_plan_page(summary).decode()
    for text in ("Reach in people", "Frequency per person", "Frequency (per id)",
                 "Reach and frequency per advertiser", "Cap leakage"):
        assert text in page, text


# ---- with the market's own identity model (dmp.identity) -----------------------------

def test_identity_model_one_device_no_churn_people_are_ids():
    """dmp.identity present with its defaults (one device, no churn) and consent 1: the
    exchange keeps a people book, and every people figure equals the id figure."""
    pytest.importorskip("dmp.identity")
    data = tiny_scenario()
    data["dmp"]["identity"] = {}
    run, report, *_ = run_recorded(data)
    assert run.state.people is not None
    for c in report.data["campaigns"]:
        assert c["reach_people"] == c["reach"] and c["cap_leakage"] == 0
    for a in report.data["advertisers"]:
        assert a["reach_people"] == a["reach"] and a["cap_leakage"] in (0, None)


def test_identity_model_cap_leakage_is_the_closed_form_over_devices_per_person():
    """People with j devices (no churn, no login): each device's id fills its cap of k,
    so a person sees j*k impressions and leakage is k*(j - 1) per person: k*(ids -
    people) in all, and per person k*(E[j] - 1) over devices_per_person."""
    pytest.importorskip("dmp.identity")
    k = 3
    run, report, _, ids, _ = run_recorded(
        capped_scenario(k, {"devices_per_person": {str(j): p for j, p in GROUP_SIZES.items()}}))
    identity = run.market.audience.identity
    per_id = np.bincount(ids, minlength=identity.no_id_row)
    assert (per_id == k).all(), "the test needs every id's cap filled"
    person = identity.person[ids]
    per_person = np.bincount(person, minlength=identity.n_people)
    c = report.data["campaigns"][0]
    assert c["reach"] == identity.no_id_row and c["reach_people"] == identity.n_people
    assert c["cap_leakage"] == int(np.maximum(per_person - k, 0).sum())
    assert c["cap_leakage"] == k * (identity.no_id_row - identity.n_people)
    assert sum(c["frequency_histogram"]) == c["reach_people"]
    mean_j = sum(j * p for j, p in GROUP_SIZES.items())
    sd_j = np.sqrt(sum(p * (j - mean_j) ** 2 for j, p in GROUP_SIZES.items()))
    measured = c["cap_leakage"] / identity.n_people
    assert abs(measured - k * (mean_j - 1)) < 4 * k * sd_j / np.sqrt(identity.n_people)
