"""Summaries of a drift curve (SCIENCE.md measurement 4)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def half_life(lags: Sequence[float], overlaps: Sequence[float]) -> float:
    """Lag at which the mean overlap first falls to half of its lag-0 value of 1.

    The curve is (0, 1) followed by ``(lags[i], overlaps[i])`` in ascending lag, linearly
    interpolated. Returns ``inf`` when the overlap stays above 0.5 up to the largest lag
    (the half-life is then longer than what was measured) and ``nan`` for an empty curve.
    """
    points = [(0.0, 1.0)] + [(float(lag), float(ov)) for lag, ov in zip(lags, overlaps) if not math.isnan(ov)]
    if len(points) == 1:
        return float("nan")
    for (lag0, ov0), (lag1, ov1) in zip(points, points[1:]):
        if ov1 <= 0.5:
            if ov0 == ov1:
                return lag1
            return lag0 + (ov0 - 0.5) * (lag1 - lag0) / (ov0 - ov1)
    return float("inf")
