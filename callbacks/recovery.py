"""Recovery capture (SCIENCE.md 5–7): how much of Δ = θ_R − θ_0 each basis explains.

With ``constrained_m`` > 0 the recovery is also re-run from θ_0 with every step projected
onto θ_0 + span(P_m) ("can the prefix basis alone recover the task?").

During the recover phase this callback keeps θ_0 and the first M updates u_0 … u_{M−1} and
gradients g_0 … g_{M−1} (M = max(prefix_ms); 2·M·D·4 bytes). At the end it forms the prefix
bases P_m = orth(u_0 … u_{m−1}) (and the gradient variant), adds S6 = (θ* − θ_0)/‖·‖ to the
static bases frozen at θ*, and reports for every basis B: cap(B, Δ) (energy) against k/D,
and the function-space check, task-T held-out loss and accuracy at θ_0 + B Bᵀ Δ.

For a LoRA adapter (``effective_layers`` given) the prefix capture is also measured in
effective weight space: the moves e_t = W(θ_{t+1}) − W(θ_t) of W = (α/r) B A against
W(θ_R) − W(θ_0), from their Gram matrix (geometry.lora).
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch

from callbacks.base import MeasurementCallback, metric
from callbacks.parameter_vector import ParameterVector
from geometry import capture, nested_prefix_basis, random_capture_baseline
from geometry.lora import LoraFactors, effective_step_gram
from geometry.prefix import prefix_capture_from_gram
from geometry.static_bases import go_back_direction, project


class RecoveryCallback(MeasurementCallback):
    def __init__(self, vector: ParameterVector, static_bases: dict[str, torch.Tensor], theta_star: torch.Tensor, target: str, prefix_ms: Sequence[int], constrained_m: int = 0, effective_layers: list[LoraFactors] | None = None):
        self.constrained_m = constrained_m
        self.effective_layers = effective_layers or []
        self.vector = vector
        self.static_bases = static_bases
        self.theta_star = theta_star
        self.target = target
        self.prefix_ms = sorted(prefix_ms)
        keep = self.prefix_ms[-1]
        self.updates = torch.zeros(keep, vector.dim)
        self.gradients = torch.zeros(keep, vector.dim)
        self.recorded = 0
        self.theta_zero: torch.Tensor | None = None
        self.results: dict = {}

    @property
    def state_key(self) -> str:
        return "Recovery"

    def memory_bytes(self) -> int:
        return (self.updates.numel() + self.gradients.numel() + 3 * self.vector.dim) * 4

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.theta_zero is None:
            self.theta_zero = self.vector.values()

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if self.recorded < len(self.updates):
            self.vector.write_grads(self.gradients[self.recorded])
            self.vector.write_values(self.updates[self.recorded])  # θ_t; the step makes it u_t

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if self.recorded < len(self.updates):
            self.vector.subtract_from_values(self.updates[self.recorded])
            self.recorded += 1

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        theta_end = self.vector.values()
        delta = theta_end - self.theta_zero
        bases = dict(self.static_bases)
        bases["S6_go_back"] = go_back_direction(self.theta_star, self.theta_zero)
        prefix_u = nested_prefix_basis(self.updates[: self.recorded]).float()
        prefix_g = nested_prefix_basis(self.gradients[: self.recorded]).float()
        for m in self.prefix_ms:
            if m <= self.recorded:
                bases[f"P{m}_updates"] = prefix_u[:, :m]
                bases[f"P{m}_gradients"] = prefix_g[:, :m]
        heldout = {key: value.to(pl_module.device) for key, value in trainer.datamodule.heldout_batch(self.target).items()}
        rows = {}
        for name, basis in bases.items():
            self.vector.load_values(self.theta_zero + project(basis, delta))
            rows[name] = {"capture": capture(basis, delta), "k": int(basis.shape[1]), **pl_module.evaluate_batch(heldout)}
        for name, theta in (("theta_0", self.theta_zero), ("theta_R", theta_end), ("theta_star", self.theta_star)):
            self.vector.load_values(theta)
            rows[name] = pl_module.evaluate_batch(heldout)
        self.results = {"rows": rows, "delta_norm": float(delta.norm()), "go_back_norm": float((self.theta_star - self.theta_zero).norm())}
        if self.effective_layers:
            gram = effective_step_gram(self.theta_zero, self.updates[: self.recorded], theta_end, self.effective_layers)
            self.results["effective"] = prefix_capture_from_gram(gram).tolist()
            self.results["effective_dim"] = sum(f.a_shape[1] * f.b_shape[0] for f in self.effective_layers)
        name = f"P{self.constrained_m}_updates"
        if name in bases:
            rows[f"constrained_{name}"] = self.constrained_recovery(trainer, pl_module, bases[name], heldout)
        self.vector.load_values(theta_end)
        super().on_train_end(trainer, pl_module)

    def constrained_recovery(self, trainer: L.Trainer, pl_module: L.LightningModule, basis: torch.Tensor, heldout: dict) -> dict:
        """Re-run the recovery from θ_0 with every step projected back onto θ_0 + span(basis).

        Same batches, a fresh optimizer and schedule from ``configure_optimizers``; returns T's
        held-out loss/accuracy at the end and the capture of the constrained displacement
        (1 up to round-off, a check on the projection).
        """
        self.vector.load_values(self.theta_zero)
        setup = pl_module.configure_optimizers()
        optimizer, schedule = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
        batches = trainer.datamodule.global_batches()  # whole batches: this loop runs on every rank alike
        with torch.enable_grad():
            for step in range(trainer.global_step):
                batch = {key: value.to(pl_module.device) for key, value in batches[step].items()}
                optimizer.zero_grad(set_to_none=True)
                pl_module.loss(batch).backward()
                optimizer.step()
                schedule.step()
                self.vector.load_values(self.theta_zero + project(basis, self.vector.values() - self.theta_zero))
        optimizer.zero_grad(set_to_none=True)
        moved = self.vector.values() - self.theta_zero
        return {"capture_of_own_displacement": capture(basis, moved), "k": int(basis.shape[1]), **pl_module.evaluate_batch(heldout)}

    def summary(self) -> dict:
        if not self.results:
            return {}
        rows, dim = self.results["rows"], self.vector.dim
        metrics = {}
        for name, row in rows.items():
            if "capture" in row:
                metrics[f"recovery.capture.{name}"] = metric(row["capture"], f"capture (SCIENCE.md 2) cap(B, Δ) of the recovery displacement, energy, k={row['k']}", random_capture_baseline(row["k"], dim))
                metrics[f"recovery.projected_acc.{name}"] = metric(row["acc"], f"task-{self.target} held-out accuracy at θ_0 + P_B Δ (function-space check)")
        for name, row in rows.items():
            if name.startswith("constrained_"):
                metrics[f"recovery.{name}.acc"] = metric(row["acc"], f"task-{self.target} held-out accuracy after re-running the recovery inside θ_0 + span({name[12:]})")
                metrics[f"recovery.{name}.loss"] = metric(row["loss"], f"task-{self.target} held-out loss after re-running the recovery inside θ_0 + span({name[12:]})")
        for point in ("theta_star", "theta_0", "theta_R"):
            metrics[f"recovery.{point}.acc"] = metric(rows[point]["acc"], f"task-{self.target} held-out accuracy at {point}")
            metrics[f"recovery.{point}.loss"] = metric(rows[point]["loss"], f"task-{self.target} held-out loss at {point}")
        curve = {
            "m": [m for m in self.prefix_ms if f"P{m}_updates" in rows],
        }
        curve["updates"] = [rows[f"P{m}_updates"]["capture"] for m in curve["m"]]
        curve["gradients"] = [rows[f"P{m}_gradients"]["capture"] for m in curve["m"]]
        if "effective" in self.results:
            curve["effective_updates"] = [self.results["effective"][m - 1] for m in curve["m"]]
            curve["effective_dim"] = self.results["effective_dim"]
            for m, value in zip(curve["m"], curve["effective_updates"]):
                metrics[f"recovery.capture_effective.P{m}_updates"] = metric(value, f"capture of the effective-weight displacement W(θ_R) − W(θ_0), W = (α/r)BA, by the first {m} effective moves", random_capture_baseline(m, self.results["effective_dim"]))
        return {"metrics": metrics, "curves": {"recovery.table": rows, "recovery.prefix": curve, "recovery.norms": {"delta": self.results["delta_norm"], "go_back": self.results["go_back_norm"]}}}

    def figures(self) -> dict:
        from loclin.plots import prefix_capture_figure

        part = self.summary()
        if not part:
            return {}
        curve = part["curves"]["recovery.prefix"]
        statics = {n: r["capture"] for n, r in part["curves"]["recovery.table"].items() if n.startswith("S")}
        return {"recovery/prefix_capture": prefix_capture_figure({"run": curve}, statics, random_capture_baseline(8, self.vector.dim))}

    def state_dict(self) -> dict:
        return {"updates": self.updates, "gradients": self.gradients, "recorded": self.recorded, "theta_zero": self.theta_zero}

    def load_state_dict(self, state_dict: dict) -> None:
        self.updates = state_dict["updates"]
        self.gradients = state_dict["gradients"]
        self.recorded = state_dict["recorded"]
        self.theta_zero = state_dict["theta_zero"]
