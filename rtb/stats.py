"""How sure a figure is: means over seeds with Student-t confidence intervals.

A seed is one draw of the market (requests, users, outcomes); a figure's spread over
seeds is how much of it is luck. Variants run on the same seeds see the same draws
(common random numbers), so their per-seed differences cancel most of that luck: the
interval of a paired difference is far narrower than the two figures' own.
"""

from __future__ import annotations

import math
import statistics

from scipy import stats

CONFIDENCE = 0.95


def interval(values: list, confidence: float = CONFIDENCE) -> dict:
    """{"mean", "low", "high"} over the values that are defined (None is skipped: a ROMI
    without spend); low and high are the mean's Student-t interval, None with fewer
    than two values; every field None with no value at all."""
    defined = [float(v) for v in values if v is not None]
    if not defined:
        return {"mean": None, "low": None, "high": None}
    mean = statistics.fmean(defined)
    if len(defined) < 2:
        return {"mean": round(mean, 6), "low": None, "high": None}
    spread = statistics.stdev(defined)
    half = 0.0 if spread == 0 else \
        float(stats.t.ppf(0.5 + confidence / 2, len(defined) - 1)) * spread / math.sqrt(len(defined))
    return {"mean": round(mean, 6), "low": round(mean - half, 6), "high": round(mean + half, 6)}


def paired(values: list, baseline: list, confidence: float = CONFIDENCE) -> dict:
    """The interval of the per-seed differences values - baseline, over the seeds where
    both are defined."""
    return interval([v - b for v, b in zip(values, baseline) if v is not None and b is not None],
                    confidence)
