"""Last-touch attribution, exact at any tick length.

The rule: a conversion at time t is credited to the advertiser's last impression to
that user strictly before t, if that impression is within the attribution window
(t - its time <= window). Conversions are settled at the end of the tick they fall
in, when the kernel's touch book already holds the whole tick's impressions; one that
came at or after t is undone here with the tick's own wins, each of which carries the
touch it replaced. So the answer does not depend on how impressions and conversions
share a tick.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit


class TickWins(NamedTuple):
    """A tick's campaign impressions, in time order (all arrays [k])."""

    time_s: np.ndarray  # f8
    user: np.ndarray  # i8
    advertiser: np.ndarray  # i4
    campaign: np.ndarray  # i4
    prior_time_s: np.ndarray  # f8: the advertiser's touch of the user this one replaced; -inf = none
    prior_campaign: np.ndarray  # i4: its campaign; -1 = none


def last_touches(time_s: np.ndarray, user: np.ndarray, advertiser: np.ndarray,
                 touches: np.ndarray, wins: TickWins) -> tuple[np.ndarray, np.ndarray]:
    """(time f8[k], campaign i4[k]) of each conversion's last touch strictly before it.

    Conversions (time_s, user, advertiser) must fall in the tick whose impressions are
    `wins` and no earlier; touches (rtb.kernel.UserBook.touches) is the kernel's book
    after that tick. A conversion without such a touch gets (-inf, -1).
    """
    n_adv = touches.shape[1] // 2
    pair = wins.user * n_adv + wins.advertiser
    order = np.argsort(pair, kind="stable")  # by pair, each pair's wins still in time order
    out_time = np.empty(time_s.size)
    out_campaign = np.empty(time_s.size, dtype=np.int32)
    _last_touches_nb(time_s, user.astype(np.int64), advertiser.astype(np.int64), touches,
                     pair[order], wins.time_s[order], wins.campaign[order],
                     wins.prior_time_s[order], wins.prior_campaign[order], out_time, out_campaign)
    return out_time, out_campaign


@njit(cache=True)
def _last_touches_nb(time_s, user, advertiser, touches, win_pair, win_time, win_campaign,
                     prior_time, prior_campaign, out_time, out_campaign):
    n_adv = touches.shape[1] // 2
    for k in range(time_s.size):
        t, u, a = time_s[k], user[k], advertiser[k]
        if touches[u, 2 * a] < t:
            # The book's touch is the latest of all, and it came before t.
            out_time[k] = touches[u, 2 * a]
            out_campaign[k] = np.int32(touches[u, 2 * a + 1])
            continue
        # An impression of this tick at or after t replaced the answer: the pair's
        # last win before t, or, if none, the touch its first win of the tick replaced.
        key = u * n_adv + a
        lo = np.searchsorted(win_pair, key, side="left")
        hi = np.searchsorted(win_pair, key, side="right")
        j = lo + np.searchsorted(win_time[lo:hi], t, side="left") - 1
        if j >= lo:
            out_time[k] = win_time[j]
            out_campaign[k] = win_campaign[j]
        else:
            out_time[k] = prior_time[lo]
            out_campaign[k] = prior_campaign[lo]


def attributed_campaign(time_s: np.ndarray, touch_time: np.ndarray, touch_campaign: np.ndarray,
                        window_s: float) -> np.ndarray:
    """i4[k]: the campaign each conversion is credited to, -1 = none (no touch in the window)."""
    within = (touch_campaign >= 0) & (time_s - touch_time <= window_s)
    return np.where(within, touch_campaign, -1).astype(np.int32)
