"""Stop a run whose training has diverged, instead of measuring NaNs.

A step is bad when its training loss is NaN or ±inf, or when any of its gradients is (one
float32 sum per parameter tensor, redone in float64 only when not finite). Both decisions are
reduced over ranks, so every rank stops at the same step. The guard raises :class:`Diverged` when

- the loss was non-finite for ``patience`` consecutive steps, or
- at least ``share`` of the last ``patience`` steps had a non-finite gradient.

The runner writes a summary that says so and ``train.py`` exits 1 with one line naming the
step. One poisoned step is not divergence: every measurement skips non-finite vectors, and
training goes on while the loss recovers. Under fp16 mixed precision the gradient scaler
skips steps whose gradients overflow by design, so only the loss counts there.
"""

from __future__ import annotations

import math
from collections import deque

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from loclin.geometry.subspace import all_finite


class Diverged(RuntimeError):
    """Training diverged: ``step`` is the phase step at which the guard stopped it, ``first`` the
    first bad step of the stretch that stopped it."""

    def __init__(self, message: str, step: int, patience: int, first: int):
        super().__init__(message)
        self.step = step
        self.patience = patience
        self.first = first


def gradients_finite(module: torch.nn.Module) -> bool:
    """Whether every ``.grad`` of the module is finite (geometry.subspace.all_finite)."""
    return all_finite([p.grad for p in module.parameters() if p.grad is not None])


class DivergenceGuard(Callback):
    def __init__(self, patience: int, share: float = 0.5, check_gradients: bool = True):
        if patience < 1 or not 0 < share <= 1:
            raise ValueError(f"divergence guard: patience={patience} must be >= 1 and share={share} in (0, 1]")
        self.patience = patience
        self.share = share
        self.check_gradients = check_gradients
        self.nonfinite_run = 0  # consecutive steps with a non-finite loss so far
        self.bad_gradients: deque[int] = deque(maxlen=patience)  # 1 per recent step with a non-finite gradient
        self._gradient_bad = False

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if self.check_gradients:
            self._gradient_bad = trainer.strategy.reduce_boolean_decision(not gradients_finite(pl_module), all=False)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        local = loss is not None and not math.isfinite(float(loss.detach()))
        self.nonfinite_run = self.nonfinite_run + 1 if trainer.strategy.reduce_boolean_decision(local, all=False) else 0
        self.bad_gradients.append(int(self._gradient_bad))
        self._gradient_bad = False
        step = trainer.global_step
        if self.nonfinite_run >= self.patience:
            first = step - self.nonfinite_run
            raise Diverged(
                f"training diverged: the loss was not finite for {self.patience} steps in a row "
                f"from phase step {first}",
                step,
                self.patience,
                first,
            )
        bad = sum(self.bad_gradients)
        if bad >= self.share * self.patience:
            first = step - len(self.bad_gradients) + list(self.bad_gradients).index(1)
            raise Diverged(
                f"training diverged: {bad} of the last {self.patience} steps had non-finite gradients "
                f"(trainer.divergence_share={self.share:g}), the first at phase step {first}",
                step,
                self.patience,
                first,
            )

    def state_dict(self) -> dict:
        return {"nonfinite_run": self.nonfinite_run, "bad_gradients": list(self.bad_gradients)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.nonfinite_run = state_dict.get("nonfinite_run", 0)
        self.bad_gradients = deque(state_dict.get("bad_gradients", []), maxlen=self.patience)
