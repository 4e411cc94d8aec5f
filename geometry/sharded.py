"""Window geometry when the D coordinates are split across ranks (FSDP shards, a model split
across devices): nothing D-dimensional is ever gathered.

Rank r holds the rows X_r ∈ R^{W×D_r} of its coordinates. Then
    Gram       G = X Xᵀ = Σ_r X_r X_rᵀ                    (one all-reduce of W×W),
    basis      B = Xᵀ V_k Σ_k⁻¹, so rank r's slice is B_r = X_rᵀ V_k Σ_k⁻¹   (local, from G),
    capture    cap(B, v) = ‖Σ_r B_rᵀ v_r‖² / Σ_r ‖v_r‖²   (all-reduce of k + 1 numbers per vector),
    overlap    B_sᵀ B_t = Σ_r B_s,rᵀ B_t,r                 (all-reduce of k×k),
so a refresh moves O(W²) numbers and a capture or drift comparison O(k²), never O(D·W).
Spectra come from G alone. Without an initialised process group the reductions are the
identity, and every function equals its single-process counterpart in ``geometry``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from geometry.angles import angles_from_cross
from geometry.subspace import basis_coefficients


def all_reduce_sum(tensor: torch.Tensor, group=None) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
    return tensor


def sharded_gram(local_rows: torch.Tensor, group=None) -> torch.Tensor:
    """G = Σ_r X_r X_rᵀ (float64, W×W), the same on every rank."""
    gram = local_rows.double() @ local_rows.double().T
    return all_reduce_sum(gram, group)


def sharded_basis(local_rows: torch.Tensor, k: int, group=None) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's slice B_r (D_r×k') of the window's top-k basis, and all W singular values."""
    coeff, s = basis_coefficients(sharded_gram(local_rows, group), k)
    return (coeff.to(local_rows.dtype).T @ local_rows).T.contiguous(), s


def sharded_capture(local_basis: torch.Tensor, local_vectors: torch.Tensor, group=None) -> torch.Tensor:
    """cap(B, v) = ‖Bᵀv‖²/‖v‖² for each row of ``local_vectors`` (n×D_r)."""
    local_vectors = local_vectors.reshape(-1, local_basis.shape[0]).double()
    packed = torch.cat([local_vectors @ local_basis.double(), (local_vectors**2).sum(1, keepdim=True)], 1)
    packed = all_reduce_sum(packed, group)
    return (packed[:, :-1] ** 2).sum(1) / packed[:, -1]


def sharded_principal_angles(local_a: torch.Tensor, local_b: torch.Tensor, group=None) -> dict[str, torch.Tensor | float]:
    """Principal angles (ascending), overlap ‖B_aᵀB_b‖²_F / k and Grassmann distance."""
    cross = all_reduce_sum(local_a.double().T @ local_b.double(), group)
    angles = angles_from_cross(cross).sort().values
    k = max(local_a.shape[1], local_b.shape[1])
    return {"angles": angles, "overlap": float((cross**2).sum()) / k, "grassmann": float(angles.norm())}
