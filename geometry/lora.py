"""Effective weight space of a LoRA adapter: W_ℓ(θ) = s_ℓ B_ℓ A_ℓ (s = α/r) per adapted layer.

θ = (A ‖ B) is the raw space; vec(W(θ)) = (vec W_1, …, vec W_L) is the effective space, of
dimension Σ d_out·d_in, often 30× larger. A raw update u_t = θ_{t+1} − θ_t moves the effective
weights by

    e_t = W(θ_{t+1}) − W(θ_t),  per layer  s (dB A + B dA + dB dA)

(exact, not linearised). Effective vectors are never kept whole: an R factor of them is
accumulated layer by layer (TSQR), and prefix capture is read from it
(geometry.prefix.prefix_capture_from_r).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from loclin.geometry.prefix import stacked_r


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


def effective_moves(
    theta_start: torch.Tensor, steps: torch.Tensor, theta_end: torch.Tensor, layers: list[LoraFactors]
) -> Iterator[torch.Tensor]:
    """Per adapted layer, the (M+1)×(d_out·d_in) block of the effective moves e_0 … e_{M−1} of
    the raw steps ``steps`` (M×D, u_t = θ_{t+1} − θ_t from θ_0 = ``theta_start``) and, last, of
    the effective displacement W(θ_end) − W(θ_start) (float64). Peak memory: one layer's block."""
    steps = steps.to(torch.float64)
    points = theta_start.to(torch.float64) + torch.cumsum(steps, 0) - steps  # θ_0 … θ_{M−1}
    m = steps.shape[0]
    for layer in layers:
        a, b = layer.split(points)
        da, db = layer.split(steps)
        a_end, b_end = layer.split(theta_end.to(torch.float64))
        a_start, b_start = layer.split(theta_start.to(torch.float64))
        moves = db @ a  # M × d_out × d_in, built in place: the largest tensor here
        moves.baddbmm_(b, da).baddbmm_(db, da).mul_(layer.scale)
        total = layer.scale * (b_end @ a_end - b_start @ a_start)
        yield torch.cat([moves.reshape(m, -1), total.reshape(1, -1)])


def effective_step_r(
    theta_start: torch.Tensor, steps: torch.Tensor, theta_end: torch.Tensor, layers: list[LoraFactors]
) -> torch.Tensor:
    """R factor (M+1)×(M+1) of [e_0 … e_{M−1}, W(θ_end) − W(θ_start)] as columns, by TSQR over
    the layers (geometry.prefix.stacked_r): the prefix captures of these vectors to QR accuracy,
    where their Gram matrix would square the condition number of a Krylov-like prefix."""
    return stacked_r(block.T for block in effective_moves(theta_start, steps, theta_end, layers))
