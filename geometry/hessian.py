"""Hessian-vector products (torch.func) and top-k Hessian eigenvectors by Lanczos.

``hvp(v) = ∇²L(θ) v`` is computed forward-over-reverse (jvp of grad), never forming the
D×D Hessian. Lanczos with full re-orthogonalisation builds an m-step Krylov basis Q and the
tridiagonal T = Qᵀ H Q; the top-k Ritz pairs of T approximate H's top-k eigenpairs (largest
algebraic eigenvalues, as in Gur-Ari et al.'s top subspace).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import functional_call, grad, jvp


def flat_hvp(
    module: torch.nn.Module, loss_of_outputs: Callable[[torch.nn.Module, dict], torch.Tensor], names: list[str]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """v ↦ H v for the loss as a function of the named parameters (flattened in ``names`` order).

    ``loss_of_outputs(module_call, params)`` must return the scalar loss, where
    ``module_call(*args)`` runs the module with ``params`` substituted.
    """
    base = {n: p.detach() for n, p in module.named_parameters() if n in names}
    shapes = [base[n].shape for n in names]
    sizes = [base[n].numel() for n in names]

    def unflatten(flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: chunk.view(shape) for n, chunk, shape in zip(names, flat.split(sizes), shapes)}

    def loss(params: dict[str, torch.Tensor]) -> torch.Tensor:
        def call(*args, **kwargs):
            return functional_call(module, params, args, kwargs)

        return loss_of_outputs(call, params)

    primal = {n: base[n] for n in names}

    def hvp(vector: torch.Tensor) -> torch.Tensor:
        tangent = unflatten(vector.to(base[names[0]].dtype))
        _, hv = jvp(grad(loss), (primal,), (tangent,))
        return torch.cat([hv[n].reshape(-1) for n in names])

    return hvp


def lanczos_top_eigenpairs(
    hvp: Callable[[torch.Tensor], torch.Tensor], dim: int, k: int, iterations: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k (largest) eigenvalues (descending) and orthonormal eigenvectors (D×k) of a symmetric H."""
    steps = min(dim, iterations or max(2 * k + 10, 30))
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(dim, generator=generator, dtype=torch.float64)
    q /= q.norm()
    basis = torch.zeros(steps, dim, dtype=torch.float64)
    alphas, betas = [], []
    for j in range(steps):
        basis[j] = q
        w = hvp(q.float()).double()
        alpha = float(w @ q)
        w -= basis[: j + 1].T @ (basis[: j + 1] @ w)  # full re-orthogonalisation (twice is enough)
        w -= basis[: j + 1].T @ (basis[: j + 1] @ w)
        alphas.append(alpha)
        beta = float(w.norm())
        if j == steps - 1 or beta < 1e-10:
            basis = basis[: j + 1]
            break
        betas.append(beta)
        q = w / beta
    n = len(alphas)
    tridiagonal = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if n > 1:
        off = torch.tensor(betas[: n - 1], dtype=torch.float64)
        tridiagonal += torch.diag(off, 1) + torch.diag(off, -1)
    evals, evecs = torch.linalg.eigh(tridiagonal)
    order = torch.argsort(evals, descending=True)[:k]
    vectors = basis.T @ evecs[:, order]
    return evals[order], vectors
