"""The Krylov sanity experiment (docs/science.md 7) through the same geometry code as training runs.

GD on L(θ) = ½ (θ − θ°)ᵀ diag(λ) (θ − θ°), λ_i = 1/i^exponent: prefix capture cap(P_m, Δ)
beside its exact value cap(K_m(H, g_0), Δ) and the smallest relative pivot of each prefix (the
update prefix is round-off once that falls near 1e-16, after ~12 updates here), the top-k
Hessian eigenspace's capture of Δ (S5), and the drift of a rolling gradient basis,
written to summary.json under the same names as a recovery run so analyze.py reads both.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from loclin.callbacks.base import metric
from loclin.callbacks.keys import RECOVERY_PREFIX, RECOVERY_TABLE
from loclin.geometry.angles import compare_subspaces
from loclin.geometry.capture import capture, random_capture_baseline
from loclin.geometry.drift import half_life
from loclin.geometry.lags import is_pair
from loclin.geometry.prefix import PREFIX_DETERMINED_PIVOT, prefix_capture_and_pivots
from loclin.geometry.quadratic import gradient_descent, krylov_basis, power_law_spectrum
from loclin.geometry.window import VectorWindow
from loclin.runs.rundir import SUMMARY_FILE, write_config, write_json


def rolling_drift(gradients: torch.Tensor, window: int, k: int, lags: list[int]) -> dict[int, float]:
    """Mean overlap between rolling top-k bases of the gradient stream at each lag."""
    ring = VectorWindow(gradients.shape[1], window)
    bases = {}
    for t, g in enumerate(gradients):
        ring.push(g.float(), t)
        if ring.size == window:
            bases[t] = ring.basis(k)[0]
    curve = {}
    for lag in lags:
        values = [
            compare_subspaces(bases[s], bases[s + lag])["overlap"]
            for s in bases
            if s + lag in bases and is_pair(s, s + lag, lag)
        ]
        if values:
            curve[lag] = sum(values) / len(values)
    return curve


def run_quadratic(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """The whole experiment in one process (seconds): a resumed run starts it again."""
    started = time.time()
    write_config(run_dir, OmegaConf.to_yaml(cfg))
    q = cfg.quadratic
    spectrum = power_law_spectrum(q.dim, q.exponent)
    offset = torch.randn(q.dim, generator=torch.Generator().manual_seed(cfg.seed), dtype=torch.float64)
    keep = max(max(q.prefix_ms), max(q.drift_lags) + q.window + max(q.drift_lags))
    run = gradient_descent(spectrum, offset, q.steps, q.lr_scale, keep=min(keep, q.steps))
    curve, pivots = prefix_capture_and_pivots(run.updates, run.displacement, list(q.prefix_ms))
    delta = run.displacement
    # the truth the update prefix approximates: span(u_0 … u_{m−1}) = K_m(H, g_0), built stably from H
    krylov = {m: capture(krylov_basis(lambda v: spectrum * v, run.gradients[0], m), delta) for m in curve}
    top = torch.eye(q.dim, dtype=torch.float64)[:, : q.k]  # λ is sorted descending: e_1..e_k
    hessian = capture(top, delta)
    drift = rolling_drift(run.gradients, q.window, q.k_rolling, list(q.drift_lags))
    metrics = {
        f"recovery.capture.P{m}_updates": metric(
            v, f"capture (docs/science.md 7) cap(P_{m}, Δ), energy", random_capture_baseline(m, q.dim)
        )
        for m, v in curve.items()
    }
    for m in curve:
        metrics[f"recovery.capture_krylov.K{m}"] = metric(
            krylov[m],
            f"capture of Δ by the exact Krylov space K_{m}(H, g_0) (Arnoldi on H): what cap(P_{m}, Δ) equals in exact "
            "arithmetic",
            random_capture_baseline(m, q.dim),
        )
        metrics[f"recovery.prefix_pivot.P{m}_updates"] = metric(
            pivots[m],
            f"smallest relative QR pivot of u_0 … u_{m - 1}; P_{m} is numerically determined when >= "
            f"{PREFIX_DETERMINED_PIVOT:g}",
        )
    metrics["recovery.capture.S5_hessian"] = metric(
        hessian, f"capture of Δ by the top-{q.k} Hessian eigenvectors", random_capture_baseline(q.k, q.dim)
    )
    metrics.update(
        {
            f"grad.overlap_lag{lag}": metric(
                v,
                f"overlap of rolling (W={q.window}, k={q.k_rolling}) gradient bases at lag {lag}",
                q.k_rolling / q.dim,
            )
            for lag, v in drift.items()
        }
    )
    value, bound = half_life(list(drift), list(drift.values()))
    metrics["grad.half_life"] = metric(value, "half_life (docs/science.md 4) of the rolling gradient basis, steps")
    if bound:
        metrics["grad.half_life"]["bound"] = bound
    metrics["loss_drop"] = metric(1 - run.loss_end / run.loss_start, "fraction of the initial loss removed by GD")
    summary = {
        "experiment": cfg.experiment,
        "protocol": "quadratic",
        "run_dir": str(run_dir),
        "seed": cfg.seed,
        "steps": q.steps,
        "geometry": {"dim": q.dim, "k": q.k, "window": q.window, "random_baseline_k_over_D": q.k / q.dim},
        "metrics": metrics,
        "curves": {
            RECOVERY_PREFIX: {
                "m": list(curve),
                "updates": list(curve.values()),
                "krylov_exact": [krylov[m] for m in curve],
                "min_pivot_updates": [pivots[m] for m in curve],
                "determined_updates": [pivots[m] >= PREFIX_DETERMINED_PIVOT for m in curve],
            },
            RECOVERY_TABLE: {
                **{f"P{m}_updates": {"capture": v, "k": m} for m, v in curve.items()},
                "S5_hessian": {"capture": hessian, "k": q.k},
            },
        },
        "wall_seconds_this_process": time.time() - started,
    }
    write_json(run_dir / SUMMARY_FILE, summary)
    return summary
