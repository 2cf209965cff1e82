"""The rest of the market: background demand's best bid for every request."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtb.scenario import HistogramMarketSpec, LognormalMarketSpec, read_histogram
from rtb.spec_base import MAX_CPM


class BackgroundMarket:
    """Draws the highest competing bid of buyers outside the scenario, CPM; NaN = none.

    Built once from the spec (a histogram file is read then); draws read only numbers.
    """

    def __init__(self, spec: LognormalMarketSpec | HistogramMarketSpec | None):
        self.present = spec is not None
        self.participation = spec.participation if spec is not None else 0.0
        self.lognormal = isinstance(spec, LognormalMarketSpec)
        if self.lognormal:
            self.median_cpm, self.sigma = spec.median_cpm, spec.sigma
        elif isinstance(spec, HistogramMarketSpec):
            counts = np.asarray(read_histogram(Path(spec.file), spec.key))
            self.cdf = np.cumsum(counts) / counts.sum()
            self.scale = spec.scale

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if not self.present:
            return np.full(n, np.nan)
        # A fixed number of draws per request, whatever the participation, so the
        # stream's position never depends on a parameter's value.
        present = rng.random(n) < self.participation
        if self.lognormal:
            price = self.median_cpm * np.exp(self.sigma * rng.standard_normal(n))
        else:
            bucket = np.searchsorted(self.cdf, rng.random(n), side="right")
            price = np.minimum(bucket, self.cdf.size - 1) * self.scale
        # Capped like any CPM of a scenario, so the market's money provably fits int64
        # micros (rtb.spec_base: MAX_RUN_REQUESTS impressions at MAX_CPM); a lognormal
        # with a huge median or sigma would otherwise overflow the publishers' revenue.
        return np.where(present, np.minimum(price, MAX_CPM), np.nan)
