"""Rolling top-k basis of a gradient (or update) window, its spectrum and held-out capture.

Every ``stride`` steps, once the window is full, B_t = top-k left singular vectors of
[v_{t−W+1} … v_t] (SCIENCE.md 1). Each B_t then captures later vectors, which were not in
its window: cap(B_t, v_{t+h}) for h in ``heldout_lags`` (default 1, 2, 4, 8), against k/D
(SCIENCE.md 3). Those captures are computed at the next refresh, in one product with the
window rows that arrived since (all still in the window because stride <= W), so a step
between refreshes costs nothing here.
"""

from __future__ import annotations

import lightning as L
import torch

from callbacks.base import Averages, MeasurementCallback, metric
from callbacks.gradient_window import GradientWindowCallback
from geometry import capture_rows, random_capture_baseline, spectrum_summary

SPECTRUM_NAMES = ("energy_topk", "effective_rank", "participation_ratio")


class RollingBasisCallback(MeasurementCallback):
    def __init__(
        self,
        window: GradientWindowCallback,
        source: str = "grad",
        k: int = 8,
        stride: int = 10,
        heldout_lags: tuple[int, ...] = (1, 2, 4, 8),
    ):
        self.window = window
        self.source = source
        self.k = k
        self.stride = stride
        self.heldout_lags = tuple(sorted(heldout_lags))
        self.horizon = self.heldout_lags[-1]
        self.current_step = -1
        self.current_basis: torch.Tensor | None = None
        self.pending: list[tuple[int, torch.Tensor]] = []  # bases still capturing future vectors
        self.averages = Averages()
        self.energy_fraction_sum: torch.Tensor | None = None
        self.refreshes = 0
        self._last_seen = -1

    @property
    def state_key(self) -> str:
        return f"RollingBasis[{self.source}]"

    @property
    def prefix(self) -> str:
        return f"geometry/{self.source}"

    def memory_bytes(self) -> int:
        """Upper bound: the current basis plus those still waiting for held-out vectors."""
        waiting = -(-self.horizon // self.stride) + 1
        return (waiting + 1) * self.window.local_dim * self.k * 4

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        self.advance(trainer)

    def advance(self, trainer: L.Trainer) -> None:
        """Take in what entered the window at this step, once: the drift and random-search
        callbacks call this before they read the basis, so the callback order cannot matter."""
        self.window.commit_update(trainer)
        step = self.window.latest_step[self.source]
        if step == self._last_seen:
            return  # nothing new entered the window (non-finite vector skipped)
        self._last_seen = step
        window = self.window.windows[self.source]
        if window.size < window.capacity or step % self.stride:
            return
        logs = self._heldout_captures(step, window)
        logs.update(self._refresh(step, window))
        self.log_scalars(trainer, logs, step)

    def _heldout_captures(self, step: int, window) -> dict[str, float]:
        """Captures cap(B_s, v_(s+h)) for every v that entered the window since the last refresh."""
        logs = {}
        slot_steps = window.steps.tolist()
        for basis_step, basis in self.pending:
            lag_of = {basis_step + h: h for h in self.heldout_lags if self.current_step < basis_step + h <= step}
            slots = [slot for slot, s in enumerate(slot_steps) if s in lag_of]
            if not slots:
                continue
            for slot, value in zip(slots, capture_rows(basis, window.rows[slots], window.reduce).tolist()):
                h = lag_of[slot_steps[slot]]
                self.averages.add(f"heldout_h{h}", value)
                logs[f"{self.prefix}/heldout_capture_h{h}"] = value
        self.pending = [(s, b) for s, b in self.pending if s + self.horizon > step]
        return logs

    def _refresh(self, step: int, window) -> dict[str, float]:
        basis, singular_values = window.basis(self.k)
        self.current_step, self.current_basis = step, basis
        self.pending.append((step, basis))
        self.refreshes += 1
        fractions = singular_values**2 / (singular_values**2).sum()
        self.energy_fraction_sum = (
            fractions if self.energy_fraction_sum is None else self.energy_fraction_sum + fractions
        )
        logs = {}
        for name, value in spectrum_summary(singular_values, self.k).items():
            self.averages.add(name, value)
            logs[f"{self.prefix}/{name}"] = value
        if len(window.group_slices) > 1:
            for group in window.group_slices:
                energy = spectrum_summary(window.singular_values(group), self.k)["energy_topk"]
                self.averages.add(f"energy_topk/{group}", energy)
                logs[f"{self.prefix}/energy_topk/{group}"] = energy
        return logs

    def figures(self) -> dict:
        from callbacks.figures import heldout_figure, spectrum_figure

        curves = self.summary().get("curves", {})
        figures = {}
        if f"{self.source}.spectrum" in curves:
            fractions = curves[f"{self.source}.spectrum"]["mean_energy_fraction"]
            figures[f"{self.prefix}/spectrum"] = spectrum_figure({self.source: fractions}, self.k)
        heldout = curves.get(f"{self.source}.heldout")
        if heldout and heldout["h"]:
            baseline = random_capture_baseline(self.k, self.window.dim)
            figures[f"{self.prefix}/heldout_capture"] = heldout_figure(
                {self.source: (heldout["h"], heldout["capture"])}, baseline
            )
        return figures

    def summary(self) -> dict:
        if self.refreshes == 0:
            return {}
        src, k, dim = self.source, self.k, self.window.dim
        window_size = self.window.capacity
        h_values = [h for h in self.heldout_lags if self.averages.count(f"heldout_h{h}")]
        heldout = [self.averages.mean(f"heldout_h{h}") for h in h_values]
        metrics = {
            f"{src}.energy_topk": metric(
                self.averages.mean("energy_topk"), "energy_topk (SCIENCE.md 1), mean over refreshes", k / window_size
            ),
            f"{src}.effective_rank": metric(
                self.averages.mean("effective_rank"),
                "effective_rank (SCIENCE.md 1), mean over refreshes",
                float(window_size),
            ),
            f"{src}.participation_ratio": metric(
                self.averages.mean("participation_ratio"),
                "participation_ratio (SCIENCE.md 1), mean over refreshes",
                float(window_size),
            ),
        }
        if heldout:
            baseline = random_capture_baseline(k, dim)
            for h, value in zip(h_values, heldout):
                metrics[f"{src}.heldout_capture_h{h}"] = metric(
                    value, f"heldout_capture (SCIENCE.md 3) cap(B_t, v_(t+{h})), energy", baseline
                )
        for group in self.window.windows[src].group_slices:
            if self.averages.count(f"energy_topk/{group}"):
                metrics[f"{src}.energy_topk/{group}"] = metric(
                    self.averages.mean(f"energy_topk/{group}"),
                    "energy_topk (SCIENCE.md 1) of the group's slice of the window",
                    k / window_size,
                )
        return {
            "metrics": metrics,
            "curves": {
                f"{src}.heldout": {"h": h_values, "capture": heldout},
                f"{src}.spectrum": {"mean_energy_fraction": (self.energy_fraction_sum / self.refreshes).tolist()},
            },
        }

    def state_dict(self) -> dict:
        """Bases are stored whole (gathered from the ranks when the windows are sharded)."""
        whole = self.window.shard.gather
        return {
            "current_step": self.current_step,
            "current_basis": whole(self.current_basis, 0),
            "pending": [(step, whole(basis, 0)) for step, basis in self.pending],
            "averages": self.averages.state_dict(),
            "energy_fraction_sum": self.energy_fraction_sum,
            "refreshes": self.refreshes,
            "last_seen": self._last_seen,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self.current_step = state_dict["current_step"]
        local = self.window.shard.local
        self.current_basis = local(state_dict["current_basis"], 0)
        self.pending = [(step, local(basis, 0)) for step, basis in state_dict["pending"]]
        self.averages.load_state_dict(state_dict["averages"])
        self.energy_fraction_sum = state_dict["energy_fraction_sum"]
        self.refreshes = state_dict["refreshes"]
        self._last_seen = state_dict["last_seen"]
