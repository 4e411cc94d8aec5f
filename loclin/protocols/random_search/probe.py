"""The random-search experiment with its dimension sweep (``random_search.widths``).

The configured model is trained and probed at every step of ``random_search.at_steps``
(callbacks.random_search). Each other width d_model of ``widths`` (d_ff = 4 d_model) is trained
the same way, first, in ``<run>/widths/d<width>/`` and probed at the last of ``at_steps``; the summary's
``random_search.widths`` curve then shows which quantities stay flat in D (the first-order law,
best of N) and which do not (the ES estimate's cosine).
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from loclin.callbacks.base import metric
from loclin.callbacks.gradient_window import gradient_stream
from loclin.callbacks.keys import RANDOM_SEARCH_POINTS, RANDOM_SEARCH_WIDTHS
from loclin.callbacks.random_search import RandomSearchCallback
from loclin.protocols.train.hooks import PhaseHooks
from loclin.protocols.train.runner import run_experiment
from loclin.runs.rundir import CONFIG_FILE, SUMMARY_FILE, write_config

WIDTHS_DIR = "widths"


class Probe(PhaseHooks):
    """The random-search protocol's phase hook: the probe at ``random_search.at_steps`` of the first
    phase, reading the run's gradient stream (its update window and rolling gradient basis) if it has one."""

    def before_phase(self, phase: DictConfig, index: int, measurements: list) -> list[RandomSearchCallback]:
        if index != 0:
            return []
        return [
            RandomSearchCallback(
                self.cfg.random_search, self.cfg.geometry.k, self.cfg.seed, gradient_stream(measurements)
            )
        ]


def width_config(cfg: DictConfig, width: int) -> DictConfig:
    sub = OmegaConf.merge(
        cfg, {"experiment": f"{cfg.experiment}_d{width}", "model": {"d_model": width, "d_ff": 4 * width}}
    )
    sub.random_search.widths = []
    sub.random_search.at_steps = [cfg.random_search.at_steps[-1]]
    sub.random_search.subspaces = []  # Proposition C is measured on the configured width
    return sub


def width_row(width: int, point: dict, cfg: DictConfig) -> dict:
    """The D-dependence of one trained width, read at its last probe point."""
    small = point["fixed"][0]
    n = cfg.n_star  # best of all ``samples`` is one draw's extreme; N = n_star averages many subsets
    return {
        "width": width,
        "dim": point["dim"],
        "grad_norm": point["grad_norm"],
        "trace_h": point["trace_h"],
        "sigma_linear": point["sigma_linear"],
        "p_improve": small["p_improve"],
        "pred_p_improve": small["pred_p_improve"],
        "samples": cfg.samples,  # the perturbations p_improve counts over
        "best_over_linear": small[f"best{n}"] / small[f"linear_best{n}"],
        "best_n": n,
        "std_over_pred": small["std"] / small["pred_std"],
        "es_cos": point["es"]["cos"],
        "pred_es_cos": point["es"]["pred_cos"],
        "sigma_star_ratio": point["sigma_star"]["measured"] / point["sigma_star"]["pred"],
    }


def run_random_search(cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
    """The other widths first (each its own run under ``widths/``, skipped once finished), then
    the configured one, whose summary.json, written last, carries the sweep: a run killed
    anywhere resumes with ``--resume``."""
    if not resume:
        write_config(run_dir, OmegaConf.to_yaml(cfg))  # resumable from the first width on
    points = {}
    for width in cfg.random_search.widths:
        if width == cfg.model.d_model:
            continue
        sub_dir = run_dir / WIDTHS_DIR / f"d{width}"
        if (sub_dir / SUMMARY_FILE).is_file():
            sub_summary = json.loads((sub_dir / SUMMARY_FILE).read_text())
        else:
            print(f"[loclin] dimension sweep: d_model={width}", flush=True)
            sub_dir.mkdir(parents=True, exist_ok=True)
            sub_summary = run_experiment(width_config(cfg, width), sub_dir, resume=(sub_dir / CONFIG_FILE).is_file())
        points[width] = sub_summary["curves"][RANDOM_SEARCH_POINTS][-1]

    def add_sweep(summary: dict) -> None:
        if not cfg.random_search.widths:
            return
        if cfg.model.d_model in cfg.random_search.widths:
            points[cfg.model.d_model] = summary["curves"][RANDOM_SEARCH_POINTS][-1]
        rows = sorted((width_row(w, point, cfg.random_search) for w, point in points.items()), key=lambda r: r["dim"])
        summary["curves"][RANDOM_SEARCH_WIDTHS] = rows
        spread = max(r["best_over_linear"] for r in rows) - min(r["best_over_linear"] for r in rows)
        summary["metrics"]["random_search.widths.dim_range"] = metric(
            rows[-1]["dim"] / rows[0]["dim"], "largest D / smallest D of the sweep"
        )
        summary["metrics"]["random_search.widths.best_over_linear_spread"] = metric(
            spread, "range over widths of best-of-N ΔL / (−m_N σ‖g‖) at the smallest σ (flat in D: ≈ 0)"
        )
        summary["metrics"]["random_search.widths.es_cos_ratio"] = metric(
            rows[-1]["es_cos"] / rows[0]["es_cos"],
            "ES cosine at the largest D / at the smallest D",
            rows[-1]["pred_es_cos"] / rows[0]["pred_es_cos"],
        )

    return run_experiment(cfg, run_dir, resume=resume, extend_summary=add_sweep)
