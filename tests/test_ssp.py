"""Supply side: inventory arrays, request traffic (daily volume, hourly and weekly
shape, slot mix) and the background market (lognormal and histogram, participation).

Statistical checks allow five standard errors, so a correct implementation fails
about once in millions of runs and the seeds are fixed anyway.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from rtb.scenario import HistogramMarketSpec, LognormalMarketSpec
from rtb.seeding import stream
from rtb.supply_spec import PublisherSpec, SspSpec
from ssp.inventory import DEFAULT_HOURLY_SHAPE, build_inventory, generate_requests
from ssp.market import BackgroundMarket

MONDAY = datetime(2026, 3, 2, tzinfo=timezone.utc)  # a Monday, 00:00 UTC


def publishers(hourly=None, weekly=None):
    ssps = [SspSpec(id="open", fee=0.15), SspSpec(id="premium", fee=0.2)]
    pubs = [
        PublisherSpec(id="news", ssp="premium", category="news", hourly_shape=hourly,
                      weekly_shape=weekly,
                      slots=[{"id": "top", "format": "banner", "device": "desktop",
                              "daily_requests": 30_000, "floor_cpm": 1.0},
                             {"id": "video", "format": "video", "device": "mobile",
                              "daily_requests": 10_000, "floor_cpm": 5.0}]),
        PublisherSpec(id="games", ssp="open", category="games",
                      slots=[{"id": "banner", "format": "native", "device": "mobile",
                              "daily_requests": 20_000}]),
    ]
    return ssps, pubs


def within(observed: float, expected: float, sd: float, k: float = 5.0) -> bool:
    return abs(observed - expected) <= k * sd


def test_inventory_arrays():
    inv = build_inventory(*publishers())
    assert inv.slot_publisher.tolist() == [0, 0, 1]
    assert inv.slot_rate.tolist() == pytest.approx([30_000 / 86_400, 10_000 / 86_400, 20_000 / 86_400])
    assert inv.categories == ("games", "news")
    assert inv.publisher_category.tolist() == [1, 0]
    assert inv.publisher_ssp.tolist() == [1, 0]
    assert inv.ssp_fee_ppm.tolist() == [150_000, 200_000]
    np.testing.assert_allclose(inv.hourly.mean(axis=1), 1.0)
    np.testing.assert_allclose(inv.weekly.mean(axis=1), 1.0)
    np.testing.assert_allclose(inv.hourly[1], DEFAULT_HOURLY_SHAPE / DEFAULT_HOURLY_SHAPE.mean())


def test_requests_sorted_inside_tick_with_valid_slots():
    inv = build_inventory(*publishers())
    rng = stream(1, "test/traffic")
    for t0 in (0.0, 3_600.0, 50_000.0):
        time_s, slot = generate_requests(inv, MONDAY, t0, t0 + 600.0, rng)
        assert time_s.size > 0
        assert (np.diff(time_s) >= 0).all()
        assert (time_s >= t0).all() and (time_s < t0 + 600.0).all()
        assert slot.min() >= 0 and slot.max() < 3


def test_daily_volume_and_hourly_shape():
    """A day of hourly ticks: each hour's count is Poisson around daily x shape / 24."""
    hourly = [float(h % 6 + 1) for h in range(24)]
    inv = build_inventory(*publishers(hourly=hourly))
    rng = stream(2, "test/traffic")
    per_hour = np.zeros((24, 3))
    for h in range(24):
        _, slot = generate_requests(inv, MONDAY, h * 3600.0, (h + 1) * 3600.0, rng)
        per_hour[h] = np.bincount(slot, minlength=3)
    news_shape = np.array(hourly) / np.mean(hourly)
    games_shape = DEFAULT_HOURLY_SHAPE / DEFAULT_HOURLY_SHAPE.mean()
    daily = np.array([30_000, 10_000, 20_000])
    shapes = np.stack([news_shape, news_shape, games_shape], axis=1)
    expected = daily / 24 * shapes
    z = (per_hour - expected) / np.sqrt(expected)
    assert np.abs(z).max() < 5, z
    totals = per_hour.sum(axis=0)
    assert all(within(totals[k], daily[k], np.sqrt(daily[k])) for k in range(3)), totals
    # The shape is really followed: the news peaks are 6x its troughs.
    assert per_hour[5::6, 0].mean() > 4 * per_hour[0::6, 0].mean()


def test_weekly_shape_scales_days():
    weekly = [1.0, 1.0, 1.0, 1.0, 1.0, 3.0, 0.5]  # Saturday heavy, Sunday light
    inv = build_inventory(*publishers(weekly=weekly))
    rng = stream(3, "test/traffic")
    counts = []
    for day in (0, 5, 6):  # Monday, Saturday, Sunday
        t0 = day * 86_400.0
        n = 0
        for h in range(24):
            _, slot = generate_requests(inv, MONDAY, t0 + h * 3600.0, t0 + (h + 1) * 3600.0, rng)
            n += int((slot < 2).sum())  # the news publisher's two slots
        counts.append(n)
    factor = np.array(weekly) / np.mean(weekly)
    for n, day in zip(counts, (0, 5, 6)):
        expected = 40_000 * factor[day]
        assert within(n, expected, np.sqrt(expected)), (day, n, expected)


def test_weekday_follows_utc_calendar():
    """Starting on a Saturday: the first day gets Saturday's weight."""
    weekly = [0.1, 0.1, 0.1, 0.1, 0.1, 5.0, 0.1]
    inv = build_inventory(*publishers(weekly=weekly))
    saturday = MONDAY + timedelta(days=5)
    _, sat = generate_requests(inv, saturday, 0.0, 3600.0, stream(4, "t"))
    _, mon = generate_requests(inv, MONDAY, 0.0, 3600.0, stream(4, "t"))
    assert (sat < 2).sum() > 20 * (mon < 2).sum()


def test_requests_do_not_depend_on_floors():
    """Floors are prices, not traffic: changing them leaves the requests alone."""
    ssps, pubs = publishers()
    cheap = [p.model_copy(update={"slots": [s.model_copy(update={"floor_cpm": 0.0})
                                             for s in p.slots]}) for p in pubs]
    a = generate_requests(build_inventory(ssps, pubs), MONDAY, 0.0, 900.0, stream(5, "t"))
    b = generate_requests(build_inventory(ssps, cheap), MONDAY, 0.0, 900.0, stream(5, "t"))
    np.testing.assert_array_equal(a[0], b[0])  # times
    np.testing.assert_array_equal(a[1], b[1])  # slots


# ---- the background market ----------------------------------------------------------

def test_no_market_never_bids():
    assert np.isnan(BackgroundMarket(None).draw(100, stream(0, "m"))).all()


@pytest.mark.parametrize("median, sigma, participation", [(1.4, 0.7, 0.85), (3.0, 0.2, 0.3),
                                                          (0.5, 1.5, 1.0)])
def test_lognormal_market_median_spread_and_participation(median, sigma, participation):
    spec = LognormalMarketSpec(kind="lognormal", median_cpm=median, sigma=sigma,
                               participation=participation)
    n = 200_000
    price = BackgroundMarket(spec).draw(n, stream(6, "m"))
    present = ~np.isnan(price)
    p = present.mean()
    assert within(p, participation, np.sqrt(participation * (1 - participation) / n) + 1e-9)
    logs = np.log(price[present])
    se = sigma / np.sqrt(present.sum())
    assert within(np.median(logs), np.log(median), 1.26 * se)  # se of a median = 1.25 sd/sqrt(n)
    assert logs.std() == pytest.approx(sigma, rel=0.02)
    assert (price[present] > 0).all()


def test_market_draw_count_does_not_depend_on_participation():
    """The stream advances the same whatever the participation (common random numbers)."""
    a, b = stream(7, "m"), stream(7, "m")
    low = LognormalMarketSpec(kind="lognormal", median_cpm=1.0, participation=0.1)
    high = LognormalMarketSpec(kind="lognormal", median_cpm=1.0, participation=0.9)
    pa = BackgroundMarket(low).draw(1000, a)
    pb = BackgroundMarket(high).draw(1000, b)
    both = ~np.isnan(pa) & ~np.isnan(pb)
    np.testing.assert_array_equal(pa[both], pb[both])
    assert a.random() == b.random()


def test_histogram_market_follows_counts(tmp_path):
    counts = [0, 10, 30, 0, 60]
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"hist": counts}))
    spec = HistogramMarketSpec(kind="histogram", file=str(path), key="hist", scale=0.5,
                               participation=0.7)
    n = 100_000
    price = BackgroundMarket(spec).draw(n, stream(8, "m"))
    present = ~np.isnan(price)
    assert within(present.mean(), 0.7, np.sqrt(0.21 / n))
    bucket = np.rint(price[present] / 0.5).astype(int)
    np.testing.assert_array_equal(bucket * 0.5, price[present])  # prices are k * scale
    freq = np.bincount(bucket, minlength=5) / present.sum()
    expected = np.array(counts) / sum(counts)
    assert freq[[0, 3]].tolist() == [0.0, 0.0]  # empty buckets never drawn
    sd = np.sqrt(expected * (1 - expected) / present.sum())
    assert (np.abs(freq - expected) <= 5 * sd + 1e-12).all(), (freq, expected)


def _generate_requests_numpy(inv, start, t0, t1, rng):
    """generate_requests as numpy computed it before its numba pass (_arrivals_nb)."""
    from rtb.types import on_clock
    from ssp.inventory import slot_rates

    rates = slot_rates(inv, start.timestamp() + t0)
    dt = t1 - t0
    n = int(rng.poisson(rates.sum() * dt))
    gaps = rng.standard_exponential(n + 1)
    arrivals = np.cumsum(gaps)
    time_s = on_clock(t0 + dt * (arrivals[:-1] / arrivals[-1]))
    cumulative = np.cumsum(rates)
    slot = np.searchsorted(cumulative, rng.random(n) * cumulative[-1], side="right")
    return time_s, np.minimum(slot, rates.size - 1)


def test_requests_are_numpys_to_the_bit():
    """The numba pass draws nothing: the same draws give the same times and slots, bit
    for bit, and leave the stream where numpy's formulation left it."""
    ssps, pubs = publishers()
    # Quiet at night: slots of rate 0 (equal cumulative rates) in the first hours.
    zero = PublisherSpec(id="quiet", ssp="open", category="games", hourly_shape=[0.0] * 6 + [1.0] * 18,
                         slots=[{"id": "night", "format": "banner", "device": "desktop",
                                 "daily_requests": 5_000}])
    for inv in (build_inventory(ssps, pubs), build_inventory(ssps, pubs + [zero])):
        for k, (t0, tick) in enumerate([(0.0, 600.0), (3_600.0 + 1 / 65_536, 0.5), (50_000.0, 7.0),
                                        (123_456.0, 86_400.0), (10.0, 1e-3)]):
            old_rng, new_rng = stream(k, "test/traffic"), stream(k, "test/traffic")
            expected = _generate_requests_numpy(inv, MONDAY, t0, t0 + tick, old_rng)
            actual = generate_requests(inv, MONDAY, t0, t0 + tick, new_rng)
            for a, b in zip(actual, expected):
                assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), (t0, tick)
            assert new_rng.random() == old_rng.random()
