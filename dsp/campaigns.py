"""Campaigns as arrays: targeting tables, budgets, caps, and each one's strategy."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import numpy as np

from dsp.strategies import ExternalSeat, Strategy, from_spec
from rtb.books import campaign_words
from rtb.pacing_spec import DualPacingSpec, PidPacingSpec
from rtb.scenario import DEVICE_CODE, FORMAT_CODE, Scenario
from rtb.seeding import unit_fraction
from rtb.types import CAP_KINDS, CAP_NONE, PPM, cpm_to_micros, units_to_micros

NO_LIMIT_MICROS = np.int64(2**62)  # a daily budget that never binds
PACING_CODE = {"asap": 0, "even": 1, "pid": 2, "dual": 3}  # dsp.pacing's PACING_* codes


class CampaignTable(NamedTuple):
    """Everything about the campaigns that does not change during a run (index = campaign)."""

    ids: tuple[str, ...]
    advertiser: np.ndarray  # i4[nc]
    dsp: np.ndarray  # i4[nc]
    budget_micros: np.ndarray  # i8[nc]
    daily_budget_micros: np.ndarray  # i8[nc]; NO_LIMIT_MICROS when none
    flight_start_s: np.ndarray  # f8[nc], seconds since the simulation start
    flight_end_s: np.ndarray  # f8[nc]
    slot_words: np.ndarray  # u8[n_rows, n_words]: campaigns that target the row's requests
    # (format, device, category, domain) and that brand safety lets buy them; a row per
    # slot, then the anonymous rows (anonymous_row)
    user_words: np.ndarray  # u8[n_users, n_words]: campaigns targeting the user (geo, segments)
    data_micros: np.ndarray  # i8[nc]: data cost of one impression
    dsp_fee_ppm: np.ndarray  # i8[nc]
    ctr_multiplier: np.ndarray  # f8[nc]: creative quality (true and as the DSP predicts it)
    cvr_multiplier: np.ndarray  # f8[nc]
    max_bid_cpm: tuple[float | None, ...]
    pacing_kind: np.ndarray  # i1[nc]: dsp.pacing's PACING_* code
    pacing_params: np.ndarray  # f8[nc, 3]: pid: kp, ki, kd; dual: step
    cap_kind: np.ndarray  # i1[nc]
    cap_limit: np.ndarray  # i4[nc]
    cap_window_s: np.ndarray  # f8[nc]
    pace_offset: np.ndarray  # f8[nc]: fixed per campaign id: rotates the shared pacing uniform
    strategies: tuple[Strategy, ...]
    slot_blocked_words: np.ndarray  # u8[n_rows, n_words]: the campaign targets the row (format,
    # device, category, domain) but brand safety forbids the pair (brand_safety_blocks); clear
    # in slot_words
    slot_hidden_words: np.ndarray  # u8[n_rows, n_words]: anonymous rows: campaigns that would
    # target the requests if they showed their publisher's domain (targeting.domains names it)
    anonymous_row: np.ndarray  # i8[n_slot]: the row of the slot's requests sold anonymously
    # through a deal (the slot's own row if its publisher is anonymous or it has no such deal)
    row_anonymous: np.ndarray  # bool[n_rows]: requests read through the row are anonymous
    publisher_excluded: np.ndarray  # bool[n_pub, nc]: the campaign's exclude_domains names the
    # publisher's domain (so it can buy there only anonymously)


def brand_safety_blocks(s: Scenario, inventory) -> np.ndarray:
    """bool[n_slot, nc]: (slot, campaign) pairs that must never transact.

    A pair is blocked when the slot's publisher, or its SSP, blocks the campaign's
    advertiser's category or domain (domains compare case-insensitively), or when the
    campaign excludes the publisher's content category. Blocks hold inside deals too,
    and on anonymous requests: the seller knows the buyer, and buyers see the category.
    A campaign's exclude_domains is not here: an anonymous request hides the domain
    (publisher_domain_matches).
    """
    ssps = {ssp.id: ssp for ssp in s.ssps}
    advertisers = {a.id: a for a in s.advertisers}
    camp_category = [advertisers[c.advertiser].category for c in s.campaigns]
    camp_domain = [advertisers[c.advertiser].domain.lower() for c in s.campaigns]
    blocked = np.zeros((len(s.publishers), len(s.campaigns)), dtype=np.bool_)
    for p, pub in enumerate(s.publishers):
        ssp = ssps[pub.ssp]
        categories = set(pub.blocked_categories) | set(ssp.blocked_categories)
        domains = {d.lower() for d in [*pub.blocked_domains, *ssp.blocked_domains]}
        for c, camp in enumerate(s.campaigns):
            blocked[p, c] = (camp_category[c] in categories or camp_domain[c] in domains
                             or pub.category in camp.targeting.exclude_categories)
    return blocked[inventory.slot_publisher]


def publisher_domain_matches(s: Scenario, field: str) -> np.ndarray:
    """bool[n_pub, nc]: the campaign's targeting.<field> (domains or exclude_domains)
    names the publisher's domain (case-insensitively; a publisher without one matches
    nothing)."""
    out = np.zeros((len(s.publishers), len(s.campaigns)), dtype=np.bool_)
    for c, camp in enumerate(s.campaigns):
        named = {d.lower() for d in getattr(camp.targeting, field)}
        for p, pub in enumerate(s.publishers):
            out[p, c] = bool(pub.domain) and pub.domain.lower() in named
    return out


def anonymous_rows(s: Scenario, n_slot: int) -> np.ndarray:
    """i8[n_slot]: each slot's row for its requests that carry an anonymous deal.

    A slot with such a deal, on a publisher that is not anonymous, gets a second row
    after the slots' (n_slot, n_slot + 1, ... in slot order); every other slot's
    anonymous row is its own row (an anonymous publisher's rows are anonymous already).
    """
    row = np.arange(n_slot, dtype=np.int64)
    k, extra = 0, n_slot
    for pub in s.publishers:
        for slot in pub.slots:
            if not pub.anonymous and any(d.anonymous and (not d.slots or slot.id in d.slots)
                                         for d in pub.deals):
                row[k] = extra
                extra += 1
            k += 1
    return row


def anonymous_slots(table: CampaignTable) -> np.ndarray:
    """i8[k]: the slots whose requests may be sold anonymously (their publisher is
    anonymous, or they have an anonymous deal's row), ascending."""
    n_slot = table.anonymous_row.size
    row_slot = np.concatenate([np.arange(n_slot), np.flatnonzero(table.anonymous_row >= n_slot)])
    return np.unique(row_slot[table.row_anonymous])


def _pacing_params(camps) -> np.ndarray:
    params = np.zeros((len(camps), 3))
    for c, camp in enumerate(camps):
        match camp.pacing:
            case PidPacingSpec(kp=kp, ki=ki, kd=kd):
                params[c] = kp, ki, kd
            case DualPacingSpec(step=step):
                params[c, 0] = step
    return params


def _seconds_since(start: datetime, when: datetime | None, default: float) -> float:
    return default if when is None else when.timestamp() - start.timestamp()


def build_campaigns(s: Scenario, inventory, audience, budget_scale: float = 1.0) -> CampaignTable:
    """Turn campaign specs into arrays; `budget_scale` multiplies every budget (what-if)."""
    adv_index = {a.id: i for i, a in enumerate(s.advertisers)}
    dsp_index = {d.id: i for i, d in enumerate(s.dsps)}
    seg_bit = {seg.id: i for i, seg in enumerate(s.dmp.segments)}
    seg_cpm = {seg.id: seg.data_cpm for seg in s.dmp.segments}
    categories = inventory.categories
    pub_cat = inventory.publisher_category[inventory.slot_publisher]
    nc, ns = len(s.campaigns), inventory.slot_publisher.size
    slot_ok = np.ones((ns, nc), dtype=np.bool_)
    geo_names = audience.geo_names
    geo_ok = np.ones((len(geo_names), nc), dtype=np.bool_)
    seg_mask = np.zeros(nc, dtype=np.uint64)
    data_cpm = np.zeros(nc)
    cap_kind = np.full(nc, CAP_NONE, dtype=np.int8)
    cap_limit = np.zeros(nc, dtype=np.int32)
    cap_window = np.ones(nc)
    for c, camp in enumerate(s.campaigns):
        tg = camp.targeting
        if tg.formats:
            slot_ok[:, c] &= np.isin(inventory.slot_format, [FORMAT_CODE[f] for f in tg.formats])
        if tg.devices:
            slot_ok[:, c] &= np.isin(inventory.slot_device, [DEVICE_CODE[d] for d in tg.devices])
        if tg.categories:
            slot_ok[:, c] &= np.isin(pub_cat, [categories.index(x) for x in tg.categories])
        if tg.geos:
            geo_ok[:, c] = [g in tg.geos for g in geo_names]
        for seg in tg.segments:
            seg_mask[c] |= np.uint64(1) << np.uint64(seg_bit[seg])
        # Targeting several segments pays for each of them on every impression: the
        # DSP cannot know in advance which one matched.
        data_cpm[c] = sum(seg_cpm[seg] for seg in tg.segments)
        if camp.frequency_cap is not None:
            cap_kind[c] = CAP_KINDS[camp.frequency_cap.kind]
            cap_limit[c] = camp.frequency_cap.impressions
            cap_window[c] = camp.frequency_cap.window

    # Anonymity. A request shows its publisher's domain, or, sold anonymously (the
    # publisher is anonymous, or the request carries an anonymous deal), only an
    # anonymous id and the category: a campaign's domain targeting cannot match it and
    # its domain block list cannot exclude it. Anonymity is decided here, by the rows
    # of the targeting tables, never per request in the kernel: an anonymous deal's
    # requests read their slot's anonymous row (RequestBatch.target_row, set with the
    # deal), a copy of the slot's row as an anonymous request sees it, so the kernel's
    # cost per request is the same with or without anonymity. A deal is per request,
    # so it cannot change the slot's own row; the extra rows exist only for slots that
    # carry an anonymous deal.
    pub = inventory.slot_publisher
    anonymous_pub = np.array([p.anonymous for p in s.publishers], dtype=np.bool_)
    targets_domains = np.array([bool(c.targeting.domains) for c in s.campaigns], dtype=np.bool_)
    domain_named = publisher_domain_matches(s, "domains")[pub]
    excluded = publisher_domain_matches(s, "exclude_domains")
    anonymous_row = anonymous_rows(s, ns)
    extra = np.flatnonzero(anonymous_row >= ns)  # slots with an anonymous deal's row
    seen_named = ~targets_domains | domain_named  # domain targeting, the domain shown
    seen_anonymous = np.broadcast_to(~targets_domains, (ns, nc))  # ... the domain hidden
    blocks = brand_safety_blocks(s, inventory)
    # Each row: (targeted in every way, brand safety forbids the pair, domain hidden).
    anonymous = anonymous_pub[pub][:, None]
    row_targeted = slot_ok & np.where(anonymous, seen_anonymous, seen_named)
    row_blocks = blocks | (excluded[pub] & ~anonymous)
    row_hidden = slot_ok & anonymous & seen_named & ~seen_anonymous
    row_targeted = np.concatenate([row_targeted, slot_ok[extra] & seen_anonymous[extra]])
    row_blocks = np.concatenate([row_blocks, blocks[extra]])
    row_hidden = np.concatenate([row_hidden, slot_ok[extra] & seen_named[extra]
                                 & ~seen_anonymous[extra]])
    row_anonymous = np.concatenate([anonymous_pub[pub], np.ones(extra.size, dtype=np.bool_)])

    # Brand safety clears the pair's bit: the kernel never visits a blocked pair.
    slot_blocked = row_targeted & row_blocks
    slot_ok = row_targeted & ~slot_blocked
    row_hidden &= ~row_blocks

    # A user is targetable by a campaign if in its geos and, when it buys data, in one
    # of its segments as DSPs see them (matched and consented).
    user_ok = geo_ok[audience.geo]
    for c in np.flatnonzero(seg_mask):
        user_ok[:, c] &= (audience.visible_segments & seg_mask[c]) != 0

    start, duration = s.simulation.start, s.simulation.duration
    advertisers = {a.id: a for a in s.advertisers}
    dsps = {d.id: d for d in s.dsps}
    camps = s.campaigns
    return CampaignTable(
        ids=tuple(c.id for c in camps),
        advertiser=np.array([adv_index[c.advertiser] for c in camps], dtype=np.int32),
        dsp=np.array([dsp_index[c.dsp] for c in camps], dtype=np.int32),
        budget_micros=np.array([units_to_micros(c.budget * budget_scale) for c in camps], dtype=np.int64),
        daily_budget_micros=np.array(
            [NO_LIMIT_MICROS if c.daily_budget is None else units_to_micros(c.daily_budget * budget_scale)
             for c in camps], dtype=np.int64),
        flight_start_s=np.array([_seconds_since(start, c.start, 0.0) for c in camps]),
        flight_end_s=np.array([_seconds_since(start, c.end, duration) for c in camps]),
        slot_words=campaign_words(slot_ok),
        user_words=campaign_words(user_ok),
        data_micros=cpm_to_micros(data_cpm),
        dsp_fee_ppm=np.array([round(dsps[c.dsp].fee * PPM) for c in camps], dtype=np.int64),
        ctr_multiplier=np.array([c.ctr_multiplier for c in camps]),
        cvr_multiplier=np.array([c.cvr_multiplier for c in camps]),
        max_bid_cpm=tuple(c.max_bid_cpm for c in camps),
        pacing_kind=np.array([PACING_CODE[c.pacing.kind] for c in camps], dtype=np.int8),
        pacing_params=_pacing_params(camps),
        cap_kind=cap_kind,
        cap_limit=cap_limit,
        cap_window_s=cap_window,
        pace_offset=np.array([unit_fraction(f"campaign/{c.id}") for c in camps]),
        strategies=tuple(ExternalSeat() if c.strategy is None
                         else from_spec(c.strategy, advertisers[c.advertiser].value_per_conversion,
                                        s.exchange.auction) for c in camps),
        slot_blocked_words=campaign_words(slot_blocked),
        slot_hidden_words=campaign_words(row_hidden),
        anonymous_row=anonymous_row,
        row_anonymous=row_anonymous,
        publisher_excluded=excluded,
    )
