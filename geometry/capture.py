"""Capture of a vector by a subspace (SCIENCE.md measurement 2).

For an orthonormal basis B (D×k) and a vector v:
    energy capture  cap(B, v) = ‖Bᵀv‖² / ‖v‖²        (the default for every headline)
    norm capture    sqrt(cap(B, v))
A Haar-random k-subspace of R^D captures exactly k/D in expectation.
"""

from __future__ import annotations

import math

import torch


def capture(basis: torch.Tensor, vector: torch.Tensor) -> float:
    """Energy capture ‖Bᵀv‖²/‖v‖² of ``vector`` (D,) by the orthonormal columns of ``basis``."""
    v = vector.reshape(-1).to(basis.dtype)
    norm_sq = float(torch.linalg.vector_norm(v)) ** 2
    if norm_sq == 0.0:
        return float("nan")
    if basis.shape[1] == 0:
        return 0.0
    coords = basis.T @ v
    return float(coords.double().pow(2).sum()) / norm_sq


def capture_rows(basis: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Energy capture of each row of ``rows`` (n×D) by ``basis``, in one pass over the basis."""
    coords = (rows.to(basis.dtype) @ basis).double()  # n×k
    norms = torch.linalg.vector_norm(rows, dim=1).double() ** 2
    return coords.pow(2).sum(1) / norms


def capture_norm(basis: torch.Tensor, vector: torch.Tensor) -> float:
    """Norm capture ‖Bᵀv‖/‖v‖ = sqrt(energy capture)."""
    return math.sqrt(capture(basis, vector))


def random_capture_baseline(k: int, dim: int) -> float:
    """Expected energy capture of any fixed vector by a uniformly random k-subspace: k/D."""
    return k / dim
