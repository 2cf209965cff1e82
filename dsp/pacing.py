"""Even budget pacing by probabilistic throttling, updated between ticks."""

from __future__ import annotations

import numpy as np

from dsp.campaigns import NO_LIMIT_MICROS, CampaignTable
from rtb.books import CampaignBook

MIN_SHARE = 1e-3  # never throttle to zero: the controller needs spend to observe


class Pacer:
    """Adjusts each even-paced campaign's share of eligible requests it bids on.

    Target: spend what is left today (or of the whole budget, without a daily budget)
    evenly over the time left today (or in the flight). Each update compares the spend
    rate since the last update with the target and scales the share by the square
    root of their ratio: damped, so traffic's daily shape does not make it oscillate.
    """

    def __init__(self, table: CampaignTable):
        self.table = table
        self._last_spent = np.zeros(len(table.ids), dtype=np.int64)
        self._last_t = 0.0

    def update(self, book: CampaignBook, share: np.ndarray, t: float) -> None:
        """Set `share` (the run state's pacing shares) from the spend since the last update."""
        spent = book.media_micros + book.fee_micros + book.data_cost_micros
        dt = t - self._last_t
        if dt <= 0:
            return
        rate = (spent - self._last_spent) / dt
        self._last_spent = spent.copy()
        self._last_t = t

        tb = self.table
        has_daily = tb.daily_budget_micros < NO_LIMIT_MICROS
        # The kernel restores daily budgets lazily; a campaign past midnight has its full day.
        new_day = t >= book.day_end_s
        left_today = np.where(new_day, book.daily_budget, book.remaining_daily)
        day_end = np.where(new_day, book.day_end_s + 86_400.0, book.day_end_s)
        flight_left = np.maximum(tb.flight_end_s - t, 1.0)
        day_left = np.maximum(np.minimum(day_end, tb.flight_end_s) - t, 1.0)
        target = book.remaining_total / flight_left
        target = np.where(has_daily, np.minimum(target, left_today / day_left), target)

        grow = np.where(rate > 0, np.sqrt(target / np.maximum(rate, 1e-9)), 2.0)
        paced = tb.even_pacing & (t >= tb.flight_start_s)
        share[:] = np.where(paced, np.clip(share * grow, MIN_SHARE, 1.0), 1.0)
