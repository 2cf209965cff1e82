"""One tick of the market, as the stages of DESIGN.md's table.

    requests   ssp: the tick's bid requests, their deals and the rest of the market's bids
    audience   dmp: a user per request, with geo, propensity and segments
    bids       dsp: each campaign's strategy's bid per request, f8[n, nc]
    clear      kernel: eligibility, ranking, budgets and caps, price (rtb/kernel.py)
    outcomes   dmp: clicks and conversions of the campaigns' impressions
    settle     ledger: money in micros; conversions due this tick attributed
    tally      per-publisher and per-campaign aggregates

The market (rtb/market.py) is read-only; everything a tick changes is in the run
state (rtb/state.py).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from dmp.audience import draw_users, user_truth
from dmp.behaviour import AdOutcomes, organic_conversions
from dmp.identity import current_ids
from dsp.adaptive import Learners
from dsp.bidding import (CUSTOM, TickView, bid_formulas, eligible_rows, finish_bids, formula_bids,
                         learner_bids)
from dsp.campaigns import anonymous_slots
from dsp.pacing import PACING_DUAL, scale_bids
from dsp.strategies import FORMULA_BUDGET_ORTB, LEARNING_FORMULAS, Feedback, ViewLabels, learns
from rtb.attribution import attributed_campaign, last_touches
from rtb.books import Targeting, TickResult, touch_time_s
from rtb.shards import Clearing
from rtb.market import Market
from rtb.people import record_people
from rtb.seeding import stream
from rtb.state import RunState, assign_user_rows_nb
from rtb.tick_passes import CampaignOdds, Settled, settle_tick
from rtb.types import DEVICES, FORMATS, MICROS_PER_UNIT, PPM, RequestBatch, cpm_to_micros
from ssp.deals import assign_deals, target_rows
from ssp.inventory import generate_requests


def _count(index: np.ndarray, size: int, weights: np.ndarray | None = None) -> np.ndarray:
    return np.bincount(index, weights=weights, minlength=size)


def _int_sum(index: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Exact per-index sums of int64 values (bincount's float64 is exact below 2**53)."""
    return np.rint(_count(index, size, values.astype(np.float64))).astype(np.int64)


def _impression_cost_micros(book, camp: np.ndarray, price_cpm: np.ndarray) -> np.ndarray:
    """Each won impression's cost as the kernel charged it: media, the DSP's fee on the
    media, data."""
    media = cpm_to_micros(price_cpm)
    return media + media * book.dsp_fee_ppm[camp] // PPM + book.data_micros[camp]


class TickInputs(NamedTuple):
    """What a tick takes from the random streams and the market alone, so it can be
    prepared ahead: nothing here depends on the run's state. (Drawing the requests
    also hands user rows to the ids seen for the first time, rtb.state.UserRows: only
    this stage writes that map, and in tick order.)"""

    requests: RequestBatch  # floor_cpm is NaN when floors move (read at the tick)
    formula_bids: np.ndarray  # f8[n, nc]: the built-in strategies' bids (dsp.bidding)
    predicted_ctr: np.ndarray  # f8[n_dsp, n]: each DSP's predicted CTR
    base_cvr: np.ndarray  # f8[n]: the format's conversion rate per click
    organic: tuple[np.ndarray, np.ndarray, np.ndarray]  # organic conversions: time, id, advertiser


LOOK_AHEAD_MIN_REQUESTS = 5_000  # expected requests per tick from which the next tick is drawn ahead


class Exchange:
    """Runs ticks of a market against a run state."""

    def __init__(self, market: Market, state: RunState, log=None, *, threads: int = 1,
                 allow_unreachable: bool = False, openrtb_log=None):
        self.market, self.state, self.log = market, state, log
        self.openrtb_log = openrtb_log  # rtb.openrtb_log.OpenRtbLog, if the messages are logged
        seed, table = market.seed, market.campaigns
        self.rng_traffic = stream(seed, "ssp/traffic")
        self.rng_deals = stream(seed, "ssp/deals")
        self.rng_market = stream(seed, "ssp/market")
        self.rng_users = stream(seed, "dmp/users")
        self.rng_outcomes = stream(seed, "dmp/outcomes")
        self.rng_organic = stream(seed, "dmp/organic")
        self.rng_pace = stream(seed, "dsp/pacing")
        # Each campaign's own stream for a randomised strategy: independent bidders,
        # and another campaign's strategy never moves these draws.
        self.rng_bids = tuple(stream(seed, f"dsp/campaign/{cid}/bids") for cid in table.ids)
        self._formulas = bid_formulas(table)
        self._uniform_campaigns = np.flatnonzero(self._formulas.uniform_row >= 0)
        # The built-ins that learn (dsp.adaptive) do it in the run state's arrays, not
        # through observe(): learner_bids bids for them, _learn updates them.
        self._learning = np.flatnonzero(np.isin(self._formulas.code, LEARNING_FORMULAS))
        if state.learners is None:
            state.learners = Learners.start(table.strategies, self._formulas.code)
        self._learners = np.array([learns(s) for s in table.strategies], dtype=bool)
        self._learners[self._learning] = False
        self._learned: tuple | None = None  # this tick's (budget_ortb campaigns, targets, shaded rows, points)
        self._multiplied = np.flatnonzero(table.pacing_kind == PACING_DUAL)  # bids scaled by pacing
        # An outside controller's bid multiplier per campaign (rtb.gym sets it between
        # ticks): None, or f8[nc] applied after the strategy and pacing (0 = no bids).
        self.bid_scale: np.ndarray | None = None
        # Campaigns that get a view (custom strategies) or feedback (learners): the
        # others bid in the numba pass and nothing is built for them.
        self._viewers = (self._formulas.code == CUSTOM) | self._learners
        self._view_rows: dict[int, np.ndarray] = {}  # this tick's view rows per campaign
        labels, deal_ids = market.labels, market.deals.ids
        inv = market.inventory
        self._odds = CampaignOdds(table.advertiser, table.ctr_multiplier, table.cvr_multiplier)
        self._pub_ssp_fee_ppm = inv.ssp_fee_ppm[inv.publisher_ssp]  # i8[np]
        self._anonymity = bool(table.row_anonymous.any())  # some requests are sold anonymously
        self._seen_codes, anonymous_publishers, anonymous_slots = self._anonymous_codes()
        self._view_labels = tuple(
            ViewLabels(cid, labels.currency, labels.publishers + anonymous_publishers,
                       labels.slots + anonymous_slots, FORMATS, DEVICES,
                       market.audience.geo_names, labels.segments, deal_ids)
            for cid in table.ids)
        # Drawing ahead pays when ticks are large: the threads then mostly run numba
        # and numpy with the GIL released. With small ticks they mostly run Python and
        # wait for each other's GIL: quickstart (about 750 requests a tick) took 2.9 s
        # with the thread and 1.8-2.0 s without; large (10,800 a tick) 31.0 s in the
        # benchmark just before the thread and 21.6 s just after.
        # On one thread (threads=1) the run uses one core: nothing is drawn ahead.
        per_tick = float(market.inventory.slot_rate.sum()) * market.tick_s
        self._pool = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="rtb-draws")
                      if per_tick >= LOOK_AHEAD_MIN_REQUESTS and threads > 1 else None)
        # The look-ahead thread is one of the run's threads; the tick kernel gets the
        # others (rtb.shards). On two cores, a kernel on two threads beside it (three
        # busy threads taking turns on two cores) ran a week of `large` 1.1-1.3x faster
        # than one thread; the kernel on one thread beside it, 1.3-1.6x
        # (docs/performance.md).
        self.clearing = Clearing(threads - 1 if self._pool is not None else threads)
        self._ahead: tuple[tuple[float, float], Future] | None = None
        self._tick: TickView | None = None  # this tick's, once made
        self.external = None  # the external OpenRTB bidders (rtb.external), if any
        if market.wire.bidders:
            from rtb.external import ExternalBidders  # aiohttp loads only for them

            self.external = ExternalBidders(market, state, allow_unreachable,
                                            keep_answers=openrtb_log is not None)
            self._viewers |= np.isin(np.arange(len(table.ids)),
                                     [c for b in market.wire.bidders for c in b.campaigns])

    def _anonymous_codes(self) -> tuple[tuple[np.ndarray, np.ndarray] | None, tuple, tuple]:
        """What a strategy's view shows of an anonymous request's publisher and slot: an
        anonymous id ("anonymous-1", numbered in the scenario's order among the
        publishers that sell anonymously) and the slot's place at it ("anonymous-1,2"),
        as codes after the publishers' and the slots' own. Returns ((publisher code
        i8[n_pub], slot code i8[n_slot]) or None, the extra publisher labels, the extra
        slot labels)."""
        if not self._anonymity:
            return None, (), ()
        inv = self.market.inventory
        n_slot, n_pub = inv.slot_publisher.size, inv.hourly.shape[0]
        slots = anonymous_slots(self.market.campaigns)
        publishers = np.unique(inv.slot_publisher[slots])
        pub_code = np.arange(n_pub)
        pub_code[publishers] = n_pub + np.arange(publishers.size)
        slot_code = np.arange(n_slot)
        slot_code[slots] = n_slot + np.arange(slots.size)
        first_slot = np.searchsorted(inv.slot_publisher, np.arange(n_pub))
        pub_labels = tuple(f"anonymous-{k + 1}" for k in range(publishers.size))
        slot_labels = tuple(f"{pub_labels[pub_code[inv.slot_publisher[s]] - n_pub]},"
                            f"{s - first_slot[inv.slot_publisher[s]] + 1}" for s in slots)
        return (pub_code, slot_code), pub_labels, slot_labels

    def _seen(self, requests: RequestBatch) -> tuple[np.ndarray, np.ndarray]:
        """Each request's publisher and slot as buyers see them (TickView.seen_*)."""
        if self._seen_codes is None:
            return requests.publisher, requests.slot
        pub_code, slot_code = self._seen_codes
        anonymous = self.market.campaigns.row_anonymous[requests.target_row]
        return (np.where(anonymous, pub_code[requests.publisher], requests.publisher),
                np.where(anonymous, slot_code[requests.slot], requests.slot))

    def close(self) -> None:
        """Stop the look-ahead thread (a pending draw is finished first) and close the
        connections to external bidders."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.clearing.close()
        if self.external is not None:
            self.external.close()

    # ---- the tick ---------------------------------------------------------------

    def run_tick(self, t0: float, t1: float, upcoming: tuple[float, float] | None = None) -> int:
        """Simulate requests arriving in [t0, t1); returns how many there were.

        upcoming: the next tick's bounds, if known, so that its inputs are prepared
        while this one clears (when ticks are large enough for that to pay).
        """
        inputs = self._inputs(t0, t1, upcoming)
        requests = self._floors_in_force(inputs.requests)
        active, bids = self._bids(t0, t1, requests, inputs)
        if self.openrtb_log is not None:
            self.openrtb_log.prepare(requests, self._tick_view(t0, t1, requests),
                                     inputs.predicted_ctr, inputs.base_cvr, self.rng_bids, active)
        s = self.state
        result = self.clearing.clear(requests, bids, self.market.mechanism, self._targeting(),
                                     self.market.deals.deals, s.book, s.caps, s.users, s.sellers,
                                     s.bid_book)
        # Outcomes, money and the per-request tallies in one numba pass (rtb.tick_passes).
        settled = self._settle(requests, result)
        won, outcomes = settled.won, settled.outcomes
        conversions = self._settle_conversions(t1, settled, inputs.organic)
        self._feedback(t0, t1, requests, active, result, won, outcomes, conversions)
        if self._learned is not None:
            self._learn(t1 - t0, result, won)
        if self.external is not None:
            self.external.notify(requests, result, bids)
        if self.openrtb_log is not None:
            self.openrtb_log.write(requests, result, bids,
                                   self.external.answers if self.external is not None else {})
        self._tally(requests, result, settled)
        if self.log is not None and won.size:
            self._log(requests, result, won, bids, outcomes)
        return requests.time_s.size

    # ---- stages -----------------------------------------------------------------

    def _requests(self, t0: float, t1: float) -> RequestBatch:
        """The requests and audience stages: everything of [t0, t1) drawn from streams."""
        m, inv = self.market, self.market.inventory
        time_s, slot = generate_requests(inv, m.start, t0, t1, self.rng_traffic)
        n = time_s.size
        deal = (assign_deals(m.deals, slot, self.rng_deals) if m.deals.ids
                else np.full(n, -1, dtype=np.int32))
        target_row = target_rows(m.deals, m.campaigns.anonymous_row, slot, deal)
        market_cpm = m.background.draw(n, self.rng_market)
        aud = m.audience
        device_user = draw_users(aud, inv.slot_device[slot], self.rng_users)
        # The id the request carries (the device's id alive at its time, a login id, or
        # a no-id row without consent); the truth stays with the device-user.
        user = current_ids(aud.identity, device_user, time_s)
        users = self.state.users
        user_row = assign_user_rows_nb(users.row_of, users.rows_in_use, user, users.no_id_row)
        truth = user_truth(aud, device_user)
        geo = truth.geo
        # Every request gets its uniforms whatever happens to it, so the streams stay
        # aligned across strategies (common random numbers).
        u_click, u_convert, u_delay = self.rng_outcomes.random((3, n))
        u_pace = self.rng_pace.random(n)
        floor_cpm = (m.floors.table[slot, geo] if not m.floors.groups else np.full(n, np.nan))
        # Per-user lookups in arrays of millions are cache misses: done here, where
        # they can run ahead of the clearing thread (user_truth requests them ahead).
        return RequestBatch(
            time_s=time_s, slot=slot, target_row=target_row, publisher=inv.slot_publisher[slot],
            format=inv.slot_format[slot], deal=deal, market_cpm=market_cpm, floor_cpm=floor_cpm,
            user=user, user_row=user_row, device_user=device_user,
            person=device_user if aud.identity.trivial else aud.identity.device_person[device_user],
            geo=geo, user_ctr=truth.ctr, user_segments=truth.segments, u_pace=u_pace,
            u_click=u_click, u_convert=u_convert, u_delay=u_delay)

    def _prepare(self, t0: float, t1: float) -> TickInputs:
        """The tick's inputs that depend on no run state (see TickInputs)."""
        m = self.market
        requests = self._requests(t0, t1)
        n = requests.time_s.size
        uniforms = np.empty((self._uniform_campaigns.size, n))
        for row, c in enumerate(self._uniform_campaigns):
            uniforms[row] = self.rng_bids[c].random(n)
        base_cvr = m.behaviour.cvr_by_format[requests.format]
        bids, predicted = formula_bids(m.campaigns, self._formulas, m.user_factor,
                                       m.behaviour.ctr_by_format[requests.format], base_cvr,
                                       requests.user, uniforms)
        # Organic conversions are drawn per device-user, as before ids, and are seen
        # under the id alive at their time.
        time_s, device_user, advertiser = organic_conversions(
            m.behaviour, m.n_device_users, m.advertiser_value.size, t0, t1, self.rng_organic)
        organic = (time_s, current_ids(m.audience.identity, device_user, time_s), advertiser)
        return TickInputs(requests, bids, predicted, base_cvr, organic)

    def _inputs(self, t0: float, t1: float, upcoming: tuple[float, float] | None) -> TickInputs:
        """This tick's inputs (prepared ahead if it was announced); the next tick's started.

        The next tick's inputs are prepared in a second thread while this tick clears:
        they use only their own random streams, consumed in tick order by that one
        thread, so the results are the same as preparing them here.
        """
        if self._ahead is not None:
            bounds, future = self._ahead
            if bounds != (t0, t1):
                raise RuntimeError(f"tick {(t0, t1)} does not follow the announced {bounds}")
            inputs = future.result()
        else:
            inputs = self._prepare(t0, t1)
        if upcoming is not None and self._pool is not None:
            self._ahead = (upcoming, self._pool.submit(self._prepare, *upcoming))
        else:
            self._ahead = None
        return inputs

    def _floors_in_force(self, requests: RequestBatch) -> RequestBatch:
        """Moving floors are read at the tick, after the last update."""
        if self.state.dynamic_floors is None:
            return requests
        return requests._replace(floor_cpm=self.state.floor_table[requests.slot, requests.geo])

    def _bids(self, t0: float, t1: float, requests: RequestBatch,
              inputs: TickInputs) -> tuple[np.ndarray, np.ndarray]:
        """The bids stage: (active bool[nc], bids f8[n, nc]); NaN = no bid."""
        table, book = self.market.campaigns, self.state.book
        # Campaigns out of flight for the whole tick, or out of money, do not bid.
        active = ((table.flight_end_s > t0) & (table.flight_start_s < t1)
                  & (book.remaining_total > table.data_micros))
        self._view_rows = {}
        learning = self._learning[active[self._learning]]
        self._tick = None
        tick = None
        if (active & self._viewers).any() or learning.size:
            tick = self._tick_view(t0, t1, requests)
        bids = finish_bids(table, self._formulas, active, inputs.formula_bids, inputs.predicted_ctr,
                           inputs.base_cvr, requests.floor_cpm, self.rng_bids, tick, self._view_rows)
        self._learned = None
        if learning.size:
            self._learner_bids(t0, t1, learning, tick, inputs, bids)
        if self.external is not None:
            self.external.bid(requests, tick, inputs.predicted_ctr, inputs.base_cvr,
                              self.rng_bids, active, bids)
        for c in np.flatnonzero(active & self._learners):
            if c not in self._view_rows:  # a learner that bids by formula: rows for its feedback
                self._view_rows[c] = eligible_rows(c, tick)
        if self._multiplied.size:
            scale_bids(bids, self._multiplied, self.state.bid_multiplier)
        if self.bid_scale is not None:
            self._scale_bids(bids, active)
        return active, bids

    def _tick_view(self, t0: float, t1: float, requests: RequestBatch) -> TickView:
        """The tick's TickView (made once per tick, when something needs views)."""
        if self._tick is None:
            m = self.market
            self._tick = TickView(requests, self._targeting(), m.deals.deals, m.inventory.slot_device,
                                  m.audience.visible_segments, self.state.book, t0, t1,
                                  self._view_labels, *self._seen(requests))
        return self._tick

    def _learner_bids(self, t0: float, t1: float, campaigns: np.ndarray, tick: TickView,
                      inputs: TickInputs, bids: np.ndarray) -> None:
        """The learning built-ins' bids (dsp.adaptive): what their classes' bid() does,
        for all of them at once. Exploration uniforms come from each shaded campaign's
        own stream, one per request of the tick, as its view.uniform would."""
        learners, table = self.state.learners, self.market.campaigns
        ortb = campaigns[self._formulas.code[campaigns] == FORMULA_BUDGET_ORTB]
        targets = learners.targets(ortb, self.state.book, table.flight_end_s, t0, t1)
        rows = np.flatnonzero(np.isin(learners.shaded, campaigns))
        n = tick.requests.time_s.size
        uniforms = np.empty((learners.shaded.size, n))
        for s in rows.tolist():
            uniforms[s] = self.rng_bids[learners.shaded[s]].random(n)
        explore_now = np.where(learners.placed < learners.warmup, 1.0, learners.explore)
        points = learner_bids(table, self._formulas, campaigns, learners, explore_now, uniforms,
                              tick, inputs.predicted_ctr, inputs.base_cvr, bids)
        self._learned = (ortb, targets, rows, points)

    def _learn(self, length: float, result: TickResult, won: np.ndarray) -> None:
        """The learning built-ins that bid this tick learn from it (their classes' observe())."""
        ortb, targets, rows, points = self._learned
        learners = self.state.learners
        if ortb.size:
            camp = result.winner[won]
            cost = _impression_cost_micros(self.state.book, camp, result.price_cpm[won])
            spend = _int_sum(camp, cost, len(self.market.campaigns.ids))[ortb]
            learners.learn_ortb(ortb, targets, spend, length)
        if rows.size:
            learners.learn_shaded(rows, points, result.winner)
        self._learned = None

    def _scale_bids(self, bids: np.ndarray, active: np.ndarray) -> None:
        """bid_scale on the active campaigns' bids: x m, at most the campaign's max bid;
        m = 0 is no bid at all (NaN), m = 1 leaves the bids as they are."""
        max_bid = self.market.campaigns.max_bid_cpm
        for c in np.flatnonzero(active & (self.bid_scale != 1.0)).tolist():
            m = float(self.bid_scale[c])
            if m == 0.0:
                bids[:, c] = np.nan
                continue
            bids[:, c] *= m
            if max_bid[c] is not None:
                np.minimum(bids[:, c], max_bid[c], out=bids[:, c])

    def _targeting(self) -> Targeting:
        table = self.market.campaigns
        return Targeting(table.slot_words, table.slot_blocked_words, table.slot_hidden_words,
                         table.user_words,
                         table.flight_start_s, table.flight_end_s, self.state.pace_share,
                         table.pace_offset)

    def _settle(self, requests: RequestBatch, result: TickResult) -> Settled:
        """The outcomes stage, the money of the settle stage and the tally's per-request
        sums, in one pass over the tick (rtb.tick_passes.settle_tick)."""
        m, tally = self.market, self.state.tally
        settled = settle_tick(requests, result, m.behaviour, self._odds,
                              m.campaigns.row_anonymous if self._anonymity else None,
                              m.exchange_fee_ppm, self._pub_ssp_fee_ppm, tally)
        tally.requests += result.winner.size
        tally.impressions_to_campaigns += settled.won.size
        tally.impressions_to_market += settled.impressions_to_market
        return settled

    def _settle_conversions(self, t1: float, settled: Settled, organic) -> None:
        """Conversions due before t1 (ad-caused and organic), each credited to its last touch."""
        m, s = self.market, self.state
        wins, outcomes = settled.wins, settled.outcomes
        conv = outcomes.converted
        s.pending.add(outcomes.conversion_time_s[conv], wins.user[conv], wins.advertiser[conv],
                      wins.campaign[conv])
        s.pending.add(*organic, np.full(organic[0].size, -1, dtype=np.int32))
        s.tally.organic_conversions += organic[0].size
        time_s, user, advertiser, caused_by = s.pending.pop_due(t1)
        if time_s.size == 0:
            return None
        nc = s.tally.n_campaigns
        s.tally.ad_conversions += _count(caused_by[caused_by >= 0], nc)
        no_id_row = m.audience.identity.no_id_row
        # Impressions without an id leave no touch (last_touches leaves them out).
        touch = last_touches(time_s, user, advertiser, s.users, wins,
                             no_id_row if no_id_row < m.n_users else None)
        credited = attributed_campaign(time_s, touch, m.behaviour.attribution_window_s)
        s.tally.attributed_conversions += _count(credited[credited >= 0], nc)
        return time_s, touch, credited

    def _tally(self, requests: RequestBatch, result: TickResult, settled: Settled) -> None:
        """What the tally needs beyond settle_tick's pass: people and moving floors."""
        if self.state.people is not None:
            # The truth beside the ids: each won impression counted against its person.
            # Written here, not in the look-ahead thread: that thread also follows the
            # ids' churn (dmp.identity.current_ids), and with the book as well it made
            # the clearing thread wait (two days of large with identity: 4.7-5.2 s,
            # against 3.8-3.9 s written here).
            wins = settled.wins
            record_people(self.state.people, self.market, wins.time_s,
                          requests.person[settled.won], wins.campaign)
        if self.state.dynamic_floors is not None:
            self.state.dynamic_floors.observe(requests.slot, requests.geo, result.price_cpm,
                                              result.open_auction)

    def _feedback(self, t0: float, t1: float, requests: RequestBatch, active: np.ndarray,
                  result: TickResult, won: np.ndarray, outcomes: AdOutcomes, conversions) -> None:
        """Tell every campaign that can learn what it won this tick (if it bid) and the
        conversions credited to it that were settled this tick (dsp.strategies.Feedback)."""
        learners = self._learners
        if not learners.any():
            return
        listening = active & learners
        if conversions is not None:
            conv_time_s, touch, credited = conversions
            credited_learner = (credited >= 0) & learners[np.maximum(credited, 0)]
            listening[credited[credited_learner]] = True
        listening = np.flatnonzero(listening)
        if listening.size == 0:
            return
        table, book = self.market.campaigns, self.state.book
        camp, price_cpm = result.winner[won], result.price_cpm[won]
        cost_micros = _impression_cost_micros(book, camp, price_cpm)
        order = np.argsort(camp, kind="stable")
        bounds = np.searchsorted(camp[order], np.arange(len(active) + 1))
        if conversions is not None:
            by_campaign = np.argsort(credited, kind="stable")
            conv_bounds = np.searchsorted(credited[by_campaign], np.arange(len(active) + 1))
        no_conversions = np.empty(0)
        for c in listening:
            mine = order[bounds[c]:bounds[c + 1]]
            rows = self._view_rows.get(c)
            view_index = (np.searchsorted(rows, won[mine]) if rows is not None
                          else np.empty(0, dtype=np.int64))
            conv_time = conv_impression = no_conversions
            if conversions is not None:
                credited_here = by_campaign[conv_bounds[c]:conv_bounds[c + 1]]
                conv_time = conv_time_s[credited_here]
                conv_impression = touch_time_s(touch[credited_here])
            cost = cost_micros[mine]
            table.strategies[c].observe(Feedback(
                price_cpm=price_cpm[mine], clicked=outcomes.clicked[mine],
                spend_micros=int(cost.sum()), won=view_index, cost=cost / MICROS_PER_UNIT,
                time_s=requests.time_s[won[mine]], conversion_time_s=conv_time,
                conversion_impression_s=conv_impression, tick_start_s=t0, tick_end_s=t1))

    def _log(self, requests: RequestBatch, result: TickResult, won: np.ndarray, bids: np.ndarray,
             outcomes: AdOutcomes) -> None:
        camp = result.winner[won]
        # Like the report, the log counts only conversions within the simulation.
        converted = outcomes.converted & (outcomes.conversion_time_s < self.market.duration_s)
        self.log.write(requests.time_s[won], requests.user[won], requests.slot[won], camp,
                       requests.floor_cpm[won], bids[won, camp], result.price_cpm[won],
                       outcomes.clicked, converted)
