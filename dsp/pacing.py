"""Budget pacing, updated after every tick: asap, traffic-following even, PID and dual.

Every paced campaign has one target: cumulative spend that follows the traffic it can
expect to see. From any time t on, what is left of the budget (or of today's, for a
daily budget) is to be spent in proportion to the expected requests of the slots the
campaign targets, over the rest of its flight (or of the day): the market's own hourly
and weekly shapes (ssp.inventory.slot_rates), never observed traffic. So, on track,
spend up to t = budget x expected requests up to t / expected requests over the flight.

The modes differ in how they meet it:

- even: throttles (share of targeted requests bid on) to the share that would spend
  the target at the spend per request seen lately: a model, no controller;
- pid: a PID controller on the log of the spend rate against the target, acting on
  the log of the throttle share (started at even's share, once there is spend to see);
- dual: never throttles; bids x 1/(1+mu), mu raised while spend runs ahead of the
  target and lowered (to 0) while it runs behind (adaptive dual pacing).

"Lately" is an exponential average over PACING_INTERVAL_S of simulated time, so that
the controllers' gains mean the same whatever the tick.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from dsp.campaigns import NO_LIMIT_MICROS, PACING_CODE, CampaignTable
from rtb.books import CampaignBook
from rtb.types import LOSS_OUT_OF_BUDGET, OUTCOME_BLOCKED, OUTCOME_NOT_TARGETED, OUTCOME_PACED
from rtb.types import SECONDS_PER_DAY, SECONDS_PER_HOUR
from ssp.inventory import Inventory, slot_rates

PACING_ASAP, PACING_EVEN, PACING_PID, PACING_DUAL = (PACING_CODE[k] for k in ("asap", "even", "pid", "dual"))

PACING_INTERVAL_S = 900.0  # the averaging time of spend and traffic, and the gains' time unit
MIN_SHARE = 1e-3  # never throttle to zero: the controller needs spend to observe
START_SHARE = 0.1  # a throttled campaign's share before it has spent anything
MAX_LOG_ERROR = math.log(10.0)  # a spend rate off by more than 10x counts as 10x
MAX_DUAL_ERROR = 4.0  # spend at 5x its target counts as 5x
SHARE_FULL, SHARE_EVEN, SHARE_PID = 0, 1, 2  # a campaign's share: 1 (not throttled), even's, the PID's


class ExpectedTraffic:
    """Each campaign's expected requests over time: the rates of the slots it targets.

    Rates are piecewise constant by UTC hour, as the request generator draws them (it
    reads a tick's rate at the tick's start: the same when ticks divide the hour).
    """

    def __init__(self, inventory: Inventory, start_epoch_s: float, duration_s: float,
                 slot_words: np.ndarray, anonymous_row: np.ndarray | None = None,
                 anonymous_share: np.ndarray | None = None):
        """slot_words: the targeting rows (rtb.books.Targeting); a slot's requests read its
        own row, or a share anonymous_share[s] of them its anonymous row anonymous_row[s]."""
        nc = slot_words.shape[1] * 64
        c = np.arange(nc)
        n_slot = inventory.slot_rate.size

        def bits(rows: np.ndarray) -> np.ndarray:
            return ((slot_words[rows][:, c >> 6] >> (c & 63).astype(np.uint64))
                    & np.uint64(1)).astype(np.float64)

        targets = bits(np.arange(n_slot))
        if anonymous_row is not None and (anonymous_row != np.arange(n_slot)).any():
            # (A slot whose own row is anonymous already has nothing to mix.)
            share = np.where(anonymous_row != np.arange(n_slot), anonymous_share, 0.0)[:, None]
            targets = (1.0 - share) * targets + share * bits(anonymous_row)
        self.first_hour = math.floor(start_epoch_s / SECONDS_PER_HOUR)
        last_hour = math.ceil((start_epoch_s + duration_s) / SECONDS_PER_HOUR)
        hours = range(self.first_hour, max(last_hour, self.first_hour + 1))
        rates = np.stack([slot_rates(inventory, h * SECONDS_PER_HOUR) for h in hours])
        self.rate = rates @ targets  # f8[n_hours, 64 * n_words]: expected requests per second
        self.cumulative = np.zeros_like(self.rate)  # at each hour's start
        self.cumulative[1:] = np.cumsum(self.rate[:-1] * SECONDS_PER_HOUR, axis=0)
        self.start_epoch_s = start_epoch_s
        self._columns = c

    def upto(self, t: np.ndarray) -> np.ndarray:
        """f8[nc]: campaign c's expected requests from the first hour's start to run time t[c]."""
        nc = t.size
        x = self.start_epoch_s + t
        k = np.clip(np.floor(x / SECONDS_PER_HOUR).astype(np.int64) - self.first_hour,
                    0, self.rate.shape[0] - 1)
        c = self._columns[:nc]
        since = x - (self.first_hour + k) * SECONDS_PER_HOUR
        return self.cumulative[k, c] + self.rate[k, c] * since


class Pacer:
    """Sets each campaign's throttle share and bid multiplier between ticks."""

    def __init__(self, table: CampaignTable, traffic: ExpectedTraffic,
                 share: np.ndarray, multiplier: np.ndarray):
        nc = len(table.ids)
        self.table, self.traffic = table, traffic
        kind = table.pacing_kind
        self.throttled = (kind == PACING_EVEN) | (kind == PACING_PID)
        self.pid, self.dual = kind == PACING_PID, kind == PACING_DUAL
        share[:] = np.where(self.throttled, START_SHARE, 1.0)
        multiplier[:] = 1.0
        self._last_t = 0.0
        self._last = np.zeros((4, nc))  # spend, targeted, passed, expected: totals at _last_t
        self._avg = np.zeros((5, nc))  # the same, and the target's spend, averaged
        self._per_request = np.zeros(nc)  # target spend per expected request, set at _last_t
        self._log_share = np.log(share.copy())
        self._pid_on = np.zeros(nc, dtype=bool)
        self._errors = np.zeros((2, nc))  # the PID's last two errors
        self.mu = np.zeros(nc)
        self._flight_traffic = traffic.upto(table.flight_end_s)  # expected over each flight
        # Who sets each share: _even_nb (1, or even's share), or the PID below.
        self._share_by = np.where(self.pid, SHARE_PID, np.where(self.throttled, SHARE_EVEN, SHARE_FULL))
        self._adaptive = bool((self.pid | self.dual).any())
        self._even = np.zeros(nc)
        self._observed = np.zeros(nc, dtype=np.bool_)
        self._in_flight = np.zeros(nc, dtype=np.bool_)

    def update(self, book: CampaignBook, share: np.ndarray, multiplier: np.ndarray,
               t: float) -> None:
        """After the ticks up to run time t: set `share` and `multiplier` (the run state's)."""
        dt = t - self._last_t
        if dt <= 0:
            return
        tb, traffic = self.table, self.traffic
        # The averages, the target and even's share in one compiled pass over the
        # campaigns (it runs after every tick: as numpy, some thirty small array
        # operations, it cost more than a small tick itself). pid and dual follow here.
        even = self._even
        _even_nb(t, math.exp(-dt / PACING_INTERVAL_S), book.media_micros, book.fee_micros,
                 book.data_cost_micros, book.outcomes, book.remaining_total, book.remaining_daily,
                 book.daily_budget, book.day_end_s, tb.daily_budget_micros, tb.flight_start_s,
                 tb.flight_end_s, traffic.start_epoch_s, traffic.first_hour, traffic.cumulative,
                 traffic.rate, self._flight_traffic, self._share_by, self._last, self._avg,
                 self._per_request, even, self._observed, self._in_flight, share)
        self._last_t = t
        if not self._adaptive:
            return
        spend, target = self._avg[0], self._avg[4]
        observed, in_flight = self._observed, self._in_flight

        # pid: started at even's share when it first sees spend; then error in, share out.
        start_pid = self.pid & observed & ~self._pid_on
        self._log_share = np.where(start_pid, np.log(even), self._log_share)
        self._pid_on |= start_pid
        running = self.pid & self._pid_on & in_flight & (target > 0)
        if running.any():
            p = tb.pacing_params
            error = np.clip(np.log(np.maximum(target, 1e-9) / np.maximum(spend, 1e-9)),
                            -MAX_LOG_ERROR, MAX_LOG_ERROR)
            last, before = self._errors
            u = dt / PACING_INTERVAL_S
            change = (p[:, 0] * (error - last) + p[:, 1] * error * u
                      + p[:, 2] * (error - 2 * last + before) / u)
            # Clipping the output is the anti-windup: the integral stops at the bounds.
            self._log_share = np.where(running, np.clip(self._log_share + change, math.log(MIN_SHARE), 0.0),
                                       self._log_share)
            self._errors = np.where(running, np.stack([error, last]), self._errors)
        pid_share = np.where(self._pid_on, np.exp(self._log_share), np.clip(share * 2.0, MIN_SHARE, 1.0))

        # dual: mu follows spend's relative excess over the target.
        stepping = self.dual & in_flight & (target > 0)
        if stepping.any():
            excess = np.clip(spend / np.maximum(target, 1e-9) - 1.0, -1.0, MAX_DUAL_ERROR)
            mu = np.maximum(0.0, self.mu + tb.pacing_params[:, 0] * excess * (dt / PACING_INTERVAL_S))
            self.mu = np.where(stepping, mu, self.mu)
            multiplier[:] = np.where(self.dual, 1.0 / (1.0 + self.mu), 1.0)

        # Out of flight, shares keep their value (even's and asap's are set by _even_nb).
        share[:] = np.where(self.pid & in_flight, pid_share, share)


@njit(cache=True, nogil=True)
def _clip(x, lo, hi):
    """np.clip's result for one number (NaN stays NaN)."""
    if x != x:
        return x
    return min(max(x, lo), hi)


@njit(cache=True, nogil=True)
def _upto(start_epoch_s, first_hour, cumulative, rate, c, t):
    """ExpectedTraffic.upto for one campaign c at run time t (the same operations)."""
    x = start_epoch_s + t
    k = int(np.floor(x / SECONDS_PER_HOUR)) - first_hour
    k = min(max(k, 0), rate.shape[0] - 1)
    since = x - (first_hour + k) * SECONDS_PER_HOUR
    return cumulative[k, c] + rate[k, c] * since


@njit(cache=True, nogil=True, error_model="numpy")
def _even_nb(t, decay, media, fee, data, outcomes, remaining_total, remaining_daily, daily_budget,
             day_end_s, daily_budget_micros, flight_start_s, flight_end_s, start_epoch_s,
             first_hour, cumulative, rate, flight_traffic, share_by, last, avg, per_request,
             even, observed, in_flight, share):
    """Pacer.update's common part, campaign by campaign, operation for operation as the
    numpy it replaced (so the same numbers): the totals and their averages, the target's
    spend per expected request, even's share (into even; into share for the campaigns
    that pace by it, 1 for those not throttled: share_by), observed and in_flight."""
    for c in range(even.size):
        o = outcomes[c]
        total = 0
        for j in range(o.size):
            total += o[j]
        targeted = total - o[OUTCOME_NOT_TARGETED] - o[OUTCOME_BLOCKED]
        passed = targeted - o[OUTCOME_PACED] - o[LOSS_OUT_OF_BUDGET]
        fs, fe = flight_start_s[c], flight_end_s[c]
        totals = (float(media[c] + fee[c] + data[c]), float(targeted), float(passed),
                  _upto(start_epoch_s, first_hour, cumulative, rate, c, _clip(t, fs, fe)))
        target_step = per_request[c] * (totals[3] - last[3, c])
        for r in range(4):
            avg[r, c] = avg[r, c] * decay + (totals[r] - last[r, c])
            last[r, c] = totals[r]
        avg[4, c] = avg[4, c] * decay + target_step
        spend, targeted_avg, passed_avg, seen = avg[0, c], avg[1, c], avg[2, c], avg[3, c]

        # What the target asks from now on: what is left over the expected traffic left.
        start = max(t, fs)
        seen_now = _upto(start_epoch_s, first_hour, cumulative, rate, c, min(start, fe))
        per = remaining_total[c] / max(flight_traffic[c] - seen_now, 1e-9)
        if daily_budget_micros[c] < NO_LIMIT_MICROS:
            new_day = t >= day_end_s[c]  # the kernel restores daily budgets lazily
            left_today = daily_budget[c] if new_day else remaining_daily[c]
            day_end = day_end_s[c] + SECONDS_PER_DAY if new_day else day_end_s[c]
            left_day = _upto(start_epoch_s, first_hour, cumulative, rate, c,
                             _clip(day_end, start, fe)) - seen_now
            per = min(per, left_today / max(left_day, 1e-9))
        per_request[c] = per
        in_flight[c] = (t >= fs) and (t < fe)

        # even: the share at which the spend per expected request seen lately meets it.
        observed[c] = (spend > 0) and (passed_avg > 0) and (seen > 0)
        if observed[c]:
            full_share_rate = spend / max(passed_avg, 1.0) * targeted_avg / max(seen, 1e-9)
            e = per / full_share_rate  # a huge ratio is clipped to 1
        else:
            e = share[c] * 2.0
        even[c] = _clip(e, MIN_SHARE, 1.0)
        if share_by[c] == SHARE_EVEN:
            # Out of flight, shares keep their value: a flight that starts later starts throttled.
            if in_flight[c]:
                share[c] = even[c]
        elif share_by[c] == SHARE_FULL:
            share[c] = 1.0


@njit(cache=True, nogil=True)
def _scale_bids_nb(bids, columns, multiplier):
    for i in range(bids.shape[0]):
        for c in columns:
            bids[i, c] *= multiplier[c]


def scale_bids(bids: np.ndarray, columns: np.ndarray, multiplier: np.ndarray) -> None:
    """bids f8[n, nc] *= multiplier f8[nc], in place, in the given columns only (NaN stays
    NaN): dual pacing's multiplier, on every strategy's bids, built-in or custom."""
    _scale_bids_nb(bids, columns.astype(np.int64), multiplier)
