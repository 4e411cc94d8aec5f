"""Effective LoRA weight space: block-wise prefix capture against explicit vectors and numpy QR."""

import numpy as np
import pytest
import torch
from loclin.geometry.lora import LoraFactors, effective_moves, effective_step_r, effective_weights
from loclin.geometry.prefix import prefix_capture_from_r


def layers_and_dim():
    # two layers with different shapes, A then B for each, packed back to back
    shapes = [((3, 5), (4, 3), 2.0), ((2, 6), (7, 2), 0.5)]
    layers, offset = [], 0
    for a_shape, b_shape, scale in shapes:
        a_offset, b_offset = offset, offset + a_shape[0] * a_shape[1]
        offset = b_offset + b_shape[0] * b_shape[1]
        layers.append(LoraFactors(a_offset, a_shape, b_offset, b_shape, scale))
    return layers, offset


def materialised(theta0, steps, theta_end, layers):
    points = [theta0.double()]
    for u in steps.double():
        points.append(points[-1] + u)
    moves = [effective_weights(points[t + 1], layers) - effective_weights(points[t], layers) for t in range(len(steps))]
    total = effective_weights(theta_end, layers) - effective_weights(theta0, layers)
    return torch.stack([*moves, total])


@pytest.fixture
def trajectory():
    layers, dim = layers_and_dim()
    g = torch.Generator().manual_seed(1)
    theta0 = torch.randn(dim, generator=g)
    steps = 0.1 * torch.randn(5, dim, generator=g)
    theta_end = theta0 + steps.sum(0) + 0.05 * torch.randn(dim, generator=g)
    return theta0, steps, theta_end, layers


def test_effective_moves_are_the_materialised_effective_vectors_layer_by_layer(trajectory):
    vectors = materialised(*trajectory)
    torch.testing.assert_close(torch.cat(list(effective_moves(*trajectory)), 1), vectors, rtol=1e-10, atol=1e-12)


def test_effective_prefix_capture_from_the_stacked_r_equals_numpy_qr_of_the_explicit_vectors(trajectory):
    vectors = materialised(*trajectory).numpy()
    q, _ = np.linalg.qr(vectors[:-1].T)
    d = vectors[-1]
    reference = np.cumsum((q.T @ d) ** 2) / (d @ d)
    captures, pivots = prefix_capture_from_r(effective_step_r(*trajectory))
    np.testing.assert_allclose(captures.numpy(), reference, rtol=0, atol=1e-12)
    reference_pivots = np.minimum.accumulate(
        np.abs(np.linalg.qr(vectors[:-1].T)[1].diagonal()) / np.linalg.norm(vectors[:-1], axis=1)
    )
    np.testing.assert_allclose(pivots.numpy(), reference_pivots, rtol=1e-8)


def test_effective_weight_of_a_layer_is_scaled_b_times_a():
    layers, dim = layers_and_dim()
    theta = torch.randn(dim, dtype=torch.float64)
    first = layers[0]
    a = theta[first.a_offset : first.a_offset + 15].reshape(3, 5)
    b = theta[first.b_offset : first.b_offset + 12].reshape(4, 3)
    torch.testing.assert_close(effective_weights(theta, layers)[:20], (2.0 * b @ a).reshape(-1))
    assert effective_weights(theta, layers).numel() == 4 * 5 + 7 * 6
