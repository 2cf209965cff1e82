"""One tick of the market: requests -> audience -> bids -> kernel -> outcomes -> ledger."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from dmp.audience import draw_users
from dmp.behaviour import ad_outcomes, organic_conversions
from dsp.bidding import bid_formulas, finish_bids, formula_bids
from dsp.strategies import Feedback, learns
from rtb.auction import TOUCH_CAMPAIGN_BITS, Targeting, TickRequests, TickResult, clear_tick_nb
from rtb.ledger import Ledger
from rtb.seeding import stream
from rtb.types import MARKET, MECHANISM_SECOND, UNSOLD, cpm_to_micros
from rtb.world import World
from ssp.deals import assign_deals
from ssp.floors import count_floor_hits_nb
from ssp.inventory import generate_requests


@dataclass
class Tally:
    """Per-run aggregates, updated every tick; memory does not grow with the run."""

    n_campaigns: int
    n_publishers: int
    clicks: np.ndarray = None  # i8[nc]
    ad_conversions: np.ndarray = None  # i8[nc]: caused by the campaign's clicks (incremental)
    attributed_conversions: np.ndarray = None  # i8[nc]: last touch within the window
    pub_requests: np.ndarray = None  # i8[np]
    pub_impressions: np.ndarray = None  # i8[np]
    pub_deal_impressions: np.ndarray = None  # i8[np]: sold through a deal
    pub_revenue_micros: np.ndarray = None  # i8[np]
    pub_floor_sum: np.ndarray = None  # f8[np]: sum of floors over requests
    pub_price_sum: np.ndarray = None  # f8[np]: sum of clearing prices over impressions
    pub_floor_hits: np.ndarray = None  # i8[np]: requests the open-auction floor acted on
    blocked_bids: np.ndarray = None  # i8[nc]: bids targeting let through but brand safety blocked
    requests: int = 0
    impressions_to_campaigns: int = 0
    impressions_to_market: int = 0
    organic_conversions: int = 0
    ledger: Ledger = field(default_factory=Ledger)

    def __post_init__(self) -> None:
        for name in ("clicks", "ad_conversions", "attributed_conversions", "blocked_bids"):
            setattr(self, name, np.zeros(self.n_campaigns, dtype=np.int64))
        for name in ("pub_requests", "pub_impressions", "pub_deal_impressions", "pub_revenue_micros",
                     "pub_floor_hits"):
            setattr(self, name, np.zeros(self.n_publishers, dtype=np.int64))
        self.pub_floor_sum = np.zeros(self.n_publishers)
        self.pub_price_sum = np.zeros(self.n_publishers)


def _count(index: np.ndarray, size: int, weights: np.ndarray | None = None) -> np.ndarray:
    return np.bincount(index, weights=weights, minlength=size)


def _int_sum(index: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Exact per-index sums of int64 values (bincount's float64 is exact below 2**53)."""
    return np.rint(_count(index, size, values.astype(np.float64))).astype(np.int64)


class TickDraws(NamedTuple):
    """A tick's random inputs and what follows from them alone (per request, [n], unless
    noted): fixed by the seed and the tick's bounds, not by the run's state."""

    time_s: np.ndarray
    slot: np.ndarray
    user: np.ndarray
    geo: np.ndarray
    fmt: np.ndarray
    market_cpm: np.ndarray
    u_click: np.ndarray
    u_convert: np.ndarray
    u_delay: np.ndarray
    u_pace: np.ndarray
    u_strategy: np.ndarray
    deal: np.ndarray
    bids: np.ndarray  # f8[n, nc]: the built-in strategies' bids (dsp.bidding.formula_bids)
    predicted: np.ndarray  # f8[n_dsp, n]: each DSP's predicted CTR
    base_cvr: np.ndarray
    pub: np.ndarray  # the slot's publisher
    user_ctr: np.ndarray  # the user's click propensity
    user_segments: np.ndarray  # the user's segment bits
    floor_cpm: np.ndarray | None  # the floors when they are static (no dynamic floors)
    organic: tuple[np.ndarray, np.ndarray, np.ndarray]  # organic conversions: time, user, advertiser


class PendingConversions:
    """Ad-caused conversions waiting for their time: (time_s, user, advertiser, campaign)."""

    def __init__(self) -> None:
        self._parts: list[tuple[np.ndarray, ...]] = []

    def add(self, time_s, user, advertiser, campaign) -> None:
        if time_s.size:
            self._parts.append((time_s, user, advertiser, campaign))

    def pop_due(self, until_s: float) -> tuple[np.ndarray, ...]:
        """Remove and return those with time < until_s, in time order."""
        if not self._parts:
            return tuple(np.empty(0, dtype=d) for d in (np.float64, np.int64, np.int32, np.int32))
        cols = [np.concatenate(c) for c in zip(*self._parts)]
        due = cols[0] < until_s
        self._parts = [tuple(c[~due] for c in cols)] if (~due).any() else []
        order = np.argsort(cols[0][due], kind="stable")
        return tuple(c[due][order] for c in cols)


LOOK_AHEAD_MIN_REQUESTS = 5_000  # expected requests per tick from which the next tick is drawn ahead


class Exchange:
    """Runs ticks against a world and keeps the run's tallies."""

    def __init__(self, world: World, log=None):
        self.world = world
        self.log = log
        self.tally = Tally(len(world.campaigns.ids), world.inventory.hourly.shape[0])
        seed = world.seed
        self.rng_traffic = stream(seed, "ssp/traffic")
        self.rng_users = stream(seed, "dmp/users")
        self.rng_market = stream(seed, "ssp/market")
        self.rng_outcomes = stream(seed, "dmp/outcomes")
        self.rng_dsp = stream(seed, "dsp/uniforms")
        self.rng_organic = stream(seed, "dmp/organic")
        self.pending = PendingConversions()
        self.pace_share = np.ones(len(world.campaigns.ids))
        table = world.campaigns
        self.deals = world.deals.deals
        self.rng_deals = stream(seed, "ssp/deals")
        self.targeting = Targeting(table.slot_words, table.user_words, table.flight_start_s,
                                   table.flight_end_s, self.pace_share, table.stream_offset)
        # The campaigns with brand-safety blocks, and their columns of slot_blocked.
        self._blocked_camps = np.flatnonzero(table.slot_blocked.any(axis=0))
        self._blocked_slots = np.ascontiguousarray(table.slot_blocked[:, self._blocked_camps])
        self._slot_blocks_any = self._blocked_slots.any(axis=1)
        self._formulas = bid_formulas(table)
        # Drawing ahead pays when ticks are large: the threads then mostly run numba
        # and numpy with the GIL released. With small ticks they mostly run Python and
        # wait for each other's GIL: quickstart (about 750 requests a tick) took 2.9 s
        # with the thread and 1.8-2.0 s without; large (10,800 a tick) 31.0 s in the
        # benchmark just before the thread and 21.6 s just after.
        per_tick = float(world.inventory.slot_rate.sum()) * world.tick_s
        self._pool = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="rtb-draws")
                      if per_tick >= LOOK_AHEAD_MIN_REQUESTS else None)
        self._ahead: tuple[tuple[float, float], Future] | None = None
        self._learners = np.array([learns(s) for s in table.strategies], dtype=bool)
        self._spent_before = np.zeros(len(world.campaigns.ids), dtype=np.int64)

    def close(self) -> None:
        """Stop the look-ahead thread (a pending draw is finished first)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _draw(self, t0: float, t1: float) -> TickDraws:
        """Everything of the tick [t0, t1) that comes from the random streams alone."""
        w, inv = self.world, self.world.inventory
        req = generate_requests(inv, w.start, t0, t1, self.rng_traffic)
        n = req.time_s.size
        slot = req.slot
        user = draw_users(w.audience, inv.slot_device[slot], self.rng_users)
        market_cpm = w.market.draw(n, self.rng_market)
        # Every request gets its outcome and DSP uniforms whatever happens to it, so
        # the streams stay aligned across strategies (common random numbers).
        u_click, u_convert, u_delay = self.rng_outcomes.random((3, n))
        u_pace, u_strategy = self.rng_dsp.random((2, n))
        deal = (assign_deals(w.deals, slot, self.rng_deals) if w.deals.ids
                else np.full(n, -1, dtype=np.int32))
        fmt = inv.slot_format[slot]
        base_cvr = w.behaviour.cvr_by_format[fmt]
        bids, predicted = formula_bids(w.campaigns, self._formulas, w.user_factor,
                                       w.behaviour.ctr_by_format[fmt], base_cvr, user, u_strategy)
        geo = w.audience.geo[user]
        static_floors = w.floors.floor_cpm(slot, geo) if w.floors.dynamic is None else None
        organic = organic_conversions(w.behaviour, w.n_users, w.advertiser_value.size, t0, t1,
                                      self.rng_organic)
        # Per-user lookups in arrays of millions are cache misses: done here, off the
        # clearing thread, for every request (most are sold).
        return TickDraws(req.time_s, slot, user, geo, fmt, market_cpm, u_click, u_convert,
                         u_delay, u_pace, u_strategy, deal, bids, predicted, base_cvr,
                         inv.slot_publisher[slot], w.audience.ctr_propensity[user],
                         w.audience.segments[user], static_floors, organic)

    def _draws(self, t0: float, t1: float, upcoming: tuple[float, float] | None) -> TickDraws:
        """This tick's draws (made ahead if it was announced) and the next tick's started.

        The next tick's draws run in a second thread while this tick clears: they use
        only their own random streams, consumed in tick order by that one thread, so
        the results are the same as drawing them here.
        """
        if self._ahead is not None:
            bounds, future = self._ahead
            if bounds != (t0, t1):
                raise RuntimeError(f"tick {(t0, t1)} does not follow the announced {bounds}")
            draws = future.result()
        else:
            draws = self._draw(t0, t1)
        if upcoming is not None and self._pool is not None:
            self._ahead = (upcoming, self._pool.submit(self._draw, *upcoming))
        else:
            self._ahead = None
        return draws

    def run_tick(self, t0: float, t1: float, upcoming: tuple[float, float] | None = None) -> int:
        """Simulate requests arriving in [t0, t1); returns how many there were.

        upcoming: the next tick's bounds, if known, so that its random draws are made
        while this one clears (when ticks are large enough for that to pay).
        """
        w, inv, tally = self.world, self.world.inventory, self.tally
        d = self._draws(t0, t1, upcoming)
        n, slot, user, geo, fmt = d.time_s.size, d.slot, d.user, d.geo, d.fmt
        market_cpm, deal = d.market_cpm, d.deal
        u_click, u_convert, u_delay, u_pace = d.u_click, d.u_convert, d.u_delay, d.u_pace
        # Dynamic floors move between ticks: read them now.
        floor_cpm = d.floor_cpm if d.floor_cpm is not None else w.floors.floor_cpm(slot, geo)

        table = w.campaigns
        # Campaigns out of flight for the whole tick, or out of money, do not bid.
        active = ((table.flight_end_s > t0) & (table.flight_start_s < t1)
                  & (w.book.remaining_total > table.data_micros))
        bids = finish_bids(table, self._formulas, active, d.bids, d.predicted, d.base_cvr,
                           floor_cpm, d.u_strategy)
        result = TickResult(np.empty(n, dtype=np.int32), np.empty(n), np.zeros(n, dtype=np.uint8),
                             np.zeros(n, dtype=np.bool_))
        clear_tick_nb(TickRequests(d.time_s, user, slot, floor_cpm, market_cpm, u_pace, deal),
                      bids, w.mechanism, self.targeting, self.deals, w.book, w.caps, w.users, result)
        winner, price_cpm, prior, deal_won = result
        self._supply_side(d.time_s, slot, user, geo, bids, floor_cpm, market_cpm, deal, winner,
                          price_cpm, deal_won)

        # Outcomes of the campaigns' impressions.
        won = np.flatnonzero(winner >= 0)
        camp = winner[won]
        adv = table.advertiser[camp]
        out = ad_outcomes(w.behaviour, d.time_s[won], fmt[won], d.user_ctr[won],
                          d.user_segments[won], adv, table.ctr_multiplier[camp],
                          table.cvr_multiplier[camp], prior[won], u_click[won], u_convert[won],
                          u_delay[won])
        nc = len(table.ids)
        tally.clicks += _count(camp[out.clicked], nc)
        self._feedback(active, camp, price_cpm[won], out.clicked)
        conv = out.converted
        self.pending.add(out.conversion_time_s[conv], user[won][conv], adv[conv], camp[conv])

        # Settle every sold impression on the supply side.
        sold = np.flatnonzero(winner != -1)
        pub = d.pub
        price_micros = cpm_to_micros(price_cpm[sold])
        pub_revenue = tally.ledger.settle(price_micros, winner[sold] >= 0, w.exchange_fee_ppm,
                                          inv.ssp_fee_ppm[inv.publisher_ssp[pub[sold]]])
        n_pub = tally.n_publishers
        tally.requests += n
        tally.impressions_to_campaigns += won.size
        tally.impressions_to_market += int(np.count_nonzero(winner == MARKET))
        tally.pub_requests += _count(pub, n_pub)
        tally.pub_impressions += _count(pub[sold], n_pub)
        tally.pub_deal_impressions += _count(pub[deal_won], n_pub)
        tally.pub_revenue_micros += _int_sum(pub[sold], pub_revenue, n_pub)
        tally.pub_floor_sum += _count(pub, n_pub, floor_cpm)
        tally.pub_price_sum += _count(pub[sold], n_pub, price_cpm[sold])

        if self.log is not None and won.size:
            self.log.write(d.time_s[won], user[won], slot[won], camp, floor_cpm[won],
                           bids[won, camp], price_cpm[won], out.clicked, conv)
        self._organic(*d.organic)
        return n

    def _count_blocked(self, time_s, slot, user, bids, deal) -> None:
        """Count bids that targeting lets through but brand safety blocks.

        The kernel never visits a blocked pair, so it counts such a bid as not targeted;
        the report moves these counts to `blocked`. A bid counts here if the campaign
        targets the request in every other way: slot (format, device, category), user
        (geo, segments), flight, and a private deal admits it.
        """
        table, deals, camps = self.world.campaigns, self.deals, self._blocked_camps
        rows = np.flatnonzero(self._slot_blocks_any[slot])
        if rows.size == 0:
            return
        blocked = self._blocked_slots[slot[rows]].T  # bool[k, m]
        user_bits = np.unpackbits(table.user_words[user[rows]].astype("<u8").view(np.uint8),
                                  axis=1, bitorder="little")[:, camps].T  # u1[k, m]
        t = time_s[rows]
        counted = (blocked & (bids[rows[:, None], camps].T >= 0.0) & (user_bits != 0)
                   & (t >= table.flight_start_s[camps, None]) & (t < table.flight_end_s[camps, None]))
        d = deal[rows]
        dd = np.maximum(d, 0)
        private = (d >= 0) & deals.private[dd]
        if private.any():
            counted &= ~private | deals.allowed[dd][:, camps].T
        self.tally.blocked_bids[camps] += counted.sum(axis=1)

    def _supply_side(self, time_s, slot, user, geo, bids, floor_cpm, market_cpm, deal, winner,
                     price_cpm, deal_won) -> None:
        """Brand-safety blocked bids, floor hits, and the prices dynamic floors learn from."""
        w, table = self.world, self.world.campaigns
        if self._blocked_camps.size:
            self._count_blocked(time_s, slot, user, bids, deal)
        count_floor_hits_nb(w.mechanism == MECHANISM_SECOND, winner, price_cpm, floor_cpm, market_cpm,
                            deal, self.deals.private, deal_won, bids, slot, user, time_s,
                            table.slot_words, table.user_words, table.flight_start_s,
                            table.flight_end_s, w.inventory.slot_publisher, self.tally.pub_floor_hits)
        if w.floors.dynamic is not None:
            # The open-auction floor is in play unless the request carries a private
            # deal or was sold through its deal.
            private = (deal >= 0) & self.deals.private[np.maximum(deal, 0)]
            w.floors.dynamic.observe(slot, geo, np.where(winner != UNSOLD, price_cpm, 0.0),
                                     ~private & ~deal_won)

    def _feedback(self, active: np.ndarray, camp: np.ndarray, price_cpm: np.ndarray,
                  clicked: np.ndarray) -> None:
        """Tell every campaign that bid this tick and can learn what it won."""
        listening = np.flatnonzero(active & self._learners)
        if listening.size == 0:
            return
        book = self.world.book
        spent = book.media_micros + book.fee_micros + book.data_cost_micros
        spent_this_tick = spent - self._spent_before
        self._spent_before = spent
        order = np.argsort(camp, kind="stable")
        bounds = np.searchsorted(camp[order], np.arange(len(active) + 1))
        for c in listening:
            mine = order[bounds[c]:bounds[c + 1]]
            self.world.campaigns.strategies[c].observe(
                Feedback(price_cpm[mine], clicked[mine], int(spent_this_tick[c])))

    def _organic(self, time_s: np.ndarray, user: np.ndarray, adv: np.ndarray) -> None:
        self.tally.organic_conversions += time_s.size
        self.pending.add(time_s, user, adv, np.full(time_s.size, -1, dtype=np.int32))

    def settle_conversions(self, until_s: float) -> None:
        """Attribute every conversion due before `until_s` to the advertiser's last touch.

        A touch counts if it came at or before the conversion and within the
        attribution window; touches are read as they stand when this runs (after the
        tick in which the conversion falls).
        """
        w, tally = self.world, self.tally
        time_s, user, adv, caused_by = self.pending.pop_due(until_s)
        if time_s.size == 0:
            return
        nc = tally.n_campaigns
        ad_caused = caused_by >= 0
        tally.ad_conversions += _count(caused_by[ad_caused], nc)
        packed = w.users.last_touch[user, adv]
        touch = packed & ((1 << TOUCH_CAMPAIGN_BITS) - 1)
        touch_time = (packed >> TOUCH_CAMPAIGN_BITS) / 1000.0
        attributed = ((packed >= 0) & (touch_time <= time_s)
                      & (time_s - touch_time <= w.behaviour.attribution_window_s))
        tally.attributed_conversions += _count(touch[attributed], nc)
