"""The gradient stream: per-step gradients g_t and updates u_t = θ_{t+1} − θ_t in bounded windows,
with the rolling top-k bases of those windows (geometry.rolling).

g_t is read before the optimizer step (after backward and, under DDP, after the all-reduce; before
gradient clipping). u_t is θ after the optimizer step minus θ before it, so it includes Adam's
preconditioning, momentum and weight decay. Step t is the number of optimizer steps taken before g_t
was computed. Non-finite vectors are counted and skipped, so one NaN never poisons a basis.

One stream is built per run and handed to every callback that reads it (the window, rolling-basis,
drift, per-task and random-search callbacks). Whichever of them reaches the end of a step first calls
``advance``; it commits u_t and moves every rolling basis on, once per step, so the order of the
callback list cannot change a number, and no callback reads another callback.

With ``shard_windows`` under data parallelism each rank keeps only its share of the coordinates
(``ParameterVector.split``): window memory per rank W·D/n instead of W·D, and the geometry reduces
W×W Grams and k-sized projections across ranks (geometry.sharded). Checkpoints hold whole vectors,
gathered from the ranks, so a checkpoint does not depend on how the windows were split.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from loclin.callbacks.base import log_measurements
from loclin.callbacks.parameter_vector import GroupSpec, ParameterVector, SketchedParameterVector, parameter_groups
from loclin.geometry.rolling import RollingBasis
from loclin.geometry.subspace import all_finite
from loclin.geometry.window import StreamingWindow, VectorWindow

SOURCES = ("grad", "update")


class GradientStream:
    def __init__(
        self,
        window: int,
        sources: Sequence[str] = SOURCES,
        groups: Sequence[str] | None = None,
        sketch_dim: int | None = None,
        seed: int = 0,
        shard_windows: bool = False,
        group_spec: GroupSpec = None,
    ):
        unknown = set(sources) - set(SOURCES)
        if unknown:
            raise ValueError(f"unknown window source(s) {sorted(unknown)}; expected some of {SOURCES}")
        self.capacity = window
        self.sources = tuple(sources)
        self.groups = list(groups) if groups else None
        self.sketch_dim, self.seed = sketch_dim, seed
        self.shard_windows = shard_windows
        self.group_spec = group_spec  # how the module's parameters form groups (callbacks.parameter_vector)
        self.vector: ParameterVector | None = None
        self.windows: dict[str, VectorWindow] = {}
        self.bases: dict[str, RollingBasis] = {}
        self.nonfinite = {s: 0 for s in self.sources}
        self.latest_step: dict[str, int] = {s: -1 for s in self.sources}
        self._pending_state: dict | None = None
        self._advanced: tuple[int, int] | None = None  # (trainer, step) of the last advance

    def add_basis(self, source: str, k: int, stride: int, heldout_lags: tuple[int, ...]) -> RollingBasis:
        """The rolling basis of ``source``'s window, kept up to date by ``advance``."""
        if source not in self.sources:
            raise ValueError(f"a rolling basis of '{source}' needs that window; the stream holds {self.sources}")
        self.bases[source] = RollingBasis(source, k=k, stride=stride, heldout_lags=heldout_lags)
        return self.bases[source]

    @property
    def dim(self) -> int:
        """Dimension the window geometry lives in: D, or the sketch's m (whole, also when sharded)."""
        return self.vector.shard.dim

    @property
    def local_dim(self) -> int:
        """Coordinates this rank holds (``dim`` unless the windows are sharded)."""
        return self.vector.dim

    @property
    def input_dim(self) -> int:
        """D, the number of measured parameters (the window holds ``dim`` = m < D when sketched)."""
        return getattr(self.vector, "input_dim", self.dim)

    @property
    def shard(self):
        """Where this rank's coordinates sit (geometry.sharded.CoordinateShard), with the reduction."""
        return self.vector.shard

    def latest(self, source: str) -> torch.Tensor:
        """The vector committed most recently for ``source`` (a view; valid until the next push)."""
        window = self.windows[source]
        return window.rows[(window.count - 1) % window.capacity]

    def memory_bytes(self) -> int:
        return sum(w.nbytes for w in self.windows.values()) + getattr(self.vector, "nbytes", 0)

    def attach(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Build the parameter vector and the windows once, for the module's trainable parameters."""
        if self.vector is not None:
            return
        self.vector = ParameterVector(parameter_groups(pl_module, self.group_spec), self.groups)
        detail = ""
        if self.sketch_dim:
            self.vector = SketchedParameterVector(self.vector, self.sketch_dim, self.seed)
            detail = f", CountSketch to m={self.vector.dim:,} ({self.vector.nbytes / 2**20:.1f} MiB of hashes)"
        if self.shard_windows and trainer.world_size > 1:
            self.vector = self.vector.split(trainer.global_rank, trainer.world_size)
            detail = f", sharded over {trainer.world_size} ranks (rank 0 holds {self.vector.dim:,})"
        self.windows = {s: self._window(s) for s in self.sources}
        for source, basis in self.bases.items():
            basis.window = self.windows[source]
        if self._pending_state is not None:
            self._apply_state(self._pending_state)
        rank_zero_info(
            f"[loclin] measuring D={self.input_dim:,} parameters in {len(self.vector.slices)} groups{detail}; "
            f"windows {'+'.join(self.sources)} of W={self.capacity}: {self.memory_bytes() / 2**20:.1f} MiB"
        )

    def _window(self, source: str) -> VectorWindow:
        """A StreamingWindow (a Gram row per commit, keeping the rows its held-out lags need) for a
        basis refreshed at every step; otherwise Gram rows at the refreshes."""
        basis = self.bases.get(source)
        if basis is not None and basis.streaming:
            return StreamingWindow(
                self.vector.dim, self.capacity, self.vector.slices, self.shard.reduce, retain=basis.horizon
            )
        return VectorWindow(self.vector.dim, self.capacity, self.vector.slices, self.shard.reduce)

    def _commit(self, source: str, step: int) -> None:
        window = self.windows[source]
        if all_finite([window.next_slot()], self.shard.reduce):
            window.commit(step)
            self.latest_step[source] = step
        else:
            window.discard()
            self.nonfinite[source] += 1
            rank_zero_warn(
                f"[loclin] non-finite {source} at step {step} skipped by the geometry ({self.nonfinite[source]} so far)"
            )

    def before_optimizer_step(self, trainer: L.Trainer, grads_in_slot: bool = False) -> None:
        """g_t into the gradient window; θ_t into the update slot, which ``advance`` turns into u_t.
        ``grads_in_slot``: g_t is already in the gradient window's next slot, copied there as backward
        made it (``ParameterVector.copy_grads_as_accumulated``, the Hugging Face path)."""
        step = trainer.global_step
        if "grad" in self.windows:
            if not grads_in_slot:
                self.vector.write_grads(self.windows["grad"].next_slot())
            self._commit("grad", step)
        if "update" in self.windows:
            self.vector.write_values(self.windows["update"].next_slot())

    def advance(self, trainer: L.Trainer) -> None:
        """After the optimizer step, once per step: u_t = θ_{t+1} − θ_t into the update window, then
        every rolling basis takes in its window's newest vector (and logs at a refresh)."""
        if self._advanced == (id(trainer), trainer.global_step):
            return
        self._advanced = (id(trainer), trainer.global_step)
        if "update" in self.windows:
            self.vector.subtract_from_values(self.windows["update"].next_slot())
            self._commit("update", trainer.global_step - 1)
        for source, basis in self.bases.items():
            step = self.latest_step[source]
            log_measurements(trainer, basis.observe(self.windows[source], step), step)

    def state_dict(self) -> dict:
        """The windows (whole vectors) and counters; each rolling basis is saved by its own callback."""
        windows = {s: w.state_dict() for s, w in self.windows.items()}
        for state in windows.values():
            for key in ("rows", "retired"):
                if key in state:
                    state[key] = self.shard.gather(state[key], 1)
        return {"windows": windows, "nonfinite": dict(self.nonfinite), "latest_step": dict(self.latest_step)}

    def load_state_dict(self, state: dict) -> None:
        if self.vector is None:
            self._pending_state = state
        else:
            self._apply_state(state)

    def _apply_state(self, state: dict) -> None:
        for source, window_state in state["windows"].items():
            local = {key: self.shard.local(window_state[key], 1) for key in ("rows", "retired") if key in window_state}
            self.windows[source].load_state_dict({**window_state, **local})
        self.nonfinite.update(state["nonfinite"])
        self.latest_step.update(state["latest_step"])
        self._pending_state = None
