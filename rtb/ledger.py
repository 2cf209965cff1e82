"""Money flows in integer micros, and the check that they balance to the micro."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from rtb.types import PPM


def supply_split(price_micros: np.ndarray, exchange_fee_ppm: int,
                 ssp_fee_ppm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split clearing prices into (exchange fee, SSP fee, publisher revenue), exactly.

    The exchange keeps its share of the price, the SSP its share of what is left, and
    the publisher the remainder, so the three add up to the price to the micro.
    """
    exchange_fee = price_micros * exchange_fee_ppm // PPM
    ssp_fee = (price_micros - exchange_fee) * ssp_fee_ppm // PPM
    return exchange_fee, ssp_fee, price_micros - exchange_fee - ssp_fee


@dataclass
class Ledger:
    """Every flow of a run. Buyers pay in; every fee and the publishers' revenue pay out."""

    advertiser_cost: int = 0  # scenario campaigns: media + DSP fees + data
    market_cost: int = 0  # background buyers' clearing prices
    campaign_media: int = 0  # campaigns' clearing prices, as the exchange settled them
    dsp_fees: int = 0
    data_costs: int = 0
    exchange_fees: int = 0
    ssp_fees: int = 0
    publisher_revenue: int = 0

    def settle(self, price_micros: np.ndarray, from_campaign: np.ndarray, exchange_fee_ppm: int,
               ssp_fee_ppm: np.ndarray) -> np.ndarray:
        """Book one tick's sold impressions; returns each one's publisher revenue."""
        exchange_fee, ssp_fee, publisher = supply_split(price_micros, exchange_fee_ppm, ssp_fee_ppm)
        self.campaign_media += int(price_micros[from_campaign].sum())
        self.market_cost += int(price_micros[~from_campaign].sum())
        self.exchange_fees += int(exchange_fee.sum())
        self.ssp_fees += int(ssp_fee.sum())
        self.publisher_revenue += int(publisher.sum())
        return publisher

    def book(self, campaign_media: int, market_cost: int, exchange_fees: int, ssp_fees: int,
             publisher_revenue: int) -> None:
        """Book one tick's sold impressions, already split (rtb.tick_passes does the split
        as supply_split does, in its pass over the tick)."""
        self.campaign_media += campaign_media
        self.market_cost += market_cost
        self.exchange_fees += exchange_fees
        self.ssp_fees += ssp_fees
        self.publisher_revenue += publisher_revenue

    def close(self, media_micros: int, dsp_fee_micros: int, data_micros: int) -> None:
        """Take the campaigns' side as their budgets were charged by the auction kernel."""
        self.advertiser_cost = media_micros + dsp_fee_micros + data_micros
        self.dsp_fees = dsp_fee_micros
        self.data_costs = data_micros

    @property
    def imbalance_micros(self) -> int:
        paid_in = self.advertiser_cost + self.market_cost
        paid_out = (self.publisher_revenue + self.exchange_fees + self.ssp_fees
                    + self.dsp_fees + self.data_costs)
        return paid_in - paid_out

    def to_dict(self) -> dict:
        flows = {f.name: self.__dict__[f.name] / 1e6 for f in fields(self)}
        return {**flows, "imbalance_micros": self.imbalance_micros}
