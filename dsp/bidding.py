"""The DSPs' side of a tick: predicted CTR/CVR and each campaign's strategy's bids.

Targeting and pacing are applied by the exchange's kernel, request by request.
"""

from __future__ import annotations

import numpy as np

from dsp.campaigns import CampaignTable


class CampaignView:
    """A strategy's view of the tick for one campaign (the fields of dsp.strategies.BidView).

    Computed on first use: most strategies read only pCTR, and each field costs a pass
    over every request of the tick.
    """

    def __init__(self, predicted_ctr, ctr_multiplier, base_cvr, cvr_multiplier, floor_cpm,
                 u_strategy, stream_offset):
        self._predicted_ctr = predicted_ctr
        self._ctr_multiplier = ctr_multiplier
        self._base_cvr = base_cvr
        self._cvr_multiplier = cvr_multiplier
        self.floor_cpm = floor_cpm
        self._u = u_strategy
        self._offset = stream_offset

    @property
    def pctr(self) -> np.ndarray:
        return self._predicted_ctr * self._ctr_multiplier

    @property
    def pcvr(self) -> np.ndarray:
        return self._base_cvr * self._cvr_multiplier

    @property
    def uniform(self) -> np.ndarray:
        # The tick's shared uniforms rotated by a fixed per-campaign offset: uniform
        # for every campaign, and adding a campaign moves no one else's.
        u = self._u + self._offset
        return np.subtract(u, 1.0, out=u, where=u >= 1.0)


def bid_matrix(table: CampaignTable, active: np.ndarray, user_factor: np.ndarray,
               base_ctr: np.ndarray, base_cvr: np.ndarray, user: np.ndarray,
               floor_cpm: np.ndarray, u_strategy: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Fill `out` f8[n, nc] with every active campaign's bid per request (NaN = none).

    One row per request, as the exchange's kernel reads them; each strategy's bids
    fill a column.

    user_factor f4[n_users, n_dsp]: each DSP's estimate of a user's click propensity
    (truth times the model's error). base_ctr/base_cvr: per request, by format.
    """
    bids = out
    bids[:, ~active] = np.nan
    if user.size == 0:
        return bids
    # One contiguous row of predicted CTRs per DSP.
    predicted = np.ascontiguousarray((user_factor[user] * base_ctr[:, None]).T)
    for c in np.flatnonzero(active):
        view = CampaignView(predicted[table.dsp[c]], table.ctr_multiplier[c], base_cvr,
                            table.cvr_multiplier[c], floor_cpm, u_strategy, table.stream_offset[c])
        column = table.strategies[c].bid(view)
        if table.max_bid_cpm[c] is not None:
            column = np.minimum(column, table.max_bid_cpm[c])
        bids[:, c] = column
    return bids
