"""The DSPs' side of a tick: predicted CTR/CVR, strategies' bids, targeting and pacing."""

from __future__ import annotations

import numpy as np
from numba import njit

from dsp.campaigns import CampaignTable
from dsp.strategies import BidView, capped


@njit(cache=True)
def mask_untargeted_nb(bids, time_s, slot, user, user_geo, user_segments, u_pace,
                       slot_ok, geo_ok, segment_mask, flight_start_s, flight_end_s,
                       pace_share, stream_offset):
    """Set bids to NaN where the campaign does not target the request or pacing skips it.

    Flights are checked per request, so a campaign starts and stops to the second
    whatever the tick length. Pacing throttles a campaign to a share of its eligible
    requests with one uniform per request, rotated by a fixed per-campaign offset.
    """
    n, nc = bids.shape
    for i in range(n):
        s = slot[i]
        u = user[i]
        g = user_geo[u]
        bits = user_segments[u]
        t = time_s[i]
        for c in range(nc):
            mask = segment_mask[c]
            x = u_pace[i] + stream_offset[c]
            if x >= 1.0:
                x -= 1.0
            if (not slot_ok[s, c] or not geo_ok[g, c] or (mask != 0 and (bits & mask) == 0)
                    or t < flight_start_s[c] or t >= flight_end_s[c] or x >= pace_share[c]):
                bids[i, c] = np.nan


def bid_matrix(table: CampaignTable, pace_share: np.ndarray, user_factor: np.ndarray,
               audience_geo: np.ndarray, audience_segments: np.ndarray,
               base_ctr: np.ndarray, base_cvr: np.ndarray,
               time_s: np.ndarray, slot: np.ndarray, user: np.ndarray, floor_cpm: np.ndarray,
               u_pace: np.ndarray, u_strategy: np.ndarray, t0: float, t1: float) -> np.ndarray:
    """Bids f8[n, nc] for one tick's requests, NaN where a campaign does not bid.

    user_factor f4[n_users, n_dsp]: each DSP's estimate of a user's click propensity
    (truth times the model's error). base_ctr/base_cvr: per request, by format.
    """
    n, nc = time_s.size, len(table.ids)
    bids = np.full((n, nc), np.nan)
    if n == 0:
        return bids
    predicted = user_factor[user] * base_ctr[:, None]  # f8[n, n_dsp]
    for c in range(nc):
        # Skip campaigns that cannot bid this tick at all: out of flight or paused.
        if (table.flight_end_s[c] <= t0 or table.flight_start_s[c] >= t1 or pace_share[c] <= 0.0):
            continue
        uniform = u_strategy + table.stream_offset[c]
        uniform -= np.floor(uniform)
        view = BidView(
            pctr=predicted[:, table.dsp[c]] * table.ctr_multiplier[c],
            pcvr=base_cvr * table.cvr_multiplier[c],
            floor_cpm=floor_cpm,
            uniform=uniform,
        )
        bids[:, c] = capped(table.strategies[c].bid(view), table.max_bid_cpm[c])
    mask_untargeted_nb(bids, time_s, slot, user, audience_geo, audience_segments, u_pace,
                       table.slot_ok, table.geo_ok, table.segment_mask, table.flight_start_s,
                       table.flight_end_s, pace_share, table.stream_offset)
    return bids
