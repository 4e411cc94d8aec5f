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


def detectable_effect(values: Sequence[float], power: float = 0.8, level: float = 0.95) -> float:
    """The smallest true mean a two-sided test at ``level`` detects with probability ``power`` from
    these values: (z_{(1+level)/2} + z_power) · s / sqrt(n), s the sample standard deviation (the
    normal approximation of the mean; 2.80 · s / sqrt(n) at the defaults). nan for fewer than 2."""
    finite = [float(v) for v in values if not math.isnan(float(v))]
    if len(finite) < 2:
        return float("nan")
    mean = sum(finite) / len(finite)
    sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
    return (float(stats.norm.ppf(0.5 + level / 2)) + float(stats.norm.ppf(power))) * sd / math.sqrt(len(finite))


def items_to_detect(values: Sequence[float], power: float = 0.8, level: float = 0.95) -> int | None:
    """The n at which the observed mean would be :func:`detectable_effect`, at the observed
    spread: ceil(((z_{(1+level)/2} + z_power) · s / |mean|)²). None for a zero mean or < 2 values."""
    finite = [float(v) for v in values if not math.isnan(float(v))]
    if len(finite) < 2:
        return None
    mean = sum(finite) / len(finite)
    if mean == 0:
        return None
    effect = detectable_effect(finite, power, level) * math.sqrt(len(finite))  # at n = 1
    return max(2, math.ceil((effect / abs(mean)) ** 2))
