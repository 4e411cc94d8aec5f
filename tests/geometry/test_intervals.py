"""Intervals and the shuffled-label null against hand computations and closed forms."""

import math

import pytest
import torch
from loclin.geometry.intervals import bootstrap_interval, t_interval
from loclin.geometry.steering import shuffled_label_cosines


def test_t_interval_matches_a_hand_computation():
    mean, low, high = t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t_{0.975, 2} from a table, s = 1
    assert (mean, low, high) == (pytest.approx(2.0), pytest.approx(2.0 - half), pytest.approx(2.0 + half))
    single = t_interval([0.7])
    assert single[0] == 0.7 and math.isnan(single[1]) and math.isnan(single[2])


def test_bootstrap_interval_of_a_mean_has_the_normal_width():
    sample = torch.randn(400, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    low, high = bootstrap_interval(lambda index: sample[index].mean(), 400, 2000, seed=1)
    assert float(low) < float(sample.mean()) < float(high)
    assert float(high - low) == pytest.approx(2 * 1.959964 * float(sample.std()) / 20, rel=0.1)


def test_shuffled_null_on_identical_contrasts_is_the_sign_of_the_flipped_sum():
    contrast = torch.randn(2, 1, 8, dtype=torch.float64).expand(2, 7, 8)  # 7 items, the same contrast
    cosines = shuffled_label_cosines(contrast, contrast[:, 0], draws=50, seed=0)
    assert cosines.shape == (50, 2)
    assert torch.allclose(cosines.abs(), torch.ones_like(cosines))  # an odd item count: Σ π_i ≠ 0
    assert (cosines[:, 0].sign() == cosines[:, 1].sign()).all() and (cosines < 0).any() and (cosines > 0).any()
