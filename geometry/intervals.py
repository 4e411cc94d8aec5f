"""Intervals for headline numbers (docs/science.md 10).

Over seeds (runs of one experiment): mean ± t_{0.975, n−1} · s / sqrt(n), s the sample standard
deviation; scipy.stats.t gives the quantile. Over items (steering cosines and slopes): the
percentile bootstrap, resampling items with replacement; written here rather than with
scipy.stats.bootstrap because the statistic is a whole per-layer vector (cosines of two means)
computed on jointly resampled item tensors, which scipy's vectorised API does not express.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from scipy import stats


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the t-interval of the mean; low = high = nan for fewer than 2 values."""
    finite = [float(v) for v in values if not math.isnan(float(v))]
    if not finite:
        return float("nan"), float("nan"), float("nan")
    mean = sum(finite) / len(finite)
    if len(finite) < 2:
        return mean, float("nan"), float("nan")
    sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
    half = float(stats.t.ppf(0.5 + level / 2, len(finite) - 1)) * sd / math.sqrt(len(finite))
    return mean, mean - half, mean + half


def bootstrap_interval(
    statistic: Callable[[torch.Tensor], torch.Tensor], n_items: int, draws: int, seed: int, level: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Percentile bootstrap of ``statistic(index)`` (a tensor of any shape; ``index`` a resample
    of 0 … n_items−1 with replacement): the (low, high) quantiles, elementwise."""
    generator = torch.Generator().manual_seed(seed)
    samples = torch.stack(
        [statistic(torch.randint(n_items, (n_items,), generator=generator)) for _ in range(draws)]
    ).double()
    tail = (1 - level) / 2
    return torch.quantile(samples, tail, dim=0), torch.quantile(samples, 1 - tail, dim=0)
