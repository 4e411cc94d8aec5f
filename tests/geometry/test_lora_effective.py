"""Effective LoRA weight space: Gram-only prefix capture against explicit vectors."""

import torch

from geometry.lora import LoraFactors, effective_step_gram, effective_weights
from geometry.prefix import prefix_capture_curve, prefix_capture_from_gram


def layers_and_dim():
    # two layers with different shapes, A then B for each, packed back to back
    shapes = [((3, 5), (4, 3), 2.0), ((2, 6), (7, 2), 0.5)]
    layers, offset = [], 0
    for a_shape, b_shape, scale in shapes:
        a_offset, b_offset = offset, offset + a_shape[0] * a_shape[1]
        offset = b_offset + b_shape[0] * b_shape[1]
        layers.append(LoraFactors(a_offset, a_shape, b_offset, b_shape, scale))
    return layers, offset


def test_gram_prefix_capture_matches_explicit_gram_schmidt_including_a_dependent_vector():
    g = torch.Generator().manual_seed(0)
    rows = torch.randn(6, 40, generator=g, dtype=torch.float64)
    rows[3] = 2 * rows[0] - rows[1]  # adds no direction
    d = torch.randn(40, generator=g, dtype=torch.float64)
    stacked = torch.cat([rows, d[None]])
    from_gram = prefix_capture_from_gram(stacked @ stacked.T)
    explicit = prefix_capture_curve(rows, d, range(1, 7))
    torch.testing.assert_close(from_gram, torch.tensor([explicit[m] for m in range(1, 7)], dtype=torch.float64), rtol=1e-10, atol=1e-12)
    assert from_gram[3] == from_gram[2]  # the dependent step changes nothing


def test_effective_step_gram_equals_gram_of_materialised_effective_moves():
    layers, dim = layers_and_dim()
    g = torch.Generator().manual_seed(1)
    theta0 = torch.randn(dim, generator=g)
    steps = 0.1 * torch.randn(5, dim, generator=g)
    theta_end = theta0 + steps.sum(0) + 0.05 * torch.randn(dim, generator=g)
    points = [theta0.double()]
    for u in steps.double():
        points.append(points[-1] + u)
    moves = [effective_weights(points[t + 1], layers) - effective_weights(points[t], layers) for t in range(5)]
    total = effective_weights(theta_end, layers) - effective_weights(theta0, layers)
    vectors = torch.stack([*moves, total])
    torch.testing.assert_close(effective_step_gram(theta0, steps, theta_end, layers), vectors @ vectors.T, rtol=1e-10, atol=1e-12)


def test_effective_weight_of_a_layer_is_scaled_b_times_a():
    layers, dim = layers_and_dim()
    theta = torch.randn(dim, dtype=torch.float64)
    first = layers[0]
    a = theta[first.a_offset : first.a_offset + 15].reshape(3, 5)
    b = theta[first.b_offset : first.b_offset + 12].reshape(4, 3)
    torch.testing.assert_close(effective_weights(theta, layers)[:20], (2.0 * b @ a).reshape(-1))
    assert effective_weights(theta, layers).numel() == 4 * 5 + 7 * 6
