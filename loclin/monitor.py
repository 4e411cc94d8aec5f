"""loclin's gradient geometry on any LightningModule, as one callback.

    from loclin import GeometryMonitor

    monitor = GeometryMonitor(window=32, k=8)                      # or GeometryMonitor(GeometryConfig(...))
    trainer = L.Trainer(max_steps=2000, callbacks=[monitor])     # any logger: TensorBoard, CSV, W&B, …
    trainer.fit(model, datamodule)
    monitor.summary_path                                          # <log_dir>/summary.json, as train.py writes

The monitor owns what ``train.py`` builds for a run's geometry (loclin.protocols.train.runner
``build_geometry_callbacks``): the gradient stream, the windows of g_t and u_t, the rolling top-k
bases with their spectra and held-out capture, and drift with its noise ceiling. It calls them in
their one right order, so a user lists one callback and no order can matter. Parameter groups come
from ``named_parameters()`` (one group per top-level child) unless ``groups`` names prefixes
(callbacks.parameter_vector ``parameter_groups``). Scalars reach every logger at the step they
describe and ``trainer.callback_metrics`` (EarlyStopping can watch ``drift/grad/overlap_lag100``);
figures reach loggers that take images. The per-task probe, recovery, random search and activation
shift need loclin's datamodules and batches, so they are not part of it (README, "Three ways in").
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_warn
from omegaconf import OmegaConf

from loclin.callbacks.base import LiveFigures, MeasurementCallback, close_lag_runs
from loclin.callbacks.parameter_vector import GroupSpec
from loclin.config import ConfigError
from loclin.protocols.train.build import build_geometry_callbacks
from loclin.protocols.train.runner import merge_part, phase_summary
from loclin.runs.rundir import SUMMARY_FILE, write_json
from loclin.runs.tensorboard import drift_layout, hparam_value, write_run_end
from loclin.schema import GeometryConfig, validate_geometry


class GeometryMonitor(Callback):
    def __init__(
        self,
        geometry: GeometryConfig | None = None,
        *,
        groups: GroupSpec = None,
        summary_dir: str | Path | None = None,
        seed: int = 0,
        live_figures_seconds: float | None = 60.0,
        **settings,
    ):
        """``geometry``: the config section whole (loclin.config.GeometryConfig), or its keys as
        keyword arguments (``window=32, k=8, basis_stride=10, drift_lags=[10, 20, 50, 100]``, …).
        ``groups``: parameter-name prefixes, or a mapping group -> prefixes. ``summary_dir``: where
        summary.json goes (default: the trainer's log directory). ``seed``: for sketched windows.
        ``live_figures_seconds``: redraw the figures at a checkpoint this long after the last redraw
        (0: every checkpoint; None: only at the end)."""
        base = geometry or GeometryConfig()
        known = {f.name for f in dataclasses.fields(GeometryConfig)} - {"enabled", "per_task"}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(f"GeometryMonitor: unknown setting(s) {unknown}; the settings are {sorted(known)}")
        self.geometry = dataclasses.replace(base, **settings)
        try:  # train.py's checks of the same keys; the run's length is known at setup
            validate_geometry(self.geometry, None)
        except ConfigError as error:
            raise ValueError(f"GeometryMonitor: {error}") from None
        self.groups = groups
        self.summary_dir = Path(summary_dir) if summary_dir is not None else None
        self.seed = seed
        self.parts: list[MeasurementCallback] = []
        self.live_figures_seconds = live_figures_seconds
        self.live_figures: LiveFigures | None = None
        self._pending_state: dict | None = None
        self.summary_path: Path | None = None

    @property
    def state_key(self) -> str:
        return "GeometryMonitor"

    def build_parts(self, steps: int) -> list[MeasurementCallback]:
        """The callbacks train.py would build for this geometry and a run of ``steps`` steps, in the
        order the monitor calls them (drift lags that do not fit in the run are left out)."""
        cfg = OmegaConf.create({"geometry": dataclasses.asdict(self.geometry), "seed": self.seed, "data": {}})
        return build_geometry_callbacks(cfg, steps, per_task=False, group_spec=self.groups)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or self.parts:
            return
        steps = trainer.max_steps if trainer.max_steps > 0 else trainer.estimated_stepping_batches
        steps = int(steps) if math.isfinite(steps) else 2**62
        try:
            unfit = validate_geometry(self.geometry, steps, lags_must_fit=False)
        except ConfigError as error:
            raise ValueError(f"GeometryMonitor: {error}") from None
        if unfit:
            rank_zero_warn(
                f"[loclin] GeometryMonitor: drift lag(s) {unfit} need more than this run's {steps} steps with "
                f"window={self.geometry.window}; they are left out (drift/*_lag{unfit[0]} is never logged)"
            )
        try:
            self.parts = self.build_parts(steps)
            for part in self.parts:
                part.setup(trainer, pl_module, stage)
        except ValueError as error:
            raise ValueError(f"GeometryMonitor: {error}") from None
        if not self.parts:
            rank_zero_warn(f"[loclin] GeometryMonitor: {steps} steps do not fill one window of {self.geometry.window}")
        self.live_figures = LiveFigures(self.parts, self.live_figures_seconds)
        tensorboard = [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        if self.parts and tensorboard and trainer.is_global_zero:
            g = self.geometry
            tensorboard[0].experiment.add_custom_scalars(drift_layout(g.drift_sources, g.sources, []))
        if self._pending_state is not None:
            self.load_state_dict(self._pending_state)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        for part in self.parts:
            part.on_train_batch_start(trainer, pl_module, batch, batch_idx)

    def on_after_backward(self, trainer, pl_module) -> None:
        for part in self.parts:
            part.on_after_backward(trainer, pl_module)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        for part in self.parts:
            part.on_before_optimizer_step(trainer, pl_module, optimizer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        for part in self.parts:
            part.on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.live_figures is not None:
            self.live_figures.on_train_start(trainer, pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if self.live_figures is not None:
            self.live_figures.on_save_checkpoint(trainer, pl_module, checkpoint)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        close_lag_runs(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for part in self.parts:
            part.finish_phase(trainer, pl_module)
        if self.parts:
            self.write_summary(trainer)

    def summary(self, trainer: L.Trainer) -> dict:
        """What train.py's summary.json holds for the geometry of one training phase."""
        g = self.geometry
        summary = {
            "experiment": "monitor",
            "protocol": "train",
            "family": type(trainer.lightning_module).__name__,
            "seed": self.seed,
            "steps": trainer.global_step,
            "phases": [{"name": "train", "steps": trainer.global_step, "tasks": [], "optim": {}}],
            "geometry": {"window": g.window, "k": g.k},
            "metrics": {},
            "curves": {},
            "memory_bytes": {},
            "torch_threads": torch.get_num_threads(),
        }
        merge_part(summary, phase_summary(None, 0, trainer, self.parts, {}))
        return summary

    def write_summary(self, trainer: L.Trainer) -> None:
        folder = self.summary_dir or Path(trainer.log_dir or trainer.default_root_dir)
        self.summary_path = folder / SUMMARY_FILE
        if not trainer.is_global_zero:
            return
        summary = {**self.summary(trainer), "run_dir": str(folder)}
        folder.mkdir(parents=True, exist_ok=True)
        write_json(self.summary_path, summary)
        tensorboard = [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        if tensorboard:  # the HParams row (the geometry settings against the headlines) and the verdict
            from loclin.reports.readings import headline_numbers, run_verdict

            settings = {
                f"geometry/{key}": hparam_value(value)
                for key, value in dataclasses.asdict(self.geometry).items()
                if value is not None and key != "per_task"
            }
            write_run_end(tensorboard[0], settings, headline_numbers(summary), run_verdict(summary), summary["steps"])

    def state_dict(self) -> dict:
        return {part.state_key: part.state_dict() for part in self.parts}

    def load_state_dict(self, state_dict: dict) -> None:
        if not self.parts:  # restored before setup built the parts: applied there
            self._pending_state = state_dict
            return
        for part in self.parts:
            if part.state_key in state_dict:
                part.load_state_dict(state_dict[part.state_key])
        self._pending_state = None
