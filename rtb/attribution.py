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

from rtb.books import (TOUCH_CAMPAIGN_BITS, UserBook, book_touches, encode_touch, touch_campaign,
                       touch_time_s)
from rtb.types import CLOCK_UNITS_PER_S


class TickWins(NamedTuple):
    """A tick's campaign impressions, in time order (all arrays [k])."""

    time_s: np.ndarray  # f8, on the clock
    user: np.ndarray  # i8
    advertiser: np.ndarray  # i4
    campaign: np.ndarray  # i4
    prior_touch: np.ndarray  # i8: the advertiser's touch of the user this one replaced
    # (rtb.books.encode_touch; -1 = none)


def last_touches(time_s: np.ndarray, user: np.ndarray, advertiser: np.ndarray,
                 last_touch: UserBook | np.ndarray, wins: TickWins,
                 no_id_row: int | None = None) -> np.ndarray:
    """i8[k]: each conversion's last touch strictly before it (encode_touch; -1 = none).

    Conversions (time_s on the clock, user, advertiser) must fall in the tick whose
    impressions are `wins` and no earlier; last_touch (rtb.books.UserBook) is the
    kernel's book after that tick (or its touches as encode_touch's, i8[n_users, n_adv]).
    no_id_row: wins on rows from it on (requests without an id, dmp/identity.py) left no
    touch and are left out.
    """
    if isinstance(last_touch, UserBook):
        touch = book_touches(last_touch, user, advertiser)
        n_adv = last_touch.touch_low.shape[1]
    else:
        touch = last_touch[user, advertiser]
        n_adv = last_touch.shape[1]
    units = (time_s * CLOCK_UNITS_PER_S).astype(np.int64)  # exact: times are on the clock
    # Most conversions: the book's touch, the latest of all, came before them.
    overtaken = np.flatnonzero(touch >> TOUCH_CAMPAIGN_BITS >= units)
    if overtaken.size:
        # An impression of this tick at or after t replaced the answer: the pair's last
        # win before t, or, if none, the touch its first win of the tick replaced.
        if no_id_row is not None:
            # Impressions without an id leave no touch: a conversion under a no-id row
            # (another person's, as like as not) must not find them.
            wins = TickWins(*(field[wins.user < no_id_row] for field in wins))
        pair = wins.user * n_adv + wins.advertiser
        order = np.argsort(pair, kind="stable")  # by pair, each pair's wins in time order
        touch[overtaken] = _touch_before_nb(
            time_s[overtaken], user[overtaken].astype(np.int64) * n_adv + advertiser[overtaken],
            pair[order], wins.time_s[order], wins.campaign[order], wins.prior_touch[order])
    return touch


@njit(cache=True)
def _touch_before_nb(time_s, pair, win_pair, win_time, win_campaign, prior_touch):
    out = np.empty(time_s.size, np.int64)
    for k in range(time_s.size):
        lo = np.searchsorted(win_pair, pair[k], side="left")
        hi = np.searchsorted(win_pair, pair[k], side="right")
        j = lo + np.searchsorted(win_time[lo:hi], time_s[k], side="left") - 1
        out[k] = encode_touch(win_time[j], win_campaign[j]) if j >= lo else prior_touch[lo]
    return out


def attributed_campaign(time_s: np.ndarray, touch: np.ndarray, window_s: float) -> np.ndarray:
    """i4[k]: the campaign each conversion is credited to: its last touch's (touch, from
    last_touches) if within the window, else -1."""
    within = (touch >= 0) & (time_s - touch_time_s(touch) <= window_s)
    return np.where(within, touch_campaign(touch), -1).astype(np.int32)
