"""Capture of a vector by a subspace (docs/science.md measurement 2).

For an orthonormal basis B (D×k) and a vector v:
    energy capture  cap(B, v) = ‖Bᵀv‖² / ‖v‖²        (the default for every headline)
    norm capture    sqrt(cap(B, v))
A Haar-random k-subspace of R^D captures exactly k/D in expectation.
"""

from __future__ import annotations

import math

import torch
from loclin.geometry.sharded import Reduce, no_reduce


def capture(basis: torch.Tensor, vector: torch.Tensor, reduce: Reduce = no_reduce) -> float:
    """Energy capture ‖Bᵀv‖²/‖v‖² of ``vector`` (D,) by the orthonormal columns of ``basis``
    (or of this rank's coordinate slices of both, with ``reduce`` summing over ranks)."""
    return float(capture_rows(basis, vector.reshape(1, -1), reduce)[0])


def capture_rows(basis: torch.Tensor, rows: torch.Tensor, reduce: Reduce = no_reduce) -> torch.Tensor:
    """Energy capture of each row of ``rows`` (n×D) by ``basis``, in one pass over the basis
    (nan for a zero row). Sharded: Bᵀv = Σ_r B_rᵀv_r and ‖v‖² = Σ_r ‖v_r‖², one reduction of n×(k+1) numbers."""
    coords = (rows.to(basis.dtype) @ basis).double()  # n×k
    norms = torch.linalg.vector_norm(rows, dim=1).double() ** 2
    packed = reduce(torch.cat([coords, norms[:, None]], 1))
    return packed[:, :-1].pow(2).sum(1) / packed[:, -1]


def capture_norm(basis: torch.Tensor, vector: torch.Tensor) -> float:
    """Norm capture ‖Bᵀv‖/‖v‖ = sqrt(energy capture)."""
    return math.sqrt(capture(basis, vector))


def random_capture_baseline(k: int, dim: int) -> float:
    """Expected energy capture of any fixed vector by a uniformly random k-subspace: k/D."""
    return k / dim
