"""Spectrum, capture, angles, overlap and half-life against closed forms and scipy."""

import math

import numpy as np
import pytest
import torch
from loclin.geometry.angles import compare_subspaces, grassmann_distance, overlap, principal_angles
from loclin.geometry.capture import capture, capture_norm, capture_rows, random_capture_baseline
from loclin.geometry.drift import half_life
from loclin.geometry.spectrum import effective_rank, participation_ratio, topk_energy
from scipy.linalg import subspace_angles


def random_basis(d: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, k, generator=g, dtype=torch.float64))
    return q


def test_spectrum_hand_computed():
    s = torch.tensor([4.0, 3.0])  # energies 16, 9 -> p = 0.64, 0.36
    assert topk_energy(s, 1) == pytest.approx(0.64)
    assert effective_rank(s) == pytest.approx(math.exp(-(0.64 * math.log(0.64) + 0.36 * math.log(0.36))))
    assert participation_ratio(s) == pytest.approx(1 / (0.64**2 + 0.36**2))


def test_flat_spectrum_has_full_rank_and_proportional_energy():
    s = torch.ones(10)
    assert effective_rank(s) == pytest.approx(10)
    assert participation_ratio(s) == pytest.approx(10)
    assert topk_energy(s, 3) == pytest.approx(0.3)


def test_capture_of_vectors_inside_and_orthogonal():
    basis = torch.eye(6, dtype=torch.float64)[:, :2]
    assert capture(basis, torch.tensor([3.0, -4.0, 0, 0, 0, 0])) == pytest.approx(1.0)
    assert capture(basis, torch.tensor([0, 0, 1.0, 0, 0, 0])) == pytest.approx(0.0)
    v = torch.tensor([1.0, 0, 1.0, 0, 0, 0])
    assert capture(basis, v) == pytest.approx(0.5)
    assert capture_norm(basis, v) == pytest.approx(math.sqrt(0.5))


def test_capture_rows_equals_one_at_a_time():
    basis = random_basis(40, 3, seed=1).float()
    rows = torch.randn(5, 40)
    np.testing.assert_allclose(capture_rows(basis, rows).numpy(), [capture(basis, r) for r in rows], rtol=1e-6)


def test_random_subspace_capture_is_k_over_d_within_sampling_error():
    d, k, n = 400, 10, 400
    v = torch.randn(d, dtype=torch.float64)
    values = np.array([capture(random_basis(d, k, seed), v) for seed in range(n)])
    # cap ~ Beta(k/2, (d-k)/2): variance 2k(d-k) / (d^2 (d+2))
    se = math.sqrt(2 * k * (d - k) / (d**2 * (d + 2)) / n)
    assert abs(values.mean() - random_capture_baseline(k, d)) < 4 * se


def test_principal_angles_match_scipy():
    for seed in range(5):
        a, b = random_basis(60, 4, seed), random_basis(60, 6, 100 + seed)
        ours = principal_angles(a, b).numpy()
        np.testing.assert_allclose(ours, np.sort(subspace_angles(a.numpy(), b.numpy())), atol=1e-10)


def test_identical_orthogonal_and_partly_rotated_subspaces():
    e = torch.eye(5, dtype=torch.float64)
    b1 = e[:, :2]
    assert principal_angles(b1, b1).max() < 1e-7
    assert overlap(b1, b1) == pytest.approx(1.0)
    assert overlap(b1, e[:, 2:4]) == pytest.approx(0.0)
    np.testing.assert_allclose(principal_angles(b1, e[:, 2:4]).numpy(), [math.pi / 2] * 2)
    a = 0.3
    b2 = torch.stack([math.cos(a) * e[:, 0] + math.sin(a) * e[:, 2], e[:, 1]], dim=1)
    np.testing.assert_allclose(principal_angles(b1, b2).numpy(), [0.0, a], atol=1e-12)
    assert overlap(b1, b2) == pytest.approx((1 + math.cos(a) ** 2) / 2)
    assert grassmann_distance(b1, b2) == pytest.approx(a)
    both = compare_subspaces(b1, b2)
    assert both["overlap"] == pytest.approx(overlap(b1, b2))
    assert both["grassmann"] == pytest.approx(a)


def test_tiny_angles_are_resolved():
    e = torch.eye(4, dtype=torch.float64)
    a = 1e-6
    b2 = torch.stack([math.cos(a) * e[:, 0] + math.sin(a) * e[:, 3], e[:, 1]], dim=1)
    assert principal_angles(e[:, :2], b2)[-1].item() == pytest.approx(a, rel=1e-6)


def test_random_overlap_is_k_over_d():
    d, k = 300, 6
    values = [overlap(random_basis(d, k, s), random_basis(d, k, 1000 + s)) for s in range(200)]
    assert np.mean(values) == pytest.approx(k / d, rel=0.15)


def test_half_life_interpolates_between_measured_lags_and_says_when_it_is_a_bound():
    assert half_life([10, 20], [0.8, 0.4]) == (pytest.approx(17.5), "")
    assert half_life([32, 64, 128], [0.9, 0.7, 0.3]) == (pytest.approx(64 + 0.2 / 0.4 * 64), "")
    # already below ½ at the first lag: no line is drawn from (0, 1), the half-life is at most that lag
    assert half_life([10, 20], [0.4, 0.2]) == (10.0, "at_most")
    assert half_life([10], [0.5]) == (10.0, "at_most")
    assert half_life([10, 20], [0.9, 0.7]) == (20.0, "at_least")
    assert half_life([10, 20, 40], [0.9, float("nan"), 0.1]) == (pytest.approx(10 + 0.4 / 0.8 * 30), "")
    value, bound = half_life([], [])
    assert math.isnan(value) and bound == ""
