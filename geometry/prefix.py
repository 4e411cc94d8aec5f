"""Trajectory-prefix bases and their capture of a displacement (SCIENCE.md measurement 7).

P_m = orth(u_0 … u_{m−1}). The prefix spans are nested, so one orthogonalisation of the first M
vectors gives every P_m (m <= M) as its first m columns:

    cap(P_m, Δ) = Σ_{i<m} (q_iᵀΔ)² / ‖Δ‖²

where q_i is dropped (contributes 0) when u_i lies in the span of the earlier vectors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# Krylov prefixes are badly conditioned: on the quadratic toy the 16th update adds a direction
# of relative size ~1e-15 that still carries 10% of Δ. Only exact (float64) dependence is dropped.
PREFIX_RANK_TOL = 1e-12


def nested_prefix_basis(vectors: torch.Tensor) -> torch.Tensor:
    """Q (D×M) whose first m columns span u_0 … u_{m−1}; dependent directions are zero columns.

    ``vectors`` holds u_0 … u_{M−1} as rows (M×D). Gram–Schmidt with re-orthogonalisation
    (CGS2), not Householder QR: after a dependent u_i, Householder would still pick an
    arbitrary unit q_i and later columns would be orthogonal to it, breaking the nesting.
    """
    rows = vectors.to(torch.float64)
    basis = torch.zeros(rows.shape[1], rows.shape[0], dtype=torch.float64)
    for i, u in enumerate(rows):
        w = u.clone()
        for _ in range(2):
            w -= basis[:, :i] @ (basis[:, :i].T @ w)
        norm = w.norm()
        if norm > PREFIX_RANK_TOL * u.norm().clamp_min(1e-300):
            basis[:, i] = w / norm
    return basis


def prefix_capture_curve(vectors: torch.Tensor, displacement: torch.Tensor, ms: Sequence[int]) -> dict[int, float]:
    """Energy capture cap(P_m, Δ) for each m in ``ms`` (m larger than the rows available is skipped)."""
    basis = nested_prefix_basis(vectors[: max(ms)])
    delta = displacement.reshape(-1).to(torch.float64)
    contributions = (basis.T @ delta).pow(2)
    cumulative = torch.cumsum(contributions, 0) / delta.pow(2).sum()
    return {m: float(cumulative[m - 1]) for m in ms if 1 <= m <= cumulative.numel()}


# Gram arithmetic squares the condition number: a float64 pivot below this fraction of
# ‖u_i‖² is round-off (relative residual ~1e-7), not a new direction.
GRAM_PIVOT_TOL = 1e-14


def prefix_capture_from_gram(gram: torch.Tensor) -> torch.Tensor:
    """cap(P_m, d) for m = 1 … M from inner products only: ``gram`` is the (M+1)×(M+1) Gram
    matrix of u_0 … u_{M−1}, d (d last). Returns the M cumulative captures.

    Cholesky without pivoting is Gram–Schmidt in order: L[M, i] = q_iᵀ d, so
    cap(P_m, d) = Σ_{i<m} L[M, i]² / ‖d‖². A u_i whose pivot (squared residual against the
    earlier vectors) is below GRAM_PIVOT_TOL·‖u_i‖² adds no direction, as in
    :func:`nested_prefix_basis`. Used where the vectors are too large to keep (effective
    LoRA weights) but their inner products are cheap.
    """
    g = gram.to(torch.float64)
    n = g.shape[0]
    lower = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n - 1):
        pivot = g[i, i] - lower[i, :i].pow(2).sum()
        if pivot <= GRAM_PIVOT_TOL * g[i, i] or pivot <= 0:
            continue
        lower[i:, i] = (g[i:, i] - lower[i:, :i] @ lower[i, :i]) / pivot.sqrt()
    return torch.cumsum(lower[n - 1, : n - 1].pow(2), 0) / g[n - 1, n - 1]
