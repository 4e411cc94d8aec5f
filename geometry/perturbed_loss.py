"""Random search around a trained point, measured against geometry.random_search's predictions.

At θ, for a loss L (the mean answer loss over a list of batches; one list fixed from the
training distribution, one held out), sample ΔL_i = L(θ + σ ε_i) − L(θ) for a grid of σ given
in units of σ_lin = ‖g‖ / max(|tr H|, ‖H‖_F), and compare: mean and variance (Theorem A),
P(ΔL < 0), best of N (Theorem B, N up to ``samples``), σ*, the ES estimate's cosine, and
sampling inside k-subspaces (Proposition C). ‖g‖ is exact; tr H and ‖H‖_F² are Hutchinson
estimates from Hessian-vector products.

Perturbed losses are functional calls of the one module with θ + δ substituted, vectorised
over a chunk of δ with vmap: the model is never copied.
"""

from __future__ import annotations

import math

import torch
from loclin.geometry.hessian import flat_hvp
from loclin.geometry.random_search import (
    LocalQuadraticLaw,
    es_cosine,
    expected_min_of_n,
    hutchinson,
    selected_mean,
    subspace_law,
)
from torch.func import functional_call, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

QUANTILES = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
HOLDS_TOLERANCE = 0.2  # |relative error| of best of N below which the local-linear theory "holds"


def relative_error(measured: float, predicted: float) -> float:
    return (measured - predicted) / abs(predicted) if predicted else float("nan")


def largest_n(point: dict) -> int:
    return max(int(key[4:]) for key in point["fixed"][0] if key.startswith("best"))


def holds_up_to(point: dict) -> float:
    """The largest σ/σ_lin of the grid up to which the best-of-N prediction (N = n_star: the
    best of all samples is one draw's extreme, too noisy to judge) is within HOLDS_TOLERANCE of
    the measurement at every σ (nan if it fails at the smallest)."""
    n, last = point["sigma_star"]["n"], float("nan")
    for multiple, row in zip(point["sigma_multiples"], point["fixed"]):
        if abs(relative_error(row[f"best{n}"], row[f"pred_best{n}"])) > HOLDS_TOLERANCE:
            break
        last = multiple
    return last


class PerturbedLoss:
    """δ ↦ L(θ + δ) = mean over ``batches`` of ``module.answer_loss`` with the parameters
    ``names`` (flattened in that order) moved by δ."""

    def __init__(
        self,
        module: torch.nn.Module,
        names: list[str],
        batches: list[dict[str, torch.Tensor]],
        chunk: int = 16,
        vectorize: bool = True,
    ):
        self.module, self.names, self.batches = module, list(names), batches
        self.base = {n: p.detach() for n, p in module.named_parameters()}
        self.shapes = [self.base[n].shape for n in self.names]
        self.sizes = [self.base[n].numel() for n in self.names]
        self.dim = sum(self.sizes)
        self.chunk, self.vectorize = chunk, vectorize

    def loss_of(self, call, params=None) -> torch.Tensor:
        losses = [self.module.answer_loss(call(b["input"], b.get("attention_mask")), b["target"]) for b in self.batches]
        return torch.stack(losses).mean()

    def _at(self, delta: torch.Tensor) -> torch.Tensor:
        moved = dict(self.base)
        for name, piece, shape in zip(self.names, delta.split(self.sizes), self.shapes):
            moved[name] = self.base[name] + piece.view(shape)
        return self.loss_of(lambda *args: functional_call(self.module, moved, args))

    @torch.no_grad()
    def __call__(self, deltas: torch.Tensor) -> torch.Tensor:
        """L(θ + δ_i) for each row of ``deltas`` (C×D)."""
        with sdpa_kernel(SDPBackend.MATH):  # the fused CPU kernels have no vmap batching rule
            if self.vectorize:
                return torch.cat([vmap(self._at)(part) for part in deltas.split(self.chunk)])
            return torch.stack([self._at(delta) for delta in deltas])

    def gradient(self) -> torch.Tensor:
        params = [self.base[n].clone().requires_grad_(True) for n in self.names]
        moved = {**self.base, **dict(zip(self.names, params))}
        loss = self.loss_of(lambda *args: functional_call(self.module, moved, args))
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])

    def hvp(self):
        hvp = flat_hvp(self.module, self.loss_of, self.names)

        def with_math_kernel(vector: torch.Tensor) -> torch.Tensor:
            with sdpa_kernel(SDPBackend.MATH):  # forward-mode AD needs the math kernel
                return hvp(vector)

        return with_math_kernel


def sample_deltas(
    losses: dict[str, PerturbedLoss],
    sigma: float,
    count: int,
    seed: int,
    basis: torch.Tensor | None = None,
    es_gradient: bool = False,
):
    """ΔL_i for ``count`` draws ε_i ~ N(0, I) (or ε_i = U z_i inside ``basis`` U), on every loss.

    The same seed gives the same ε at every σ (common random numbers across the grid).
    Returns ({name: ΔL}, ĝ) with ĝ = (1/N) Σ ΔL_i ε_i / σ the ES estimate on the first loss."""
    first_name = next(iter(losses))
    first = losses[first_name]
    generator = torch.Generator().manual_seed(seed)
    base = {name: float(loss(torch.zeros(1, first.dim))[0]) for name, loss in losses.items()}
    out = {name: [] for name in losses}
    estimate = torch.zeros(first.dim, dtype=torch.float64) if es_gradient else None
    done = 0
    while done < count:
        size = min(first.chunk * 4, count - done)
        if basis is None:
            noise = torch.randn(size, first.dim, generator=generator)
        else:
            noise = torch.randn(size, basis.shape[1], generator=generator) @ basis.T.float()
        for name, loss in losses.items():
            out[name].append(loss(sigma * noise).double() - base[name])
        if estimate is not None:
            estimate += noise.double().T @ out[first_name][-1] / (count * sigma)
        done += size
    return {name: torch.cat(parts) for name, parts in out.items()}, estimate


def law_of(loss: PerturbedLoss, hutchinson_samples: int, seed: int) -> tuple[LocalQuadraticLaw, dict, torch.Tensor]:
    gradient = loss.gradient()
    curvature = hutchinson(loss.hvp(), loss.dim, hutchinson_samples, seed)
    law = LocalQuadraticLaw(float(gradient.norm()), curvature["trace"], curvature["frob_sq"])
    return law, curvature, gradient


def best_sigma(sigmas: list[float], values: list[float]) -> float:
    """The σ minimising ``values`` on a log grid, refined by a parabola through the minimum
    and its neighbours in log σ (the grid point itself at an edge)."""
    i = min(range(len(values)), key=values.__getitem__)
    if i == 0 or i == len(values) - 1:
        return sigmas[i]
    x = [math.log(sigmas[j]) for j in (i - 1, i, i + 1)]
    y = [values[j] for j in (i - 1, i, i + 1)]
    denominator = (x[0] - x[1]) * (x[0] - x[2]) * (x[1] - x[2])
    a = (x[2] * (y[1] - y[0]) + x[1] * (y[0] - y[2]) + x[0] * (y[2] - y[1])) / denominator
    b = (x[2] ** 2 * (y[0] - y[1]) + x[1] ** 2 * (y[2] - y[0]) + x[0] ** 2 * (y[1] - y[2])) / denominator
    return math.exp(-b / (2 * a)) if a > 0 else sigmas[i]


def measure_sigma(law: LocalQuadraticLaw, deltas: torch.Tensor, sigma: float, ns: list[int]) -> dict:
    """Measured against predicted at one σ: mean, std, P(ΔL < 0) and best of N."""
    row = {
        "mean": float(deltas.mean()),
        "pred_mean": law.mean(sigma),
        "mean_se": float(deltas.std() / math.sqrt(len(deltas))),
        "std": float(deltas.std()),
        "pred_std": math.sqrt(law.variance(sigma)),
        "p_improve": float((deltas < 0).double().mean()),
        "pred_p_improve": law.p_improve(sigma),
        "quantiles": torch.quantile(deltas / (sigma * law.grad_norm), QUANTILES).tolist(),
    }
    for n in ns:
        row[f"best{n}"] = expected_min_of_n(deltas, n)
        row[f"pred_best{n}"] = law.best_of_n(sigma, n)
        row[f"linear_best{n}"] = -law.linear_gain(sigma, n)
    return row


def probe_point(fixed: PerturbedLoss, heldout: PerturbedLoss, bases: dict[str, torch.Tensor], cfg, seed: int) -> dict:
    """Every measurement of docs/science.md 8 at the module's current θ (see the module docstring)."""
    ns = sorted({int(n) for n in cfg.best_of if n <= cfg.samples} | {int(cfg.n_star)})  # n_star is always measured
    law, curvature, gradient = law_of(fixed, cfg.hutchinson_samples, seed)
    heldout_law, heldout_curvature, _ = law_of(heldout, cfg.hutchinson_samples, seed + 1)
    sigmas = [float(m) * law.sigma_linear for m in cfg.sigma_multiples]
    result = {
        "dim": fixed.dim,
        "grad_norm": law.grad_norm,
        "trace_h": law.trace_h,
        "trace_h_se": curvature["trace_se"],
        "frob_h": math.sqrt(max(law.frob_h_sq, 0.0)),
        "sigma_linear": law.sigma_linear,
        "heldout": {
            "grad_norm": heldout_law.grad_norm,
            "trace_h": heldout_law.trace_h,
            "trace_h_se": heldout_curvature["trace_se"],
        },
        "sigma_multiples": list(cfg.sigma_multiples),
        "sigmas": sigmas,
        "fixed": [],
        "heldout_rows": [],
        "selected_heldout": [],
    }
    es = None
    for index, sigma in enumerate(sigmas):
        found, estimate = sample_deltas(
            {"fixed": fixed, "heldout": heldout}, sigma, cfg.samples, seed, es_gradient=index == 0
        )
        result["fixed"].append(measure_sigma(law, found["fixed"], sigma, ns))
        result["heldout_rows"].append(measure_sigma(heldout_law, found["heldout"], sigma, ns))
        result["selected_heldout"].append({f"best{n}": selected_mean(found["fixed"], found["heldout"], n) for n in ns})
        if estimate is not None:
            es = float(torch.nn.functional.cosine_similarity(estimate, gradient.double(), dim=0))
    n_star = int(cfg.n_star)
    result["es"] = {"n": cfg.samples, "sigma": sigmas[0], "cos": es, "pred_cos": es_cosine(cfg.samples, fixed.dim)}
    result["sigma_star"] = {
        "n": n_star,
        "pred": law.sigma_star(n_star),
        "pred_numeric": law.sigma_star_numeric(n_star),
        "measured": best_sigma(sigmas, [row[f"best{n_star}"] for row in result["fixed"]]),
        "pred_gain": -law.gain_star(n_star),
        "measured_gain": min(row[f"best{n_star}"] for row in result["fixed"]),
    }
    result["subspaces"] = {"full": subspace_row(law, law, result["fixed"], sigmas, n_star, fixed.dim)}
    hvp = fixed.hvp()
    for name, basis in bases.items():
        sub_law = subspace_law(hvp, basis, gradient)
        sub_sigmas = [float(m) * sub_law.sigma_linear for m in cfg.sigma_multiples]
        rows = [
            measure_sigma(
                sub_law,
                sample_deltas({"fixed": fixed}, s, cfg.subspace_samples, seed, basis=basis)[0]["fixed"],
                s,
                [n_star],
            )
            for s in sub_sigmas
        ]
        result["subspaces"][name] = subspace_row(sub_law, law, rows, sub_sigmas, n_star, basis.shape[1])
    return result


def subspace_row(
    sub_law: LocalQuadraticLaw, full_law: LocalQuadraticLaw, rows: list[dict], sigmas: list[float], n: int, k: int
) -> dict:
    """Proposition C for one space: ρ(U), cap(U, g), and best of N predicted and measured, both
    over the grid's local-linear part (σ <= σ_lin of the space) and measured over the whole grid."""
    best = [row[f"best{n}"] for row in rows]
    local = [i for i, s in enumerate(sigmas) if s <= sub_law.sigma_linear * (1 + 1e-9)] or [0]
    return {
        "k": k,
        "rho": sub_law.signal_density,
        "rho_full": full_law.signal_density,
        "capture_g": sub_law.grad_norm**2 / full_law.grad_norm**2,
        "trace_h": sub_law.trace_h,
        "pred_gain": -sub_law.gain_star(n),
        "pred_best_local": min(rows[i][f"pred_best{n}"] for i in local),
        "measured_best_local": min(best[i] for i in local),
        "measured_gain": min(best),
        "sigmas": sigmas,
        "best": best,
    }
