"""Stop a run whose training has diverged, instead of measuring NaNs.

A step is non-finite when its training loss is NaN or ±inf on any rank (the decision is reduced
over ranks, so every rank stops at the same step). After ``patience`` consecutive non-finite
steps the guard raises :class:`Diverged`; the runner writes a summary that says so and
``train.py`` exits 1 with one line. One poisoned step is not divergence: the geometry skips
non-finite vectors, and training goes on while the loss recovers.
"""

from __future__ import annotations

import math

import lightning as L
from lightning.pytorch.callbacks import Callback


class Diverged(RuntimeError):
    """Training diverged: ``step`` is the phase's step at which the guard stopped it."""

    def __init__(self, step: int, patience: int, first: int):
        super().__init__(
            f"training diverged: the loss was not finite from step {first} of the phase on ({patience} steps in a row)"
        )
        self.step = step
        self.patience = patience
        self.first = first


class DivergenceGuard(Callback):
    def __init__(self, patience: int):
        self.patience = patience
        self.nonfinite_run = 0  # consecutive non-finite steps so far

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        local = loss is not None and not math.isfinite(float(loss.detach()))
        if trainer.strategy.reduce_boolean_decision(local, all=False):
            self.nonfinite_run += 1
        else:
            self.nonfinite_run = 0
        if self.nonfinite_run >= self.patience:
            raise Diverged(trainer.global_step, self.patience, trainer.global_step - self.nonfinite_run)

    def state_dict(self) -> dict:
        return {"nonfinite_run": self.nonfinite_run}

    def load_state_dict(self, state_dict: dict) -> None:
        self.nonfinite_run = state_dict.get("nonfinite_run", 0)
