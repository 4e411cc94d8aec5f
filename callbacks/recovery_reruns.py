"""The recovery protocol's re-runs from θ_0 (docs/science.md 7): the recovery held inside
θ_0 + span(P_m), or with span(P_m) projected out of every step (ConstrainedRecovery), and the
first updates of a replica recovery in another data order (ReplicaPrefix)."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from loclin.callbacks.base import MeasurementCallback, metric
from loclin.callbacks.keys import RECOVERY_TABLE
from loclin.callbacks.parameter_vector import ParameterVector
from loclin.callbacks.recovery_shared import (
    heldout_scores,
)
from loclin.geometry.capture import capture, random_capture_baseline
from loclin.geometry.prefix import (
    prefix_capture_curves,
)
from loclin.geometry.static_bases import project


class ConstrainedRecovery(MeasurementCallback):
    """The recovery re-run from θ_0 with every step kept inside θ_0 + span(B), B = P_m of the
    recovery (orthonormal columns), or with span(B) projected out of every step (``outside``):

        inside:   θ ← θ_0 + B Bᵀ (θ − θ_0)          outside:  θ ← θ − B Bᵀ (θ − θ_0)

    after every optimizer step, θ_0 the phase's start (the function-space ablations of C4: a
    subspace the updates align with need not be one that training needs). Task T's held-out
    numbers at each step of ``at_steps`` and at the end, and cap(B, θ − θ_0) (1 inside, 0 outside
    up to round-off: a check on the projection), as the recovery table's row ``name``."""

    module_needs = ("evaluate_batch",)
    data_needs = ("heldout_batch",)

    def __init__(
        self,
        vector: ParameterVector,
        basis: torch.Tensor,
        target: str,
        name: str,
        outside: bool = False,
        at_steps: Sequence[int] = (),
    ):
        self.vector, self.basis, self.target, self.name, self.outside = vector, basis, target, name, outside
        self.at_steps = set(at_steps)
        self.theta_zero: torch.Tensor | None = None
        self.row: dict | None = None
        self.by_length: dict[int, dict] = {}  # T → held-out loss and accuracy after T steps

    @property
    def state_key(self) -> str:
        return "ConstrainedRecovery"

    def memory_bytes(self) -> int:
        return (self.basis.numel() + self.vector.dim) * 4

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.theta_zero is None:
            self.theta_zero = self.vector.values()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        moved = self.vector.values() - self.theta_zero
        inside = project(self.basis, moved)
        self.vector.load_values(self.theta_zero + (moved - inside if self.outside else inside))
        if trainer.global_step in self.at_steps:
            self.by_length[trainer.global_step] = self.evaluate(trainer, pl_module)

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        return heldout_scores(trainer, pl_module, self.target)

    def end_of_phase(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.row = {
            "capture_of_own_displacement": capture(self.basis, self.vector.values() - self.theta_zero),
            "k": int(self.basis.shape[1]),
            **self.evaluate(trainer, pl_module),
        }

    def summary(self) -> dict:
        if self.row is None:
            return {}
        basis = self.name.split("_", 1)[1]
        where = f"with span({basis}) projected out of every step" if self.outside else f"inside θ_0 + span({basis})"
        rerun = f"after re-running the recovery {where}"
        metrics = {
            f"recovery.{self.name}.acc": metric(self.row["acc"], f"task-{self.target} held-out accuracy {rerun}"),
            f"recovery.{self.name}.loss": metric(self.row["loss"], f"task-{self.target} held-out loss {rerun}"),
        }
        for steps, scores in sorted(self.by_length.items()):
            metrics[f"recovery.capture_at_T{steps}.{self.name}_acc"] = metric(
                scores["acc"], f"task-{self.target} held-out accuracy {rerun}, after T = {steps} steps"
            )
        row = {**self.row, "by_length": {str(t): v for t, v in sorted(self.by_length.items())}}
        return {"metrics": metrics, "curves": {RECOVERY_TABLE: {self.name: row}}}

    def state_dict(self) -> dict:
        return {"theta_zero": self.theta_zero, "by_length": self.by_length}

    def load_state_dict(self, state_dict: dict) -> None:
        self.theta_zero = state_dict["theta_zero"]
        self.by_length = dict(state_dict.get("by_length", {}))


class ReplicaPrefix(MeasurementCallback):
    """The replica null of C4: a second recovery from the same θ_0 in another data order, whose
    first M updates give its own prefix bases P_m(replica). Against the recovery's displacements
    Δ_T (``deltas``, T → θ_T − θ_0): cap(P_m(replica), Δ_T) for every m <= M. The replica shares
    no update with Δ_T, so no capture is built in."""

    def __init__(self, vector: ParameterVector, prefix_ms: Sequence[int], deltas: dict[int, torch.Tensor]):
        self.vector, self.prefix_ms, self.deltas = vector, sorted(prefix_ms), deltas
        self.updates: list[torch.Tensor] = []
        self._theta_before: torch.Tensor | None = None
        self.captures: dict[int, list[float]] = {}  # T → cap(P_m(replica), Δ_T) for m in ms

    @property
    def state_key(self) -> str:
        return "ReplicaPrefix"

    def memory_bytes(self) -> int:
        return (self.prefix_ms[-1] + 1 + len(self.deltas)) * self.vector.dim * 4

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        self._theta_before = self.vector.values()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        if self._theta_before is not None:
            self.updates.append(self.vector.values() - self._theta_before)
            self._theta_before = None

    def end_of_phase(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        ms = [m for m in self.prefix_ms if m <= len(self.updates)]
        if not ms:
            return
        lengths = sorted(self.deltas)
        curves = prefix_capture_curves(torch.stack(self.updates[: ms[-1]]), [self.deltas[t] for t in lengths], ms)
        self.captures = {t: list(curve.values()) for t, curve in zip(lengths, curves)}
        self.ms = ms

    def summary(self) -> dict:
        if not self.captures:
            return {}
        metrics = {}
        for steps, captures in self.captures.items():
            for m, value in zip(self.ms, captures):
                if m == 8:
                    metrics[f"recovery.capture_at_T{steps}.P8_replica"] = metric(
                        value,
                        f"null: cap(P_8(replica), Δ_T), the first 8 updates of a recovery from θ_0 in another data "
                        f"order, T = {steps}",
                        random_capture_baseline(8, self.vector.dim),
                    )
        return {"metrics": metrics, "curves": {"recovery.replica": {"m": self.ms, "by_T": self.captures}}}

    def state_dict(self) -> dict:
        return {"updates": self.updates, "theta_before": self._theta_before}

    def load_state_dict(self, state_dict: dict) -> None:
        self.updates = list(state_dict["updates"])
        self._theta_before = state_dict.get("theta_before")
