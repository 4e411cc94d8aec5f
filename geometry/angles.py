"""Comparing two subspaces (docs/science.md measurement 4).

For orthonormal bases B1 (D×k1), B2 (D×k2) and σ_i the singular values of B1ᵀB2:
    principal angles    θ_i = arccos σ_i            (ascending)
    overlap             ov = ‖B1ᵀB2‖_F² / k = (1/k) Σ cos² θ_i,  k = max(k1, k2)
    Grassmann distance  d_G = sqrt(Σ θ_i²)
A random k-subspace has expected overlap k/D with any fixed one.
"""

from __future__ import annotations

import torch
from loclin.geometry.sharded import Reduce, no_reduce
from loclin.geometry.subspace import GRAM_BLOCK_ROWS, blocked_products


def angles_from_cross(cross: torch.Tensor) -> torch.Tensor:
    """θ_i = arccos σ_i(B1ᵀB2) from the k1×k2 cross matrix (ascending): the cosine formula,
    shared by local bases and by sharded ones whose cross matrix is an all-reduced sum."""
    return torch.arccos(torch.linalg.svdvals(cross.double()).clamp(-1.0, 1.0))


def principal_angles(
    basis_a: torch.Tensor, basis_b: torch.Tensor, refine_small: bool = True, reduce: Reduce = no_reduce
) -> torch.Tensor:
    """Principal angles (radians, ascending) between the column spans of two orthonormal bases.

    Uses the cosine formula, accurate to about sqrt(machine epsilon) near 0. With
    ``refine_small`` angles whose cosine is above cos(0.1) are recomputed from the residual
    B2 − B1 B1ᵀ B2 by the sine formula (Björck & Golub, as scipy.linalg.subspace_angles does);
    that costs an SVD of a D×k matrix, so the per-step drift measurement skips it. Sharded
    (``reduce`` sums over the ranks holding the bases' coordinate slices) the cross matrix and
    the residual's k×k Gram are all-reduced; its singular values are the square roots of the
    Gram's eigenvalues.
    """
    a, b = basis_a, basis_b.to(basis_a.dtype)
    if a.shape[1] < b.shape[1]:
        a, b = b, a
    # k1×k2 in float32 blocks summed in float64 (geometry.subspace.blocked_products): no D-sized
    # copies, and over the bases' contiguous rows (a rolling basis is the transpose of a k×D array)
    cross = reduce(blocked_products(a.T, b.T, GRAM_BLOCK_ROWS))
    angles = angles_from_cross(cross)
    small = angles < 0.1
    if refine_small and small.any():
        residual = (b - a @ cross.to(a.dtype)).double()
        if reduce is no_reduce:
            sines = torch.linalg.svdvals(residual).flip(0)
        else:
            sines = torch.linalg.eigvalsh(reduce(residual.T @ residual)).clamp_min(0.0).sqrt()
        angles = torch.where(small, torch.arcsin(sines.clamp(0.0, 1.0)), angles)
    return angles


def overlap(basis_a: torch.Tensor, basis_b: torch.Tensor) -> float:
    """‖B1ᵀB2‖_F² / max(k1, k2): 1 for equal subspaces, 0 for orthogonal ones."""
    k = max(basis_a.shape[1], basis_b.shape[1])
    if k == 0:
        return float("nan")
    cross = basis_a.T @ basis_b.to(basis_a.dtype)
    return float(cross.double().pow(2).sum()) / k


def grassmann_distance(basis_a: torch.Tensor, basis_b: torch.Tensor) -> float:
    """Geodesic distance sqrt(Σ θ_i²) on the Grassmannian."""
    return float(principal_angles(basis_a, basis_b).pow(2).sum().sqrt())


def compare_subspaces(basis_a: torch.Tensor, basis_b: torch.Tensor, reduce: Reduce = no_reduce) -> dict[str, float]:
    """Overlap, Grassmann distance and mean principal angle from one SVD of B1ᵀB2.

    For equal dimensions ‖B1ᵀB2‖_F² = Σ cos² θ_i, so the overlap follows from the angles.
    Angles come from the cosine formula only (error ~1e-4 rad in float32 near 0).
    """
    angles = principal_angles(basis_a, basis_b, refine_small=False, reduce=reduce)
    k = max(basis_a.shape[1], basis_b.shape[1])
    return {
        "overlap": float(angles.cos().pow(2).sum()) / k,
        "grassmann": float(angles.pow(2).sum().sqrt()),
        "mean_angle": float(angles.mean()),
    }
