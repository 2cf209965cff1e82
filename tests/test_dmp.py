"""Audience side: the alias sampler, the population's mixes and segments, drawing users
by device, and the users' true behaviour (clicks with fatigue, conversions with lifts,
delays, organic conversions).

Statistical checks allow five standard errors on fixed seeds.
"""

from __future__ import annotations

import numpy as np
import pytest

from dmp.audience import build_audience, draw_users, user_truth
from dmp.behaviour import ad_outcomes, build_behaviour, organic_conversions
from dmp.sampling import alias_draw, alias_draw_ids_nb, alias_table
from rtb.scenario import DmpSpec, parse_scenario
from rtb.seeding import stream
from rtb.types import CLOCK_UNITS_PER_S, DEVICES, FORMATS, on_clock


def frequencies_match(draws: np.ndarray, weights, k: float = 5.0) -> None:
    p = np.asarray(weights, dtype=float) / np.sum(weights)
    n = draws.size
    freq = np.bincount(draws, minlength=p.size) / n
    sd = np.sqrt(p * (1 - p) / n)
    assert (np.abs(freq - p) <= k * sd + 1e-12).all(), (freq, p)


# ---- alias sampler ---------------------------------------------------------------------

@pytest.mark.parametrize("weights", [
    [1.0], [1.0, 1.0], [5.0, 1.0, 0.0, 3.0], [0.001, 1000.0, 1.0], list(range(1, 51)),
])
def test_alias_sampler_frequencies(weights):
    table = alias_table(np.array(weights))
    rng = stream(11, "test/alias")
    n = 200_000
    draws = alias_draw(table, rng.random(n), rng.random(n))
    assert draws.min() >= 0 and draws.max() < len(weights)
    frequencies_match(draws, weights)
    zero = [j for j, w in enumerate(weights) if w == 0]
    assert not np.isin(draws, zero).any()


def test_alias_table_probabilities_exact():
    """P(j) = (threshold[j] + sum of the columns aliased to j's leftovers) / k, exactly."""
    weights = np.array([0.1, 0.4, 0.2, 0.3, 0.0, 1.0])
    t = alias_table(weights)
    k = weights.size
    p = t.threshold / k
    np.add.at(p, t.alias, (1 - t.threshold) / k)
    np.testing.assert_allclose(p, weights / weights.sum(), atol=1e-12)


@pytest.mark.parametrize("k, m", [(1, 5), (7, 40), (5_000, 3), (100_000, 30_000)])
def test_alias_draw_ids_is_alias_draw(k, m):
    """The prefetching draw the exchange uses gives alias_draw's ids, bit for bit, on
    any subset of the requests (one device's rows), whatever the sizes against its
    look-ahead."""
    rng = stream(5, "test/alias-ids")
    table = alias_table(rng.lognormal(0.0, 2.0, k))
    ids = rng.permutation(10 * k)[:k].astype(np.int32)
    u_index, u_keep = rng.random(2 * m), rng.random(2 * m)
    rows = np.flatnonzero(rng.random(2 * m) < 0.5)
    out = np.full(2 * m, -1, dtype=np.int64)
    alias_draw_ids_nb(table.threshold, table.alias, ids, u_index, u_keep, rows, out)
    expected = np.full(2 * m, -1, dtype=np.int64)
    expected[rows] = ids[alias_draw(table, u_index[rows], u_keep[rows])]
    np.testing.assert_array_equal(out, expected)


# ---- the audience -------------------------------------------------------------------------

def dmp(**kw) -> DmpSpec:
    base = dict(users=40_000, activity_skew=1.0, devices={"desktop": 0.3, "mobile": 0.7},
                geos={"US": 0.5, "CA": 0.3, "MX": 0.2}, consent_rate=0.6,
                segments=[{"id": "a", "share": 0.2, "match_rate": 0.5},
                          {"id": "b", "share": 0.05, "match_rate": 1.0}])
    base.update(kw)
    return DmpSpec(**base)


def test_audience_mixes_and_segments():
    spec = dmp()
    aud = build_audience(spec, user_ctr_sigma=0.6, root_seed=1)
    n = spec.users
    frequencies_match(aud.device.astype(int), [0.3, 0.7])
    assert aud.geo_names == ("US", "CA", "MX")
    frequencies_match(aud.geo.astype(int), [0.5, 0.3, 0.2])
    assert abs(aud.consent.mean() - 0.6) <= 5 * np.sqrt(0.24 / n)
    for bit, (share, match) in enumerate([(0.2, 0.5), (0.05, 1.0)]):
        member = (aud.segments >> np.uint64(bit)) & np.uint64(1) == 1
        visible = (aud.visible_segments >> np.uint64(bit)) & np.uint64(1) == 1
        assert abs(member.mean() - share) <= 5 * np.sqrt(share * (1 - share) / n)
        assert not (visible & ~member).any()  # DSPs see only true members...
        assert not (visible & ~aud.consent).any()  # ...who consented
        p = share * match * 0.6
        assert abs(visible.mean() - p) <= 5 * np.sqrt(p * (1 - p) / n)
    assert aud.ctr_propensity.mean() == pytest.approx(1.0, abs=0.02)  # mean-one lognormal
    for d in range(len(DEVICES)):
        np.testing.assert_array_equal(aud.by_device[d], np.flatnonzero(aud.device == d))


def test_audience_streams_are_named():
    """Adding a segment or changing consent moves no other attribute's draws."""
    base = build_audience(dmp(), 0.6, root_seed=5)
    more = build_audience(dmp(segments=[*dmp().segments, {"id": "c", "share": 0.5}],
                              consent_rate=0.9), 0.6, root_seed=5)
    np.testing.assert_array_equal(base.device, more.device)
    np.testing.assert_array_equal(base.geo, more.geo)
    np.testing.assert_array_equal(base.ctr_propensity, more.ctr_propensity)
    low_bits = np.uint64(0b11)
    np.testing.assert_array_equal(base.segments & low_bits, more.segments & low_bits)
    other_seed = build_audience(dmp(), 0.6, root_seed=6)
    assert (base.device != other_seed.device).any()


def test_draw_users_match_request_device_and_activity():
    spec = dmp(users=2_000, activity_skew=0.0)  # equal activity: uniform within a device
    aud = build_audience(spec, 0.6, root_seed=2)
    rng = stream(3, "test/users")
    device = np.where(rng.random(100_000) < 0.5, 0, 1).astype(np.uint8)
    users = draw_users(aud, device, rng)
    np.testing.assert_array_equal(aud.device[users], device)
    for d in range(2):
        ids = aud.by_device[d]
        counts = np.bincount(np.searchsorted(ids, users[device == d]), minlength=ids.size)
        frequencies_match(np.repeat(np.arange(ids.size), counts), np.ones(ids.size))


def test_activity_skew_concentrates_requests():
    flat = build_audience(dmp(users=5_000, activity_skew=0.0), 0.6, root_seed=4)
    skewed = build_audience(dmp(users=5_000, activity_skew=2.0), 0.6, root_seed=4)
    device = np.ones(50_000, dtype=np.uint8)

    def top_share(aud):
        users = draw_users(aud, device, stream(9, "test/users"))
        counts = np.sort(np.bincount(users))[::-1]
        return counts[: counts.size // 20].sum() / users.size  # share of the top 5 %

    assert top_share(skewed) > 2 * top_share(flat)


def test_draw_users_two_uniforms_per_request_whatever_the_devices():
    aud = build_audience(dmp(users=1_000), 0.6, root_seed=2)
    a, b = stream(1, "u"), stream(1, "u")
    draw_users(aud, np.zeros(500, dtype=np.uint8), a)
    draw_users(aud, np.ones(500, dtype=np.uint8), b)
    assert a.random() == b.random()


# ---- behaviour -------------------------------------------------------------------------

SCENARIO = {
    "simulation": {"start": "2026-03-02T00:00:00Z", "duration": "1d"},
    "ssps": [{"id": "s"}],
    "publishers": [{"id": "p", "ssp": "s", "slots": [{"id": "x", "daily_requests": 100}]}],
    "dsps": [{"id": "d"}],
    "advertisers": [{"id": "a0", "value_per_conversion": 10.0},
                    {"id": "a1", "value_per_conversion": 20.0}],
    "campaigns": [{"id": "c", "advertiser": "a0", "dsp": "d", "budget": 1.0,
                   "strategy": {"kind": "fixed", "bid_cpm": 1.0}}],
    "dmp": {"users": 100, "segments": [{"id": "lifted", "share": 0.5, "cvr_lift": 3.0,
                                        "advertisers": ["a1"]},
                                       {"id": "plain", "share": 0.5}]},
    "behaviour": {"ctr": {"banner": 0.1, "video": 0.2, "native": 0.3},
                  "cvr": {"banner": 0.1, "video": 0.2, "native": 0.25},
                  "fatigue": 0.5, "conversion_delay": "2h",
                  "organic_conversion_rate": 0.01},
}


@pytest.fixture(scope="module")
def behaviour():
    return build_behaviour(parse_scenario(SCENARIO, "b.toml"))


def test_click_probability_formula_with_fatigue(behaviour):
    k = 6
    fmt = np.array([0, 1, 2, 0, 0, 0])
    user_ctr = np.array([1.0, 1.0, 1.0, 2.0, 1.0, 1.0], dtype=np.float32)
    ctr_mult = np.array([1.0, 1.0, 1.0, 1.0, 1.5, 1.0])
    prior = np.array([0, 0, 0, 0, 0, 2], dtype=np.uint8)
    p = (np.array([0.1, 0.2, 0.3])[fmt] * user_ctr * ctr_mult * 0.5 ** prior.astype(float))
    for eps, expect in ((-1e-6, True), (1e-6, False)):
        out = ad_outcomes(behaviour, np.zeros(k), fmt, user_ctr, np.zeros(k, dtype=np.uint64),
                          np.zeros(k, dtype=np.int32), ctr_mult, np.ones(k), prior,
                          p + eps, np.zeros(k), np.zeros(k))
        assert out.clicked.tolist() == [expect] * k


def test_conversion_lift_applies_to_members_for_listed_advertisers(behaviour):
    k = 4
    lifted = np.uint64(1)
    segments = np.array([lifted, lifted, 0, lifted], dtype=np.uint64)
    advertiser = np.array([1, 0, 1, 1], dtype=np.int32)
    cvr_mult = np.array([1.0, 1.0, 1.0, 2.0])
    p = 0.1 * cvr_mult * np.where((segments == lifted) & (advertiser == 1), 3.0, 1.0)
    for eps, expect in ((-1e-9, True), (1e-9, False)):
        out = ad_outcomes(behaviour, np.zeros(k), np.zeros(k, dtype=int),
                          np.ones(k, dtype=np.float32), segments, advertiser, np.ones(k),
                          cvr_mult, np.zeros(k, dtype=np.uint8), np.zeros(k), p + eps,
                          np.zeros(k))
        assert out.clicked.all()  # u_click = 0 always clicks
        assert out.converted.tolist() == [expect] * k


def test_no_conversion_without_click_and_exponential_delay(behaviour):
    n = 50_000
    rng = stream(2, "test/outcomes")
    u = rng.random((3, n))
    out = ad_outcomes(behaviour, np.full(n, 100.0), np.zeros(n, dtype=int),
                      np.ones(n, dtype=np.float32), np.zeros(n, dtype=np.uint64),
                      np.zeros(n, dtype=np.int32), np.ones(n), np.ones(n),
                      np.zeros(n, dtype=np.uint8), u[0], u[1], u[2])
    assert not (out.converted & ~out.clicked).any()
    assert abs(out.clicked.mean() - 0.1) <= 5 * np.sqrt(0.09 / n)
    # Delays are drawn for the conversions only (conversion_time_s means nothing elsewhere).
    delay = (out.conversion_time_s - 100.0)[out.converted]
    assert delay.size > 300
    assert (delay >= 0).all()
    assert delay.mean() == pytest.approx(7200.0, rel=5 / np.sqrt(delay.size))
    # Exponential, then down to the simulation clock (whole 1/65536 s).
    exact = -7200.0 * np.log1p(-u[2][out.converted])
    np.testing.assert_array_equal(delay, on_clock(100.0 + exact) - 100.0)
    assert (delay <= exact).all() and (exact - delay < 1 / CLOCK_UNITS_PER_S).all()


def test_organic_conversions_rate(behaviour):
    rng = stream(3, "test/organic")
    total = 0
    for h in range(24):
        t, user, adv = organic_conversions(behaviour, 10_000, 2, h * 3600.0, (h + 1) * 3600.0, rng)
        assert (np.diff(t) >= 0).all() and (t >= h * 3600.0).all() and (t < (h + 1) * 3600.0).all()
        assert user.min(initial=0) >= 0 and user.max(initial=0) < 10_000
        assert set(np.unique(adv)) <= {0, 1}
        total += t.size
    expected = 0.01 * 10_000 * 2  # a day
    assert abs(total - expected) <= 5 * np.sqrt(expected)


def test_behaviour_tables(behaviour):
    assert behaviour.ctr_by_format.tolist() == [0.1, 0.2, 0.3]
    assert len(FORMATS) == 3
    assert behaviour.lift.tolist() == [3.0]  # "plain" has no lift
    assert behaviour.lift_applies.tolist() == [[False, True]]
    assert behaviour.organic_rate_per_s == pytest.approx(0.01 / 86_400)


def test_user_truth_gathers_each_requests_device_user():
    aud = build_audience(dmp(), 0.6, root_seed=3)
    device_user = stream(3, "test/truth").integers(0, aud.user_geo.size, 5_000)
    truth = user_truth(aud, device_user)
    np.testing.assert_array_equal(truth.geo, aud.user_geo[device_user])
    np.testing.assert_array_equal(truth.ctr, aud.user_ctr[device_user])
    np.testing.assert_array_equal(truth.segments, aud.user_segments[device_user])
    assert truth.segments.dtype == aud.user_segments.dtype
