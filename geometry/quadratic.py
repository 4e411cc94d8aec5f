"""The Krylov sanity experiment: gradient descent on a quadratic with a known spectrum.

L(θ) = ½ (θ − θ°)ᵀ H (θ − θ°) with H = diag(λ) (capture is rotation invariant, so a
diagonal H loses nothing). GD θ_{t+1} = θ_t − η H (θ_t − θ°) gives g_t = (I − ηH)^t g_0,
u_t = −η g_t and span(u_0 … u_{m−1}) = K_m(H, g_0); the displacement Δ_T lies in K_T(H, g_0).
docs/science.md 7 quotes, for D = 2000, λ_i = 1/i, an isotropic start, η = 0.9/λ_max, T = 1000:
prefix capture 0.06/0.16/0.33/0.76/0.975/0.993 at m = 1/2/4/8/16/32, top-8 Hessian 0.006.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class QuadraticRun:
    eigenvalues: torch.Tensor  # λ (D,), H = diag(λ)
    updates: torch.Tensor  # u_0 … u_{M−1} as rows (M×D), M = number of updates kept
    gradients: torch.Tensor  # g_0 … g_{M−1} as rows
    displacement: torch.Tensor  # Δ = θ_T − θ_0
    loss_start: float
    loss_end: float


def power_law_spectrum(dim: int, exponent: float = 1.0) -> torch.Tensor:
    """λ_i = 1 / i^exponent, i = 1 … D."""
    return 1.0 / torch.arange(1, dim + 1, dtype=torch.float64) ** exponent


def gradient_descent(
    eigenvalues: torch.Tensor, offset: torch.Tensor, steps: int, lr_scale: float = 0.9, keep: int = 32
) -> QuadraticRun:
    """Run GD from θ_0 − θ° = ``offset`` with η = lr_scale / λ_max; keep the first ``keep`` updates."""
    eta = lr_scale / float(eigenvalues.max())
    x = offset.to(torch.float64).clone()  # θ_t − θ°
    loss = lambda z: 0.5 * float((eigenvalues * z * z).sum())  # noqa: E731
    loss_start = loss(x)
    updates, gradients = [], []
    start = x.clone()
    for t in range(steps):
        g = eigenvalues * x
        u = -eta * g
        if t < keep:
            gradients.append(g.clone())
            updates.append(u.clone())
        x += u
    return QuadraticRun(eigenvalues, torch.stack(updates), torch.stack(gradients), x - start, loss_start, loss(x))


def krylov_basis(matvec, start: torch.Tensor, m: int, tol: float = 1e-12) -> torch.Tensor:
    """Orthonormal basis (D×m', m' <= m) of K_m(H, g) = span(g, Hg, …, H^{m−1} g), built stably.

    Arnoldi (for a symmetric H the Lanczos recurrence, here with full re-orthogonalisation,
    two passes): q_1 = g/‖g‖, q_{j+1} ∝ H q_j − Σ_{i<=j} (q_iᵀ H q_j) q_i. Each new vector is
    orthogonalised against an orthonormal basis, never against the powers H^j g, whose columns
    become parallel to float64 precision after ~12 steps. Stops early at the grade of g (the
    residual falls below ``tol`` of ‖H q_j‖): K_m is then invariant and equals K_{m'}.
    """
    q = start.to(torch.float64).reshape(-1)
    basis = [q / q.norm()]
    while len(basis) < m:
        w = matvec(basis[-1]).to(torch.float64)
        scale = w.norm()
        stacked = torch.stack(basis, 1)
        for _ in range(2):
            w = w - stacked @ (stacked.T @ w)
        if w.norm() <= tol * scale:
            break
        basis.append(w / w.norm())
    return torch.stack(basis, 1)
