"""The callback that drives the gradient stream (callbacks.gradient_stream) from Lightning's hooks:
g_t and θ_t before the optimizer step, u_t and the rolling bases after it. It reports the stream's
dimension and its count of skipped non-finite vectors, and checkpoints its windows."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
from loclin.callbacks.base import MeasurementCallback
from loclin.callbacks.gradient_stream import GradientStream

__all__ = ["GradientWindowCallback", "gradient_stream"]


class GradientWindowCallback(MeasurementCallback):
    def __init__(self, stream: GradientStream):
        self.stream = stream

    @property
    def state_key(self) -> str:
        return f"GradientWindow[{','.join(self.stream.sources)}]"

    def memory_bytes(self) -> int:
        return self.stream.memory_bytes()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.stream.attach(trainer, pl_module)

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        self.stream.before_optimizer_step(trainer)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        self.stream.advance(trainer)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.stream.close(trainer)
        super().teardown(trainer, pl_module, stage)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """A failed fit calls no teardown: end the measurement thread here, keeping the fit's error."""
        self.stream.close(raise_error=False)

    def summary(self) -> dict:
        stream = self.stream
        stream.wait()
        result = {"metrics": {}, "counts": {f"nonfinite_{s}": n for s, n in stream.nonfinite.items()}}
        result["dim"] = stream.input_dim
        if stream.sketch_dim:
            result["sketch_dim"] = stream.dim
        return result

    def state_dict(self) -> dict:
        return self.stream.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.stream.load_state_dict(state_dict)


def gradient_stream(callbacks: Sequence) -> GradientStream | None:
    """The one gradient stream among a phase's callbacks (None when its geometry is off)."""
    return next((c.stream for c in callbacks if isinstance(c, GradientWindowCallback)), None)
