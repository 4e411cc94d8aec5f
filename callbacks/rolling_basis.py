"""Reports the rolling top-k basis of one window of the gradient stream (geometry.rolling): the
spectrum and held-out capture cap(B_t, v_(t+h)) against k/D (docs/science.md 1, 3), as summary metrics,
curves and TensorBoard figures. The stream computes and logs them as the steps arrive; this callback
only reads the basis it registered and checkpoints it."""

from __future__ import annotations

import lightning as L
from loclin.callbacks.base import MeasurementCallback, metric
from loclin.callbacks.gradient_stream import GradientStream
from loclin.geometry.capture import random_capture_baseline

SPECTRUM_NAMES = ("energy_topk", "effective_rank", "participation_ratio")


class RollingBasisCallback(MeasurementCallback):
    def __init__(
        self,
        stream: GradientStream,
        source: str = "grad",
        k: int = 8,
        stride: int = 10,
        heldout_lags: tuple[int, ...] = (1, 2, 4, 8),
    ):
        self.stream = stream
        self.source = source
        self.basis = stream.add_basis(source, k, stride, tuple(heldout_lags))

    @property
    def state_key(self) -> str:
        return f"RollingBasis[{self.source}]"

    @property
    def prefix(self) -> str:
        return self.basis.prefix

    def memory_bytes(self) -> int:
        return self.basis.memory_bytes(self.stream.local_dim)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        self.stream.advance(trainer)

    def figures(self) -> dict:
        from loclin.callbacks.figures import heldout_figure, spectrum_figure

        curves = self.summary().get("curves", {})
        figures = {}
        if f"{self.source}.spectrum" in curves:
            fractions = curves[f"{self.source}.spectrum"]["mean_energy_fraction"]
            figures[f"{self.prefix}/spectrum"] = spectrum_figure({self.source: fractions}, self.basis.k)
        heldout = curves.get(f"{self.source}.heldout")
        if heldout and heldout["h"]:
            baseline = random_capture_baseline(self.basis.k, self.stream.dim)
            figures[f"{self.prefix}/heldout_capture"] = heldout_figure(
                {self.source: (heldout["h"], heldout["capture"])}, baseline
            )
        return figures

    def summary(self) -> dict:
        self.stream.wait()
        basis, averages = self.basis, self.basis.averages
        if basis.refreshes == 0:
            return {}
        src, k, dim = self.source, basis.k, self.stream.dim
        window_size = self.stream.capacity
        h_values = [h for h in basis.heldout_lags if averages.count(f"heldout_h{h}")]
        heldout = [averages.mean(f"heldout_h{h}") for h in h_values]
        metrics = {
            f"{src}.energy_topk": metric(
                averages.mean("energy_topk"), "energy_topk (docs/science.md 1), mean over refreshes", k / window_size
            ),
            f"{src}.effective_rank": metric(
                averages.mean("effective_rank"),
                "effective_rank (docs/science.md 1), mean over refreshes",
                float(window_size),
            ),
            f"{src}.participation_ratio": metric(
                averages.mean("participation_ratio"),
                "participation_ratio (docs/science.md 1), mean over refreshes",
                float(window_size),
            ),
        }
        if heldout:
            baseline = random_capture_baseline(k, dim)
            for h, value in zip(h_values, heldout):
                metrics[f"{src}.heldout_capture_h{h}"] = metric(
                    value, f"heldout_capture (docs/science.md 3) cap(B_t, v_(t+{h})), energy", baseline
                )
        for group in self.stream.windows[src].group_slices:
            if averages.count(f"energy_topk/{group}"):
                metrics[f"{src}.energy_topk/{group}"] = metric(
                    averages.mean(f"energy_topk/{group}"),
                    "energy_topk (docs/science.md 1) of the group's slice of the window",
                    k / window_size,
                )
        return {
            "metrics": metrics,
            "curves": {
                f"{src}.heldout": {"h": h_values, "capture": heldout},
                f"{src}.spectrum": {"mean_energy_fraction": (basis.energy_fraction_sum / basis.refreshes).tolist()},
            },
        }

    def state_dict(self) -> dict:
        self.stream.wait()
        return self.basis.state_dict(self.stream.shard.gather)

    def load_state_dict(self, state_dict: dict) -> None:
        self.basis.load_state_dict(state_dict, self.stream.shard.local)
