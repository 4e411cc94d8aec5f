"""Random-search theory around a point θ (docs/science.md 8; science-notes §2.6).

ΔL(ε) = L(θ + σε) − L(θ), ε ~ N(0, I_D), g = ∇L(θ), H = ∇²L(θ). To second order
ΔL = σ gᵀε + ½σ² εᵀHε with gᵀε ~ N(0, ‖g‖²), E[εᵀHε] = tr H, Var[εᵀHε] = 2‖H‖_F² and
Cov(gᵀε, εᵀHε) = 0, so

    Theorem A   E[ΔL] = ½σ² tr H,   Var[ΔL] = σ²‖g‖² + ½σ⁴‖H‖_F²,
                ΔL/(σ‖g‖) → N(0, 1) and P(ΔL < 0) → ½ for σ ≪ σ_lin = ‖g‖ / max(|tr H|, ‖H‖_F).
    Theorem B   E[min_i≤N ΔL_i] ≈ ½σ² tr H − m_N sqrt(Var[ΔL]),  m_N = E[max of N standard normals];
                σ* = m_N ‖g‖ / tr H, gain G* = m_N² ‖g‖² / (2 tr H).
    Prop. C     sampling ε = U z in a k-subspace (orthonormal U) replaces ‖g‖² by ‖Uᵀg‖² and
                tr H by tr(UᵀHU); U beats the full space iff ρ(U) = ‖Uᵀg‖²/tr(UᵀHU) > ‖g‖²/tr H.
    ES contrast the estimate ĝ = (1/N) Σ (gᵀε_i) ε_i has cos(ĝ, g) ≈ sqrt(N / (N + D + 1)).

Everything here is pure math on numbers, vectors and a Hessian-vector product.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch

_GRID = torch.linspace(-14.0, 14.0, 56_001, dtype=torch.float64)


@lru_cache(maxsize=256)
def expected_max_normal(n: int) -> float:
    """m_N = E[max of N iid N(0, 1)] = ∫ x · N φ(x) Φ(x)^(N−1) dx, by the trapezoid rule on
    [−14, 14] (the integrand is below 1e-40 outside it for N ≤ 10⁹)."""
    if n < 1:
        raise ValueError(f"m_N needs N >= 1, got {n}")
    x = _GRID
    log_density = math.log(n) - 0.5 * x**2 - 0.5 * math.log(2 * math.pi) + (n - 1) * torch.special.log_ndtr(x)
    return float(torch.trapezoid(x * torch.exp(log_density), x))


def normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


@dataclass(frozen=True)
class LocalQuadraticLaw:
    """Theorems A and B for one point: ‖g‖, tr H and ‖H‖_F² (of the loss being perturbed)."""

    grad_norm: float
    trace_h: float
    frob_h_sq: float

    def mean(self, sigma: float) -> float:
        return 0.5 * sigma**2 * self.trace_h

    def variance(self, sigma: float) -> float:
        return sigma**2 * self.grad_norm**2 + 0.5 * sigma**4 * self.frob_h_sq

    def p_improve(self, sigma: float) -> float:
        """P(ΔL < 0) under the Gaussian approximation N(mean, variance)."""
        return normal_cdf(-self.mean(sigma) / math.sqrt(self.variance(sigma)))

    def best_of_n(self, sigma: float, n: int) -> float:
        """E[min of N ΔL_i] ≈ ½σ² tr H − m_N sqrt(Var ΔL) (negative = an improvement)."""
        return self.mean(sigma) - expected_max_normal(n) * math.sqrt(self.variance(sigma))

    def linear_gain(self, sigma: float, n: int) -> float:
        """The dimension-free first-order gain m_N σ ‖g‖."""
        return expected_max_normal(n) * sigma * self.grad_norm

    @property
    def sigma_linear(self) -> float:
        """σ_lin = ‖g‖ / max(|tr H|, ‖H‖_F): below it ΔL is first order in σ."""
        return self.grad_norm / max(abs(self.trace_h), math.sqrt(self.frob_h_sq))

    def sigma_star(self, n: int) -> float:
        """σ* = m_N ‖g‖ / tr H (nan where tr H <= 0: no finite optimum to second order)."""
        return expected_max_normal(n) * self.grad_norm / self.trace_h if self.trace_h > 0 else math.nan

    def sigma_star_numeric(self, n: int) -> float:
        """argmin over σ of best_of_n(σ, N) with the ‖H‖_F term kept (log grid, 0.1% steps,
        10⁻³ to 10³ σ_lin). nan when m_N ‖H‖_F / √2 >= ½ tr H: then the σ⁴ spread outgrows the
        mean and the second-order law promises unbounded gains (no finite optimum)."""
        if expected_max_normal(n) * math.sqrt(self.frob_h_sq / 2) >= self.trace_h / 2:
            return math.nan
        sigmas = self.sigma_linear * torch.logspace(-3, 3, 6001, dtype=torch.float64)
        values = 0.5 * sigmas**2 * self.trace_h - expected_max_normal(n) * torch.sqrt(
            sigmas**2 * self.grad_norm**2 + 0.5 * sigmas**4 * self.frob_h_sq
        )
        return float(sigmas[int(torch.argmin(values))])

    def gain_star(self, n: int) -> float:
        """G* = m_N² ‖g‖² / (2 tr H), the best-of-N gain at σ* with the ‖H‖_F term neglected."""
        return expected_max_normal(n) ** 2 * self.grad_norm**2 / (2 * self.trace_h) if self.trace_h > 0 else math.nan

    @property
    def signal_density(self) -> float:
        """ρ = ‖g‖² / tr H (Proposition C)."""
        return self.grad_norm**2 / self.trace_h if self.trace_h != 0 else math.inf


def es_cosine(n: int, dim: int) -> float:
    """Predicted cos(ĝ, g) of the ES estimate from N samples in D dimensions."""
    return math.sqrt(n / (n + dim + 1))


def min_of_n_weights(m: int, n: int) -> torch.Tensor:
    """w_i = P(the i-th smallest of M draws is the minimum of a random N-subset)
    = C(M − i, N − 1) / C(M, N), i = 1..M (zero once fewer than N − 1 draws lie above)."""
    if not 1 <= n <= m:
        raise ValueError(f"best of N={n} needs 1 <= N <= {m} samples")
    above = m - torch.arange(1, m + 1, dtype=torch.float64)  # draws larger than the i-th
    log_choose = torch.lgamma(above + 1) - torch.lgamma((above - n + 2).clamp(min=1)) - math.lgamma(n)
    log_weight = log_choose - (math.lgamma(m + 1) - math.lgamma(n + 1) - math.lgamma(m - n + 1))
    return torch.where(above >= n - 1, torch.exp(log_weight), torch.zeros_like(above))


def expected_min_of_n(samples: torch.Tensor, n: int) -> float:
    """Unbiased estimate of E[min of N draws] from M >= N iid samples (a U-statistic)."""
    return selected_mean(samples, samples, n)


def selected_mean(scores: torch.Tensor, values: torch.Tensor, n: int) -> float:
    """Unbiased estimate of E[value of the draw with the lowest score among N] from M paired
    samples (noisy selection: choose on a batch, evaluate on held-out data)."""
    order = torch.argsort(scores.double().flatten())
    return float((min_of_n_weights(order.numel(), n) * values.double().flatten()[order]).sum())


def hutchinson(hvp: Callable[[torch.Tensor], torch.Tensor], dim: int, samples: int, seed: int = 0) -> dict[str, float]:
    """tr H ≈ mean vᵀHv and ‖H‖_F² ≈ mean ‖Hv‖² over Rademacher v (both unbiased), with the
    standard error of each mean."""
    generator = torch.Generator().manual_seed(seed)
    quadratic, squared = [], []
    for _ in range(samples):
        v = torch.randint(0, 2, (dim,), generator=generator).double() * 2 - 1
        hv = hvp(v.float()).double()
        quadratic.append(float(v @ hv))
        squared.append(float(hv @ hv))
    q, s = torch.tensor(quadratic, dtype=torch.float64), torch.tensor(squared, dtype=torch.float64)
    spread = (lambda t: float(t.std() / math.sqrt(len(t)))) if samples > 1 else (lambda t: math.nan)
    return {"trace": float(q.mean()), "trace_se": spread(q), "frob_sq": float(s.mean()), "frob_sq_se": spread(s)}


def subspace_law(
    hvp: Callable[[torch.Tensor], torch.Tensor], basis: torch.Tensor, gradient: torch.Tensor
) -> LocalQuadraticLaw:
    """The law of ΔL for ε = U z, z ~ N(0, I_k): ‖Uᵀg‖, tr(UᵀHU), ‖UᵀHU‖_F² exactly, from k HVPs."""
    columns = torch.stack([hvp(basis[:, j].float()).double() for j in range(basis.shape[1])], 1)
    projected = basis.double().T @ columns  # UᵀHU, k×k
    projected = 0.5 * (projected + projected.T)
    return LocalQuadraticLaw(
        float((basis.double().T @ gradient.double()).norm()), float(projected.trace()), float((projected**2).sum())
    )
