"""Private-marketplace deals: the kernel's deal table, and which requests carry a deal."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rtb.books import Deals, no_deals
from rtb.scenario import Scenario


class DealBook(NamedTuple):
    deals: Deals  # what the kernel reads
    ids: tuple[str, ...]
    slot_cumulative: np.ndarray  # f8[n_slot, k]: cumulative share of the slot's deals, inf-padded
    slot_deal: np.ndarray  # i4[n_slot, k + 1]: deal of each share band; -1 after the last
    anonymous: np.ndarray  # bool[nd]: sold anonymously (its requests read their slot's anonymous row)
    slot_anonymous_share: np.ndarray  # f8[n_slot]: share of the slot's requests that carry an anonymous deal


def target_rows(book: DealBook, anonymous_row: np.ndarray, slot: np.ndarray,
                deal: np.ndarray) -> np.ndarray:
    """Each request's row of the targeting tables (RequestBatch.target_row): its slot's,
    or, when it carries an anonymous deal, its slot's anonymous row (dsp.campaigns)."""
    if not book.anonymous.any():
        return slot
    anonymous = (deal >= 0) & book.anonymous[np.maximum(deal, 0)]
    return np.where(anonymous, anonymous_row[slot], slot)


def build_deals(s: Scenario) -> DealBook:
    """Deals in scenario order; a slot's deals take consecutive bands of its requests."""
    nc = len(s.campaigns)
    specs = [(p, pub, deal) for p, pub in enumerate(s.publishers) for deal in pub.deals]
    n_slot = sum(len(pub.slots) for pub in s.publishers)
    per_slot: list[list[tuple[int, float]]] = [[] for _ in range(n_slot)]
    first_slot = np.cumsum([0] + [len(pub.slots) for pub in s.publishers])
    for d, (p, pub, deal) in enumerate(specs):
        for k, slot in enumerate(pub.slots):
            if not deal.slots or slot.id in deal.slots:
                per_slot[first_slot[p] + k].append((d, deal.share))
    anonymous = np.array([deal.anonymous for _, _, deal in specs], dtype=np.bool_)
    slot_anonymous_share = np.array([sum(share for d, share in bands if anonymous[d])
                                     for bands in per_slot], dtype=np.float64)
    width = max([len(x) for x in per_slot] + [0])
    cumulative = np.full((n_slot, max(width, 1)), np.inf)
    slot_deal = np.full((n_slot, width + 1), -1, dtype=np.int32)
    for slot, bands in enumerate(per_slot):
        total = 0.0
        for j, (d, share) in enumerate(bands):
            total += share
            cumulative[slot, j] = total
            slot_deal[slot, j] = d
    if not specs:
        deals = no_deals(nc)
    else:
        allowed = np.array([[c.dsp in deal.dsps or c.advertiser in deal.advertisers
                             for c in s.campaigns] for _, _, deal in specs], dtype=np.bool_)
        deals = Deals(
            floor_cpm=np.array([deal.floor_cpm for _, _, deal in specs]),
            fixed=np.array([deal.fixed_price for _, _, deal in specs], dtype=np.bool_),
            private=np.array([deal.private for _, _, deal in specs], dtype=np.bool_),
            allowed=allowed.reshape(len(specs), nc),
        )
    return DealBook(deals, tuple(deal.id for _, _, deal in specs), cumulative, slot_deal,
                    anonymous, slot_anonymous_share)


def assign_deals(book: DealBook, slot: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The deal each request carries (-1: none), from one uniform per request."""
    u = rng.random(slot.size)
    band = (u[:, None] >= book.slot_cumulative[slot]).sum(axis=1)
    return book.slot_deal[slot, band]
