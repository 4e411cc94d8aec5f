"""Random search at points θ_s of a run, against the Gaussian local-linear theory (docs/science.md 8).

At each step s of ``at_steps`` the callback keeps θ_s and the rolling gradient basis B_s;
``k`` steps later the update window holds u_s … u_{s+k−1}, whose span is the trajectory-prefix
basis P_k at θ_s (geometry.prefix, the recovery protocol's own definition). It then sets the
module back to θ_s, runs geometry.perturbed_loss.probe_point (full space and the rolling, prefix
and random k-subspaces), and restores θ_{s+k}: training continues exactly as it would have.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from loclin.callbacks.base import MeasurementCallback, metric
from loclin.callbacks.gradient_stream import GradientStream
from loclin.callbacks.keys import RANDOM_SEARCH_POINTS
from loclin.callbacks.parameter_vector import ParameterVector, parameter_groups
from loclin.geometry.perturbed_loss import HOLDS_TOLERANCE, PerturbedLoss, holds_up_to, probe_point
from loclin.geometry.prefix import nested_prefix_basis
from loclin.geometry.static_bases import random_basis


class RandomSearchCallback(MeasurementCallback):
    module_needs = ("logits", "answer_loss")
    data_needs = ("train_task_names", "probe_batch", "heldout_batch")

    state_key = "RandomSearch"

    def __init__(
        self,
        cfg,
        k: int,
        seed: int,
        stream: GradientStream | None = None,
    ):
        self.cfg, self.k, self.seed = cfg, k, seed
        self.stream = stream
        self.delay = k if "prefix" in cfg.subspaces else 0
        self.at_steps = {int(s) for s in cfg.at_steps}
        self.pending: dict[int, dict] = {}  # s -> θ_s and B_s, waiting for k updates
        self.points: list[dict] = []

    @property
    def rolling(self):
        """The stream's rolling gradient basis (geometry.rolling.RollingBasis), when it keeps one."""
        return self.stream.bases.get("grad") if self.stream is not None else None

    def memory_bytes(self) -> int:
        return sum(t.numel() * 4 for p in self.pending.values() for t in p.values() if isinstance(t, torch.Tensor))

    def _vector(self, pl_module: L.LightningModule) -> ParameterVector:
        return self.stream.vector if self.stream is not None else ParameterVector(parameter_groups(pl_module))

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        if self.stream is not None:
            self.stream.advance(trainer)  # the window and the basis first, whatever the callback order
        step = trainer.global_step
        if self.stream is not None and (step in self.at_steps or any(step >= s + self.delay for s in self.pending)):
            self.stream.wait(trainer)  # it reads the basis and the update window
        if step in self.at_steps and step not in self.pending and all(p["step"] != step for p in self.points):
            vector = self._vector(pl_module)
            rolling = self.rolling.current_basis if self.rolling is not None else None
            self.pending[step] = {"theta": vector.values(), "rolling": None if rolling is None else rolling.clone()}
        for start in [s for s in self.pending if step >= s + self.delay]:
            self._probe(trainer, pl_module, start, self.pending.pop(start))

    def _bases(self, start: int, saved: dict, dim: int) -> dict[str, torch.Tensor]:
        bases = {}
        for name in self.cfg.subspaces:
            if name == "rolling" and saved["rolling"] is not None:
                bases[name] = saved["rolling"][:, : self.k]
            elif name == "prefix":
                window = self.stream.windows["update"]
                steps = window.steps.tolist()
                in_time_order = sorted((s, slot) for slot, s in enumerate(steps) if 0 <= s - start < self.k)
                prefix = nested_prefix_basis(window.rows[[slot for _, slot in in_time_order]])
                bases[name] = prefix[:, prefix.norm(dim=0) > 0].float()  # a dependent u_i is a zero column
            elif name == "random":
                bases[name] = random_basis(dim, self.k, self.seed + start)
        return bases

    def _probe(self, trainer: L.Trainer, pl_module: L.LightningModule, start: int, saved: dict) -> None:
        datamodule = trainer.datamodule
        vector = self._vector(pl_module)
        current, was_training = vector.values(), pl_module.training
        rank_zero_info(
            f"[loclin] random search at step {start}: {len(self.cfg.sigma_multiples)} σ × {self.cfg.samples} "
            f"perturbations of D={vector.dim:,}"
        )
        tasks = datamodule.train_task_names
        rows = self.cfg.batch_size // len(tasks)
        fixed_batches = [datamodule.probe_batch(task, (7_000_003, start), rows) for task in tasks]
        heldout_batches = [
            {key: value[:rows] for key, value in datamodule.heldout_batch(task).items()} for task in tasks
        ]
        try:
            vector.load_values(saved["theta"])
            pl_module.eval()
            fixed = PerturbedLoss(
                pl_module, vector.names, fixed_batches, chunk=self.cfg.chunk, vectorize=self.cfg.vectorize
            )
            heldout = PerturbedLoss(
                pl_module, vector.names, heldout_batches, chunk=self.cfg.chunk, vectorize=self.cfg.vectorize
            )
            result = probe_point(fixed, heldout, self._bases(start, saved, vector.dim), self.cfg, self.seed + start)
        finally:
            vector.load_values(current)
            pl_module.train(was_training)
        result["step"] = start
        self.points.append(result)
        row = result["fixed"][0]
        table = headline_metrics(result, self.cfg)
        headlines = {name.replace(".", "/"): entry["value"] for name, entry in table.items()}
        self.log_scalars(
            trainer,
            {
                "random_search/p_improve_small_sigma": row["p_improve"],
                "random_search/sigma_linear": result["sigma_linear"],
                "random_search/trace_h": result["trace_h"],
                **headlines,  # the report table's numbers, at the step they were measured
            },
            start,
        )

    def summary(self) -> dict:
        if not self.points:
            return {}
        last = self.points[-1]
        metrics = headline_metrics(last, self.cfg)
        return {"metrics": metrics, "curves": {RANDOM_SEARCH_POINTS: self.points}}

    def state_dict(self) -> dict:
        return {"pending": self.pending, "points": self.points}

    def load_state_dict(self, state_dict: dict) -> None:
        self.pending, self.points = state_dict["pending"], state_dict["points"]


def headline_metrics(point: dict, cfg) -> dict:
    """The numbers of the report's table at one probe point."""
    n_star, small = point["sigma_star"]["n"], point["fixed"][0]
    metrics = {
        "random_search.grad_norm": metric(point["grad_norm"], "‖g‖ of the fixed-batch loss at θ_s"),
        "random_search.trace_h": metric(
            point["trace_h"],
            f"tr H, Hutchinson ({cfg.hutchinson_samples} Rademacher probes), ± {point['trace_h_se']:.3g}",
        ),
        "random_search.sigma_linear": metric(point["sigma_linear"], "σ_lin = ‖g‖ / max(|tr H|, ‖H‖_F)"),
        "random_search.p_improve.smallest_sigma": metric(
            small["p_improve"],
            f"P(ΔL < 0) at σ = {cfg.sigma_multiples[0]} σ_lin (theory: {small['pred_p_improve']:.3f})",
            0.5,
        ),
        f"random_search.best{n_star}_over_linear.smallest_sigma": metric(
            small[f"best{n_star}"] / small[f"linear_best{n_star}"],
            f"measured best-of-{n_star} ΔL / (−m_N σ‖g‖) at σ = {cfg.sigma_multiples[0]} σ_lin (theory ≈ 1, any D)",
            1.0,
        ),
        "random_search.sigma_star.measured_over_predicted": metric(
            point["sigma_star"]["measured"] / point["sigma_star"]["pred"],
            f"σ* measured (best of {n_star} on the σ grid, parabola in log σ) / m_N‖g‖/tr H",
            1.0,
        ),
        "random_search.holds_up_to_sigma_over_linear": metric(
            holds_up_to(point),
            f"largest σ/σ_lin of the grid up to which best-of-{n_star} is predicted within {HOLDS_TOLERANCE:.0%}",
        ),
        "random_search.sigma_star_numeric.measured_over_predicted": metric(
            point["sigma_star"]["measured"] / point["sigma_star"]["pred_numeric"],
            "σ* measured / the minimiser of Theorem B with the ‖H‖_F term",
            1.0,
        ),
        "random_search.es_cosine.measured": metric(
            point["es"]["cos"], f"cos(ĝ_ES, g), N={point['es']['n']}", point["es"]["pred_cos"]
        ),
    }
    for name, row in point["subspaces"].items():
        metrics[f"random_search.subspace.{name}.rho_over_full"] = metric(
            row["rho"] / row["rho_full"],
            f"signal density ρ(U)/ρ(full) of the {name} space (k={row['k']}); > 1 predicts U beats the full space",
        )
        metrics[f"random_search.subspace.{name}.best{n_star}"] = metric(
            row["measured_gain"],
            f"best-of-{n_star} ΔL in the {name} space at its best σ on the grid (predicted −G*_U = "
            f"{row['pred_gain']:.3g})",
        )
    return metrics
