"""The rest of the market: background demand's best bid for every request."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtb.scenario import HistogramMarketSpec, LognormalMarketSpec, read_histogram


class BackgroundMarket:
    """Draws the highest competing bid of buyers outside the scenario, CPM; NaN = none."""

    def __init__(self, spec: LognormalMarketSpec | HistogramMarketSpec | None):
        self.spec = spec
        if isinstance(spec, HistogramMarketSpec):
            counts = np.asarray(read_histogram(Path(spec.file), spec.key))
            self._cdf = np.cumsum(counts) / counts.sum()

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        spec = self.spec
        if spec is None:
            return np.full(n, np.nan)
        # A fixed number of draws per request, whatever the participation, so the
        # stream's position never depends on a parameter's value.
        present = rng.random(n) < spec.participation
        if isinstance(spec, LognormalMarketSpec):
            price = spec.median_cpm * np.exp(spec.sigma * rng.standard_normal(n))
        else:
            bucket = np.searchsorted(self._cdf, rng.random(n), side="right")
            price = np.minimum(bucket, self._cdf.size - 1) * spec.scale
        return np.where(present, price, np.nan)
