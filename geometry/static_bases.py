"""Static bases for the fixed-task-plane test (docs/science.md measurement 6), as pure functions.

Each returns an orthonormal D×k basis (columns) of the flat parameter space:
    S2  mean_gradient_plane     span{ḡ_1 … ḡ_K}, the per-task mean gradients at θ*
    S3  task_vector_basis       top-k rank-one directions of the task vector τ, per layer
    S6  go_back_direction       (θ* − θ_0)/‖θ* − θ_0‖ (a reference, not a basis learned before)
    S7  random_basis            a Haar-random k-subspace (capture k/D in expectation)
S1 and S4 are bases already computed by the per-task and rolling-basis callbacks; S5 comes from
:func:`geometry.hessian.lanczos_top_eigenpairs`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from loclin.geometry.subspace import orthonormalize


def mean_gradient_plane(mean_gradients: Sequence[torch.Tensor]) -> torch.Tensor:
    """S2: orthonormal basis of the span of the per-task mean gradients."""
    return orthonormalize(torch.stack([g.reshape(-1) for g in mean_gradients], dim=1))


def task_vector_basis(task_vector: torch.Tensor, layers: Sequence[tuple[int, tuple[int, ...]]], k: int) -> torch.Tensor:
    """S3: the k largest rank-one pieces of τ over all layers, as flat orthonormal directions.

    ``layers`` lists (offset, shape) of each parameter inside the flat vector. A matrix block
    τ_ℓ = Σ s_i u_i v_iᵀ contributes directions vec(u_i v_iᵀ) (orthonormal in the Frobenius
    inner product) with weight s_i; a vector block (bias, norm) contributes τ_ℓ/‖τ_ℓ‖ with
    weight ‖τ_ℓ‖. Blocks occupy disjoint coordinates, so the chosen directions stay orthonormal
    and cap(S3, τ) = Σ chosen s_i² / ‖τ‖² (Eckart–Young within each block).
    """
    flat = task_vector.reshape(-1)
    candidates: list[tuple[float, int, torch.Tensor]] = []  # (weight, offset, block direction)
    for offset, shape in layers:
        size = int(torch.tensor(shape).prod()) if shape else 1
        block = flat[offset : offset + size]
        if len(shape) == 2:
            u, s, vh = torch.linalg.svd(block.view(shape).double(), full_matrices=False)
            for i in range(min(k, s.numel())):
                candidates.append((float(s[i]), offset, torch.outer(u[:, i], vh[i]).reshape(-1)))
        else:
            norm = float(block.double().norm())
            if norm > 0:
                candidates.append((norm, offset, block.double() / norm))
    candidates.sort(key=lambda c: c[0], reverse=True)
    chosen = [c for c in candidates[:k] if c[0] > 0]
    basis = torch.zeros(flat.numel(), len(chosen), dtype=torch.float64)
    for column, (_, offset, direction) in enumerate(chosen):
        basis[offset : offset + direction.numel(), column] = direction
    return basis.to(flat.dtype)


def go_back_direction(theta_star: torch.Tensor, theta_degraded: torch.Tensor) -> torch.Tensor:
    """S6: the unit vector from θ_0 back to θ* (D×1)."""
    direction = (theta_star - theta_degraded).reshape(-1, 1)
    return direction / direction.norm()


def random_basis(dim: int, k: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """S7: orthonormal basis of a Haar-random k-subspace of R^D (QR of a Gaussian D×k)."""
    gaussian = torch.randn(dim, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    q, _ = torch.linalg.qr(gaussian, mode="reduced")
    return q.to(dtype)


def project(basis: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """P_B v = B Bᵀ v, for the function-space check θ_0 + P_B Δ."""
    v = vector.reshape(-1).to(basis.dtype)
    return basis @ (basis.T @ v)
