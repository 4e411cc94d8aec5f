"""Effective weight space of a LoRA adapter: W_ℓ(θ) = s_ℓ B_ℓ A_ℓ (s = α/r) per adapted layer.

θ = (A ‖ B) is the raw space; vec(W(θ)) = (vec W_1, …, vec W_L) is the effective space, of
dimension Σ d_out·d_in, often 30× larger. A raw update u_t = θ_{t+1} − θ_t moves the effective
weights by

    e_t = W(θ_{t+1}) − W(θ_t),  per layer  s (dB A + B dA + dB dA)

(exact, not linearised). Effective vectors are never kept: their Gram matrix is accumulated
layer by layer, and prefix capture is read from it (geometry.prefix.prefix_capture_from_gram).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LoraFactors:
    """Where one layer's A (r×d_in) and B (d_out×r) sit in the flat raw vector, and s = α/r."""

    a_offset: int
    a_shape: tuple[int, int]
    b_offset: int
    b_shape: tuple[int, int]
    scale: float

    def split(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = theta[..., self.a_offset : self.a_offset + self.a_shape[0] * self.a_shape[1]]
        b = theta[..., self.b_offset : self.b_offset + self.b_shape[0] * self.b_shape[1]]
        return a.reshape(*theta.shape[:-1], *self.a_shape), b.reshape(*theta.shape[:-1], *self.b_shape)


def effective_weights(theta: torch.Tensor, layers: list[LoraFactors]) -> torch.Tensor:
    """vec(W(θ)) = concat_ℓ vec(s_ℓ B_ℓ A_ℓ) (float64)."""
    parts = []
    for layer in layers:
        a, b = layer.split(theta.to(torch.float64))
        parts.append((layer.scale * b @ a).reshape(-1))
    return torch.cat(parts)


def effective_step_gram(theta_start: torch.Tensor, steps: torch.Tensor, theta_end: torch.Tensor, layers: list[LoraFactors]) -> torch.Tensor:
    """Gram matrix (M+1)×(M+1) of the effective moves e_0 … e_{M−1} of the raw steps
    ``steps`` (M×D, u_t = θ_{t+1} − θ_t from θ_0 = ``theta_start``) and of the effective
    displacement W(θ_end) − W(θ_start), last. Peak memory: (M+1)·d_out·d_in floats of one layer."""
    steps = steps.to(torch.float64)
    points = theta_start.to(torch.float64) + torch.cumsum(steps, 0) - steps  # θ_0 … θ_{M−1}
    m = steps.shape[0]
    gram = torch.zeros(m + 1, m + 1, dtype=torch.float64)
    for layer in layers:
        a, b = layer.split(points)
        da, db = layer.split(steps)
        a_end, b_end = layer.split(theta_end.to(torch.float64))
        a_start, b_start = layer.split(theta_start.to(torch.float64))
        moves = db @ a  # M × d_out × d_in, built in place: the largest tensor here
        moves.baddbmm_(b, da).baddbmm_(db, da).mul_(layer.scale)
        total = layer.scale * (b_end @ a_end - b_start @ a_start)
        vectors = torch.cat([moves.reshape(m, -1), total.reshape(1, -1)])
        gram += vectors @ vectors.T
    return gram
