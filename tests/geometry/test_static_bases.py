"""Static bases: orthonormality and captures against closed forms (Eckart–Young, k/D)."""

import numpy as np
import pytest
import torch
from loclin.geometry.capture import capture
from loclin.geometry.static_bases import (
    go_back_direction,
    mean_gradient_plane,
    project,
    random_basis,
    task_vector_basis,
)
from scipy.linalg import subspace_angles


def test_task_vector_basis_is_eckart_young_per_layer():
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(6, 5)) @ np.diag([5.0, 3.0, 1.0, 0.5, 0.1])
    bias = np.array([4.0, 0.0, 0.0])
    tau = torch.from_numpy(np.concatenate([weight.reshape(-1), bias]))
    layers = [(0, (6, 5)), (30, (3,))]
    basis = task_vector_basis(tau, layers, k=3)
    np.testing.assert_allclose(basis.T @ basis, np.eye(3), atol=1e-12)
    s = np.linalg.svd(weight, compute_uv=False)
    weights = sorted(list(s) + [4.0], reverse=True)[:3]
    assert capture(basis, tau) == pytest.approx(sum(w**2 for w in weights) / float(tau.pow(2).sum()))
    assert float(basis[30:, :].abs().sum()) > 0  # the bias block (norm 4) is among the top 3


def test_mean_gradient_plane_spans_the_gradients():
    grads = [torch.randn(50, dtype=torch.float64) for _ in range(3)]
    plane = mean_gradient_plane(grads)
    assert plane.shape == (50, 3)
    assert subspace_angles(plane.numpy(), torch.stack(grads, 1).numpy()).max() < 1e-10
    assert capture(plane, grads[1]) == pytest.approx(1.0)


def test_go_back_and_projection():
    star, degraded = torch.randn(20, dtype=torch.float64), torch.randn(20, dtype=torch.float64)
    direction = go_back_direction(star, degraded)
    assert capture(direction, star - degraded) == pytest.approx(1.0)
    torch.testing.assert_close(project(direction, star - degraded), star - degraded)


def test_random_basis_is_orthonormal_and_seeded():
    a, b = random_basis(300, 5, seed=1), random_basis(300, 5, seed=1)
    torch.testing.assert_close(a, b)
    np.testing.assert_allclose(a.T @ a, np.eye(5), atol=1e-6)
