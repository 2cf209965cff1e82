"""The DSPs' side of a tick: predicted CTR/CVR and each campaign's strategy's bids.

Targeting and pacing are applied by the exchange's kernel, request by request.
Built-in strategies are evaluated together in one numba pass (their `formula()`);
any other Strategy gets the numpy view below and its own `bid()`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from dsp import strategies as S
from dsp.campaigns import CampaignTable

CUSTOM = -1  # formula code of a strategy without formula(): its bid() is called


class CampaignView:
    """A strategy's view of the tick for one campaign (the fields of dsp.strategies.BidView).

    Computed on first use: most strategies read only pCTR, and each field costs a pass
    over every request of the tick.
    """

    def __init__(self, predicted_ctr, ctr_multiplier, base_cvr, cvr_multiplier, floor_cpm,
                 rng: np.random.Generator):
        self._predicted_ctr = predicted_ctr
        self._ctr_multiplier = ctr_multiplier
        self._base_cvr = base_cvr
        self._cvr_multiplier = cvr_multiplier
        self.floor_cpm = floor_cpm
        self._rng = rng
        self._uniform = None

    @property
    def pctr(self) -> np.ndarray:
        return self._predicted_ctr * self._ctr_multiplier

    @property
    def pcvr(self) -> np.ndarray:
        return self._base_cvr * self._cvr_multiplier

    @property
    def uniform(self) -> np.ndarray:
        # Drawn from the campaign's own stream, once per tick that asks: independent of
        # every other campaign's, and no other campaign's draws move.
        if self._uniform is None:
            self._uniform = self._rng.random(self._base_cvr.size)
        return self._uniform


class BidFormulas(NamedTuple):
    """Each campaign's strategy as a formula code and parameters (dsp.strategies)."""

    code: np.ndarray  # i8[nc]: FORMULA_* or CUSTOM
    params: np.ndarray  # f8[nc, 3]
    max_bid_cpm: np.ndarray  # f8[nc]: inf when none
    uniform_row: np.ndarray  # i8[nc]: FORMULA_UNIFORM campaigns' row of the tick's uniforms; -1 else


def bid_formulas(table: CampaignTable) -> BidFormulas:
    nc = len(table.ids)
    code = np.full(nc, CUSTOM, dtype=np.int64)
    params = np.zeros((nc, 3))
    for c, strategy in enumerate(table.strategies):
        formula = getattr(strategy, "formula", None)
        if formula is not None:
            code[c], *params[c] = formula()
    max_bid = np.array([np.inf if m is None else m for m in table.max_bid_cpm], dtype=np.float64)
    uniform = code == S.FORMULA_UNIFORM
    uniform_row = np.where(uniform, np.cumsum(uniform) - 1, -1).astype(np.int64)
    return BidFormulas(code, params, max_bid, uniform_row)


BLOCK = 64  # requests per block: a block's bids (64 x nc) stay in L1/L2 while written


@njit(cache=True, nogil=True)
def _formula_bids_nb(code, params, max_bid_cpm, uniform_row, active, dsp, ctr_multiplier,
                     cvr_multiplier, user_factor, user, base_ctr, base_cvr, uniforms,
                     predicted, out):
    """out[i, c] = campaign c's built-in formula on request i (NaN when inactive).

    The same operations, in the same order, as the strategies' numpy bid() on a
    CampaignView, so either path gives the same bits. Custom campaigns' columns are
    left alone. Also fills predicted f8[n_dsp, n], each DSP's predicted CTR per request
    (user_factor[user, d] * base_ctr), for the custom ones. Requests go in blocks so
    that each campaign's inner loop over requests has one formula (SIMD), while the
    block's rows of `out` stay in cache.
    """
    n, nc = out.shape
    n_dsp = user_factor.shape[1]
    for i in range(n):
        u = user[i]
        for d in range(n_dsp):
            predicted[d, i] = np.float64(user_factor[u, d]) * base_ctr[i]
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        for c in range(nc):
            k = code[c]
            if k == CUSTOM:
                continue
            m = max_bid_cpm[c]
            p0, p1, p2 = params[c, 0], params[c, 1], params[c, 2]
            ctr_mult, cvr_mult, d = ctr_multiplier[c], cvr_multiplier[c], dsp[c]
            if not active[c]:
                for i in range(start, stop):
                    out[i, c] = np.nan
            elif k == S.FORMULA_CONSTANT:
                for i in range(start, stop):
                    out[i, c] = m if p0 > m else p0
            elif k == S.FORMULA_UNIFORM:
                row = uniform_row[c]
                for i in range(start, stop):
                    b = uniforms[row, i] * p0
                    out[i, c] = m if b > m else b  # np.minimum's rule: NaN stays NaN
            elif k == S.FORMULA_PCTR:
                for i in range(start, stop):
                    b = predicted[d, i] * ctr_mult * p0
                    out[i, c] = m if b > m else b
            elif k == S.FORMULA_SQRT_PCTR:
                for i in range(start, stop):
                    b = np.sqrt(p0 * (predicted[d, i] * ctr_mult) + p1) - p2
                    out[i, c] = m if b > m else b
            else:  # FORMULA_VALUE
                for i in range(start, stop):
                    b = predicted[d, i] * ctr_mult * (base_cvr[i] * cvr_mult) * p0
                    out[i, c] = m if b > m else b


def formula_bids(table: CampaignTable, formulas: BidFormulas, user_factor: np.ndarray,
                 base_ctr: np.ndarray, base_cvr: np.ndarray, user: np.ndarray,
                 uniforms: np.ndarray, active: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(bids f8[n, nc], predicted f8[n_dsp, n]): the built-in strategies' bids.

    Reads no running state (all campaigns count as active unless `active` says
    otherwise), so the exchange can compute it ahead, for the next tick. Custom
    strategies' columns are left unset: finish_bids fills them.
    user_factor f4[n_users, n_dsp]: each DSP's estimate of a user's click propensity
    (truth times the model's error). base_ctr/base_cvr: per request, by format.
    uniforms f8[k, n]: row formulas.uniform_row[c] for each FORMULA_UNIFORM campaign c,
    drawn from that campaign's own stream.
    """
    nc = len(table.ids)
    bids = np.empty((user.size, nc))
    predicted = np.empty((user_factor.shape[1], user.size))  # one row per DSP
    if active is None:
        active = np.ones(nc, dtype=np.bool_)
    _formula_bids_nb(formulas.code, formulas.params, formulas.max_bid_cpm, formulas.uniform_row,
                     active, table.dsp, table.ctr_multiplier, table.cvr_multiplier, user_factor,
                     user, base_ctr, base_cvr, uniforms, predicted, bids)
    return bids, predicted


def finish_bids(table: CampaignTable, formulas: BidFormulas, active: np.ndarray,
                bids: np.ndarray, predicted: np.ndarray, base_cvr: np.ndarray,
                floor_cpm: np.ndarray, rngs: tuple[np.random.Generator, ...]) -> np.ndarray:
    """NaN for inactive campaigns, and the custom strategies' bids (their own bid()).

    rngs: each campaign's own stream, for a custom strategy's view.uniform."""
    for c in np.flatnonzero(~active):
        bids[:, c] = np.nan
    for c in np.flatnonzero(active & (formulas.code == CUSTOM)):
        view = CampaignView(predicted[table.dsp[c]], table.ctr_multiplier[c], base_cvr,
                            table.cvr_multiplier[c], floor_cpm, rngs[c])
        column = table.strategies[c].bid(view)
        if table.max_bid_cpm[c] is not None:
            column = np.minimum(column, table.max_bid_cpm[c])
        bids[:, c] = column
    return bids
