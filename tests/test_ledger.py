"""Money flows in integer micros: the supply-side split is exact, the ledger balances,
and an imbalance between what campaigns were charged and what the exchange settled
shows up to the micro."""

from __future__ import annotations

import numpy as np
import pytest

from rtb.ledger import Ledger, supply_split

PPM = 1_000_000


@pytest.mark.parametrize("seed", range(5))
def test_supply_split_sums_exactly(seed):
    rng = np.random.default_rng(seed)
    n = 10_000
    price = rng.integers(0, 50_000_000, n, dtype=np.int64)
    exchange_ppm = int(rng.integers(0, PPM))
    ssp_ppm = rng.integers(0, PPM, n, dtype=np.int64)
    ex, ssp, pub = supply_split(price, exchange_ppm, ssp_ppm)
    np.testing.assert_array_equal(ex + ssp + pub, price)
    assert (ex >= 0).all() and (ssp >= 0).all() and (pub >= 0).all()
    # Each fee is its rate of what reaches it, rounded down: within one micro.
    assert ((price * exchange_ppm - ex * PPM) >= 0).all()
    assert ((price * exchange_ppm - ex * PPM) < PPM).all()
    rest = price - ex
    assert ((rest * ssp_ppm - ssp * PPM) >= 0).all() and ((rest * ssp_ppm - ssp * PPM) < PPM).all()


def test_supply_split_examples():
    ex, ssp, pub = supply_split(np.array([1_000_000, 999, 0]), 100_000, np.array([150_000] * 3))
    assert ex.tolist() == [100_000, 99, 0]
    assert ssp.tolist() == [135_000, 135, 0]  # 15 % of what the exchange passes on
    assert pub.tolist() == [765_000, 765, 0]


def settled_ledger(rng) -> tuple[Ledger, int]:
    ledger = Ledger()
    media_total = 0
    for _ in range(20):  # ticks
        n = int(rng.integers(0, 200))
        price = rng.integers(0, 5_000_000, n, dtype=np.int64)
        from_campaign = rng.random(n) < 0.4
        ledger.settle(price, from_campaign, 100_000, rng.choice([120_000, 200_000], n))
        media_total += int(price[from_campaign].sum())
    return ledger, media_total


def test_ledger_balances_when_campaigns_were_charged_what_was_settled():
    rng = np.random.default_rng(1)
    ledger, media = settled_ledger(rng)
    assert ledger.campaign_media == media
    ledger.close(media, dsp_fee_micros=12_345, data_micros=678)
    assert ledger.imbalance_micros == 0
    assert ledger.advertiser_cost == media + 12_345 + 678
    flows = ledger.to_dict()
    assert flows["imbalance_micros"] == 0
    assert flows["advertiser_cost"] == pytest.approx(ledger.advertiser_cost / 1e6)
    assert set(flows) >= {"advertiser_cost", "market_cost", "campaign_media", "dsp_fees",
                          "data_costs", "exchange_fees", "ssp_fees", "publisher_revenue"}
    paid_out = (ledger.publisher_revenue + ledger.exchange_fees + ledger.ssp_fees
                + ledger.dsp_fees + ledger.data_costs)
    assert ledger.advertiser_cost + ledger.market_cost == paid_out


def test_ledger_detects_a_one_micro_difference():
    ledger, media = settled_ledger(np.random.default_rng(2))
    ledger.close(media + 1, dsp_fee_micros=0, data_micros=0)
    assert ledger.imbalance_micros == 1
    assert ledger.to_dict()["imbalance_micros"] == 1


def test_settle_returns_publisher_revenue_per_impression():
    ledger = Ledger()
    price = np.array([2_000_000, 1_000_000, 500_000])
    pub = ledger.settle(price, np.array([True, False, True]), 100_000,
                        np.array([200_000, 0, 100_000]))
    assert pub.tolist() == [1_440_000, 900_000, 405_000]
    assert ledger.market_cost == 1_000_000 and ledger.campaign_media == 2_500_000
    assert ledger.publisher_revenue == sum(pub.tolist())
