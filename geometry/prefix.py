"""Trajectory-prefix bases and their capture of a displacement (docs/science.md measurement 7).

P_m = orth(u_0 … u_{m−1}). The prefix spans are nested, so one orthogonalisation of the first M
vectors gives every P_m (m <= M) as its first m columns:

    cap(P_m, Δ) = Σ_{i<m} (q_iᵀΔ)² / ‖Δ‖²

where q_i is dropped (contributes 0) when u_i lies in the span of the earlier vectors.

Numerical determination. The relative pivot of u_i is r_i = ‖u_i − P_{i} u_i‖ / ‖u_i‖ (the
relative QR diagonal). A relative perturbation ε of the vectors turns the new direction q_i by
about ε / r_i, so cap(P_m, Δ) is determined by the vectors only while min_{i<m} r_i is well
above the float64 round-off (~1e-16). Krylov prefixes (gradient descent on a quadratic) lose
that after about 12 vectors; the summaries report min_{i<m} r_i beside every P_m.

Three routes to the same numbers, one definition (:func:`prefix_capture_curve`):
- the vectors themselves (CGS2 in float64);
- an R factor of [u_0 … u_{M−1}, Δ] (:func:`prefix_capture_from_r`): the columns of R have the
  inner products of the vectors, so CGS2 on them gives the same captures and pivots. R is built
  by :func:`stacked_r` from row blocks of the vectors (TSQR) when they are too large to hold at
  once (effective LoRA weights, one layer at a time);
- the Gram matrix alone (:func:`prefix_capture_from_gram`), which squares the condition number
  and therefore resolves only well-conditioned prefixes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

# Krylov prefixes are badly conditioned: on the quadratic toy the 16th update adds a direction
# of relative size ~1e-14 that still carries 1% of Δ. Only exact (float64) dependence is dropped.
PREFIX_RANK_TOL = 1e-12

# A prefix whose smallest relative pivot is at least this is "numerically determined": a
# round-off perturbation of the vectors (~1e-16 relative) moves its capture by <~1e-7
# (measured: two QR routes differ by 8e-6 at a pivot of 1.5e-10, by 2e-7 at 3.4e-9).
PREFIX_DETERMINED_PIVOT = 1e-8


def nested_prefix(vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q, r): Q (D×M) whose first m columns span u_0 … u_{m−1}, and the relative pivots r (M,).

    ``vectors`` holds u_0 … u_{M−1} as rows (M×D). Gram–Schmidt with re-orthogonalisation
    (CGS2), not Householder QR: after a dependent u_i, Householder would still pick an
    arbitrary unit q_i and later columns would be orthogonal to it, breaking the nesting.
    A direction whose pivot is below PREFIX_RANK_TOL is a zero column of Q.
    """
    rows = vectors.to(torch.float64)
    basis = torch.zeros(rows.shape[1], rows.shape[0], dtype=torch.float64)
    pivots = torch.zeros(rows.shape[0], dtype=torch.float64)
    for i, u in enumerate(rows):
        w = u.clone()
        for _ in range(2):
            w -= basis[:, :i] @ (basis[:, :i].T @ w)
        norm, scale = w.norm(), u.norm()
        pivots[i] = norm / scale if scale > 0 else 0.0
        if norm > PREFIX_RANK_TOL * scale.clamp_min(1e-300):
            basis[:, i] = w / norm
    return basis, pivots


def nested_prefix_basis(vectors: torch.Tensor) -> torch.Tensor:
    """Q of :func:`nested_prefix` (the nested prefix bases as leading columns)."""
    return nested_prefix(vectors)[0]


def prefix_capture_curve(vectors: torch.Tensor, displacement: torch.Tensor, ms: Sequence[int]) -> dict[int, float]:
    """Energy capture cap(P_m, Δ) for each m in ``ms`` (m larger than the rows available is skipped)."""
    return prefix_capture_and_pivots(vectors, displacement, ms)[0]


def prefix_capture_and_pivots(
    vectors: torch.Tensor, displacement: torch.Tensor, ms: Sequence[int]
) -> tuple[dict[int, float], dict[int, float]]:
    """cap(P_m, Δ) and the smallest relative pivot min_{i<m} r_i, for each m in ``ms``."""
    basis, pivots = nested_prefix(vectors[: max(ms)])
    smallest = torch.cummin(pivots, 0).values
    captures = captures_by_m(basis, displacement, ms)
    return captures, {m: float(smallest[m - 1]) for m in captures}


def prefix_capture_curves(
    vectors: torch.Tensor, displacements: Sequence[torch.Tensor], ms: Sequence[int]
) -> list[dict[int, float]]:
    """:func:`prefix_capture_curve` of each displacement, from one nested basis of ``vectors``
    (the basis does not depend on Δ, and forming it is the cost: float64 Gram–Schmidt over D)."""
    basis = nested_prefix(vectors[: max(ms)])[0]
    return [captures_by_m(basis, displacement, ms) for displacement in displacements]


def captures_by_m(basis: torch.Tensor, displacement: torch.Tensor, ms: Sequence[int]) -> dict[int, float]:
    """cap(P_m, Δ) = Σ_{i<m} (q_iᵀΔ)² / ‖Δ‖² for each m in ``ms`` up to the basis's columns."""
    delta = displacement.reshape(-1).to(torch.float64)
    cumulative = torch.cumsum((basis.T @ delta).pow(2), 0) / delta.pow(2).sum()
    return {m: float(cumulative[m - 1]) for m in ms if 1 <= m <= cumulative.numel()}


def smallest_pivots(vectors: torch.Tensor) -> torch.Tensor:
    """min_{i<m} r_i for m = 1 … M: the numerical determination of every prefix."""
    return torch.cummin(nested_prefix(vectors)[1], 0).values


def prefix_capture_from_r(r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cap(P_m, d) and min_{i<m} r_i for m = 1 … M from an R factor of [u_0 … u_{M−1}, d]
    ((M+1)×(M+1), any matrix whose columns have the vectors' inner products)."""
    columns = r.to(torch.float64).T  # row j: the coordinates of vector j in an orthonormal basis
    basis, pivots = nested_prefix(columns[:-1])
    delta = columns[-1]
    cumulative = torch.cumsum((basis.T @ delta).pow(2), 0) / delta.pow(2).sum()
    return cumulative, torch.cummin(pivots, 0).values


def stacked_r(blocks: Iterable[torch.Tensor]) -> torch.Tensor:
    """R of the QR of the matrix whose rows are the row blocks ``blocks`` (each n_ℓ×c, float64).

    TSQR: R = R([R_prev; R(block)]); Householder on each block, so the columns' inner products
    are kept to float64 round-off even where their Gram matrix would lose them."""
    r = None
    for block in blocks:
        block_r = torch.linalg.qr(block.to(torch.float64), mode="r")[1]
        r = block_r if r is None else torch.linalg.qr(torch.cat([r, block_r]), mode="r")[1]
    if r is None:
        raise ValueError("stacked_r needs at least one block")
    return r


# The Gram route's error on cap(P_m, d) is about 2·eps64 / λ_min(C_m), C_m the leading m×m block
# of the column-equilibrated Gram (measured on Krylov prefixes); this bound keeps it below 1e-6.
GRAM_DETERMINED_EIGENVALUE = 1e-9


def prefix_capture_from_gram(gram: torch.Tensor) -> torch.Tensor:
    """cap(P_m, d) for m = 1 … M from inner products only: ``gram`` is the (M+1)×(M+1) Gram
    matrix of u_0 … u_{M−1}, d (d last). Returns the M cumulative captures, nan where the Gram
    does not determine them.

    Cholesky without pivoting is Gram–Schmidt in order: L[M, i] = q_iᵀ d, so
    cap(P_m, d) = Σ_{i<m} L[M, i]² / ‖d‖². A Gram squares the condition number, so P_m is
    resolved only while λ_min(C_m) >= GRAM_DETERMINED_EIGENVALUE (C the Gram scaled to unit
    diagonal): there the result agrees with QR of the vectors to ~1e-6; beyond it is nan, never
    a number outside [0, 1]. A vector of norm 0 adds nothing. Prefer :func:`stacked_r` when the
    vectors can be seen block by block.
    """
    g = gram.to(torch.float64)
    n = g.shape[0]
    diag = g.diagonal()
    scale = torch.where(diag > 0, diag.rsqrt(), torch.zeros_like(diag))
    unit = g * scale[:, None] * scale[None, :]  # equilibrated: the same captures, a fair λ_min
    lower = torch.zeros(n, n, dtype=torch.float64)
    captures = torch.full((n - 1,), float("nan"), dtype=torch.float64)
    live: list[int] = []  # vectors of nonzero norm, in order
    for i in range(n - 1):
        if diag[i] > 0:
            live.append(i)
            if float(torch.linalg.eigvalsh(unit[live][:, live])[0]) < GRAM_DETERMINED_EIGENVALUE:
                break
            pivot = unit[i, i] - lower[i, :i].pow(2).sum()
            lower[i:, i] = (unit[i:, i] - lower[i:, :i] @ lower[i, :i]) / pivot.sqrt()
        captures[i] = lower[n - 1, : i + 1].pow(2).sum().clamp(0.0, 1.0)
    return captures
