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

With ``background`` (trainer.background_measurements) the windows and everything that reads them move to
a second thread (callbacks.measurement_worker): the training thread only copies g_t and θ_t into one of
``STAGED_STEPS`` staging rows per source and forms u_t there; the thread commits them, moves the bases
on and runs the consumers (the drift snapshots), in the order the steps came, with the same bits.
Scalars are logged from the training thread at its next step. Anything that reads a window or a basis
from the training thread calls :meth:`GradientStream.wait` first.

With ``shard_windows`` under data parallelism each rank keeps only its share of the coordinates
(``ParameterVector.split``): window memory per rank W·D/n instead of W·D, and the geometry reduces
W×W Grams and k-sized projections across ranks (geometry.sharded). Checkpoints hold whole vectors,
gathered from the ranks, so a checkpoint does not depend on how the windows were split.
"""

from __future__ import annotations

import os
import queue
from collections.abc import Callable, Sequence

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from loclin.callbacks.base import log_measurements
from loclin.callbacks.measurement_worker import CORES_ENV, MeasurementWorker, machine_cores
from loclin.callbacks.parameter_vector import GroupSpec, ParameterVector, SketchedParameterVector, parameter_groups
from loclin.geometry.rolling import RollingBasis
from loclin.geometry.sharded import no_reduce
from loclin.geometry.subspace import all_finite
from loclin.geometry.window import StreamingWindow, VectorWindow

SOURCES = ("grad", "update")
# staging rows per source in background mode: how many steps training may run ahead of the measurements
STAGED_STEPS = 8


def free_core(trainer: L.Trainer) -> bool:
    """Whether a core is left beside training's threads, in a process alone (one rank): the cores are
    $LOCLIN_CORES where a sweep set it for its points, or those the process may run on."""
    share = os.environ.get(CORES_ENV, "")
    cores = int(share) if share.isdigit() else machine_cores()
    return trainer.world_size == 1 and torch.get_num_threads() < cores


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
        background: bool = False,
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
        self.consumers: list[Callable[[], tuple[dict[str, float], int] | None]] = []
        self.background = background
        self.worker: MeasurementWorker | None = None
        self._free: dict[str, queue.Queue] = {}  # background: staging rows not in use
        self._staged: tuple[int, dict[str, torch.Tensor]] | None = None  # (step, staging row by source)
        self._outbox: list[tuple[dict[str, float], int]] = []  # scalars measured, not yet logged

    def add_consumer(self, consumer: Callable[[], tuple[dict[str, float], int] | None]) -> None:
        """``consumer()`` runs after every step the bases took in (on the measurement thread in
        background mode) and returns the scalars it measured and their step, or None."""
        self.consumers.append(consumer)

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
        staging = STAGED_STEPS * len(self._free) * self.local_dim * 4 if self._free else 0
        return sum(w.nbytes for w in self.windows.values()) + getattr(self.vector, "nbytes", 0) + staging

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
        if self.background and free_core(trainer) and self.shard.reduce is no_reduce:  # a collective: in line
            self.worker = MeasurementWorker()
            self._free = {s: queue.Queue() for s in self.sources}
            for rows in self._free.values():
                for _ in range(STAGED_STEPS):
                    rows.put(torch.empty(self.vector.dim))
            detail += ", measured on a background thread"
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
        made it (``ParameterVector.copy_grads_as_accumulated``, the Hugging Face path, never in background).
        In background mode both go into staging rows instead (waiting while all are taken)."""
        step = trainer.global_step
        if self.worker is not None:
            if grads_in_slot:
                raise ValueError("[loclin] a stream measured in the background takes g_t from .grad, not from its slot")
            staged = {source: self._staging_row(source) for source in self.windows}
            if "grad" in staged:
                self.vector.write_grads(staged["grad"])
            if "update" in staged:
                self.vector.write_values(staged["update"])
            self._staged = (step, staged)
            return
        if "grad" in self.windows:
            if not grads_in_slot:
                self.vector.write_grads(self.windows["grad"].next_slot())
            self._commit("grad", step)
        if "update" in self.windows:
            self.vector.write_values(self.windows["update"].next_slot())

    def _staging_row(self, source: str) -> torch.Tensor:
        """A free staging row, waiting while the thread catches up; its error, if it failed (the rows
        of the steps it skipped after the failure never come back)."""
        while True:
            try:
                return self._free[source].get(timeout=0.5)
            except queue.Empty:
                self.worker.check()

    def advance(self, trainer: L.Trainer) -> None:
        """After the optimizer step, once per step: u_t = θ_{t+1} − θ_t into the update window, then
        every rolling basis takes in its window's newest vector (and logs at a refresh)."""
        if self._advanced == (id(trainer), trainer.global_step):
            return
        self._advanced = (id(trainer), trainer.global_step)
        if self.worker is not None:
            if self._staged is not None:
                step, staged = self._staged
                self._staged = None
                if "update" in staged:
                    self.vector.subtract_from_values(staged["update"])
                self.worker.submit(lambda: self._take_in(step, staged))
            self._flush(trainer)
            return
        if "update" in self.windows:
            self.vector.subtract_from_values(self.windows["update"].next_slot())
            self._commit("update", trainer.global_step - 1)
        self._observe()
        self._flush(trainer)

    def _take_in(self, step: int, staged: dict[str, torch.Tensor]) -> None:
        """Background mode, on the measurement thread: commit step's staged vectors (g_t first, as
        in line), give their rows back, and move the bases and consumers on."""
        for source in ("grad", "update"):
            if source in staged:
                self.windows[source].next_slot().copy_(staged[source])
                self._free[source].put(staged[source])
                self._commit(source, step)
        self._observe()

    def _observe(self) -> None:
        """Every rolling basis takes in its window's newest vector, then every consumer runs."""
        for source, basis in self.bases.items():
            step = self.latest_step[source]
            self._outbox.append((basis.observe(self.windows[source], step), step))
        for consumer in self.consumers:
            measured = consumer()
            if measured is not None:
                self._outbox.append(measured)

    def submit(
        self, measure: Callable[[], tuple[dict[str, float], int] | None], trainer: L.Trainer, idle: bool = False
    ) -> None:
        """Background mode: run ``measure`` on the measurement thread after the steps handed to it so
        far (``idle``: while no step waits, for work that reads nothing the steps write); the scalars
        it returns are logged like the stream's own."""

        def task() -> None:
            measured = measure()
            if measured is not None:
                self._outbox.append(measured)

        self.worker.submit(task, idle)
        self._flush(trainer)

    def _flush(self, trainer: L.Trainer) -> None:
        """Log what was measured so far (from the training thread: loggers are not shared with it)."""
        while self._outbox:
            metrics, step = self._outbox.pop(0)
            log_measurements(trainer, metrics, step)

    def wait(self, trainer: L.Trainer | None = None) -> None:
        """Background mode: let the measurement thread finish every step handed to it (and log its
        scalars when ``trainer`` is given). In line, nothing to wait for."""
        if self.worker is not None:
            self.worker.wait()
            if trainer is not None:
                self._flush(trainer)

    def close(self, trainer: L.Trainer | None = None, raise_error: bool = True) -> None:
        """End the measurement thread after its last step (at the end of a fit; ``raise_error`` false
        when the fit failed: its own error is the one to report)."""
        if self.worker is None:
            return
        if raise_error:
            self.wait(trainer)
        self.worker.close(raise_error)

    def state_dict(self) -> dict:
        """The windows (whole vectors) and counters; each rolling basis is saved by its own callback."""
        self.wait()
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
