"""How the weight trajectory moves the activations relative to a steering vector (docs/science.md 9).

At the start of training, on fixed contrast items (x, a⁺, a⁻): the CAA vector
v_ℓ = mean h_ℓ(x ⊕ a⁺)[t] − h_ℓ(x ⊕ a⁻)[t] per block. Every ``stride`` steps: the mean
h_ℓ(x ⊕ a⁺)[t] at the current θ, its shift since the previous measurement Δh_ℓ and since the
start, and cos(Δh_ℓ, v_ℓ) per block (random baseline: RMS 1/sqrt(d)). Logged as
``activation/cos_shift_caa/block{ℓ}``, ``activation/cos_shift_caa_mean`` and
``activation/cos_total_shift_caa_mean``. Cost per measurement: one forward pass of the items.
"""

from __future__ import annotations

import lightning as L
import torch
from loclin.callbacks.base import MeasurementCallback, metric
from loclin.datamodules.contrast import contrast_chunks
from loclin.geometry.steering import cosine_per_layer, mean_difference
from loclin.lightning_modules.activations import answer_residuals


class ActivationShiftCallback(MeasurementCallback):
    module_needs = ("language_model",)
    data_needs = ()

    def __init__(self, probe: dict[str, torch.Tensor], stride: int = 50, batch_size: int = 8):
        self.probe = probe  # encode_contrasts(...) of the fixed items
        self.stride = stride
        self.batch_size = batch_size
        self.caa: torch.Tensor | None = None
        self.first: torch.Tensor | None = None
        self.previous: torch.Tensor | None = None
        self.history: dict[str, list] = {"step": [], "cos_shift": [], "cos_total": []}

    @property
    def state_key(self) -> str:
        return "ActivationShift"

    @torch.no_grad()
    def _mean_residual(self, model, ids_key: str) -> torch.Tensor:
        parts = [answer_residuals(model, model, part, ids_key) for part in contrast_chunks(self.probe, self.batch_size)]
        return torch.cat(parts, 1).double()  # L × N × d

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.caa is not None:  # resumed
            return
        model = pl_module.language_model()
        positive = self._mean_residual(model, "positive")
        self.caa = mean_difference(positive, self._mean_residual(model, "negative"))
        self.first = self.previous = positive.mean(1)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step % self.stride:
            return
        now = self._mean_residual(pl_module.language_model(), "positive").mean(1)
        cos_shift = cosine_per_layer(now - self.previous, self.caa)
        cos_total = cosine_per_layer(now - self.first, self.caa)
        self.previous = now
        self.history["step"].append(step)
        self.history["cos_shift"].append(cos_shift.tolist())
        self.history["cos_total"].append(cos_total.tolist())
        scalars = {f"activation/cos_shift_caa/block{i}": float(c) for i, c in enumerate(cos_shift)}
        scalars["activation/cos_shift_caa_mean"] = float(cos_shift.mean())
        scalars["activation/cos_total_shift_caa_mean"] = float(cos_total.mean())
        self.log_scalars(trainer, scalars, step)

    def memory_bytes(self) -> int:
        return 0 if self.caa is None else 3 * self.caa.numel() * 8

    def summary(self) -> dict:
        if not self.history["step"]:
            return {}
        shifts = torch.tensor(self.history["cos_shift"])
        final = torch.tensor(self.history["cos_total"][-1])
        dim = self.caa.shape[1]
        return {
            "metrics": {
                "activation.cos_shift_caa_mean": metric(
                    float(shifts.mean()),
                    f"mean over blocks and measurements of cos(Δh_ℓ, v_ℓ), Δh over {self.stride} steps",
                    dim**-0.5,
                ),
                "activation.cos_total_shift_caa_max": metric(
                    float(final.max()), "max over blocks of cos(h_ℓ(θ_end) − h_ℓ(θ_start), v_ℓ)", dim**-0.5
                ),
            },
            "curves": {"activation.shift": {**self.history, "random_rms": dim**-0.5}},
        }

    def state_dict(self) -> dict:
        return {"caa": self.caa, "first": self.first, "previous": self.previous, "history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.caa, self.first, self.previous = state_dict["caa"], state_dict["first"], state_dict["previous"]
        self.history = state_dict["history"]
