"""What every loclin measurement callback shares: logging at an exact step and a summary."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from loclin.callbacks.lag_runs import LAG_RUNS, split_by_lag
from loclin.geometry.running import Averages

__all__ = ["Averages", "LiveFigures", "MeasurementCallback", "MemoryReport", "log_measurements", "metric"]


def log_measurements(trainer: L.Trainer, metrics: dict[str, float], step: int) -> None:
    """Scalars at the step they describe, to every logger the trainer has (TensorBoard, CSV, W&B,
    MLflow: any Lightning logger), and into ``trainer.callback_metrics``, where EarlyStopping and
    ModelCheckpoint find what they monitor. Not ``self.log``: its ``log_every_n_steps`` would drop
    measurements made at a stride, and it logs at the trainer's step, not the measured one."""
    if not metrics:
        return
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):  # one run per lag, so each lag gets a colour (callbacks.lag_runs)
            plain, by_lag = split_by_lag(metrics)
            logger.log_metrics(plain, step=step)
            if by_lag and trainer.is_global_zero:
                LAG_RUNS.write(logger.log_dir, by_lag, step + getattr(logger, "step_offset", 0))
        else:
            logger.log_metrics(metrics, step=step)
    trainer.callback_metrics.update({name: torch.tensor(float(value)) for name, value in metrics.items()})


def close_lag_runs(trainer: L.Trainer) -> None:
    """Closes the per-lag TensorBoard writers of the trainer's loggers (at the end of a fit)."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            LAG_RUNS.close(logger.log_dir)


class MeasurementCallback(Callback):
    """Base class: ``summary()`` feeds summary.json, ``figures()`` feeds TensorBoard images.

    Scalars go to every logger at the step they describe, and to ``callback_metrics``
    (:func:`log_measurements`). Figures go to loggers that take images (``add_figure``); with none,
    one line says they were skipped.
    """

    # What this callback calls beyond named_parameters(): methods of the LightningModule and of the
    # datamodule (loclin's modules and PhasedDataModule have them), checked once at setup
    module_needs: tuple[str, ...] = ()
    data_needs: tuple[str, ...] = ()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        check_needs(self, trainer, pl_module)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        close_lag_runs(trainer)

    def log_scalars(self, trainer: L.Trainer, metrics: dict[str, float], step: int) -> None:
        log_measurements(trainer, metrics, step)

    draw_figures = True  # trainer.figures: false turns them off (the runner sets it)

    def log_figures(self, trainer: L.Trainer, step: int) -> None:
        if not self.draw_figures or trainer.logger is None or not trainer.is_global_zero:
            return
        writer = getattr(trainer.logger, "experiment", None)
        if writer is None or not hasattr(writer, "add_figure"):
            if self.figures_possible():
                rank_zero_info(
                    f"[loclin] {type(self).__name__}: figures skipped, {type(trainer.logger).__name__} takes no images "
                    "(the numbers are in the scalars and summary.json)"
                )
            return
        offset = getattr(trainer.logger, "step_offset", 0)  # later phases continue the step axis
        try:
            figures = self.figures()
        except ValueError as error:  # e.g. a log axis over NaNs: a picture never costs the numbers
            rank_zero_warn(f"[loclin] {type(self).__name__}: figures skipped ({error})")
            return
        for tag, figure in figures.items():
            writer.add_figure(tag, figure, global_step=step + offset, close=True)

    def figures(self) -> dict[str, Any]:
        return {}

    def figures_possible(self) -> bool:
        """Whether this callback draws figures at all (so a logger without images is worth a line)."""
        return type(self).figures is not MeasurementCallback.figures

    def memory_bytes(self) -> int:
        """Bytes of bounded state this callback holds (windows, stored bases)."""
        return 0

    def summary(self) -> dict[str, Any]:
        """``{"metrics": {name: {value, definition, baseline?}}, "curves": {...}}``."""
        return {}

    phase_finished = False

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.finish_phase(trainer, pl_module)

    def finish_phase(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The end-of-phase work, once. Lightning skips ``on_train_end`` when a phase resumes from
        a checkpoint written at its last step, so the runner calls this after every ``fit`` too."""
        if self.phase_finished:
            return
        self.phase_finished = True
        self.end_of_phase(trainer, pl_module)
        self.log_figures(trainer, trainer.global_step)

    def end_of_phase(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Results computed once the phase's last step is taken (recovery captures)."""


def check_needs(callback: MeasurementCallback, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
    """One line naming every method ``callback`` needs that the module or datamodule lacks."""
    datamodule = getattr(trainer, "datamodule", None)
    missing = [f"{type(pl_module).__name__}.{name}()" for name in callback.module_needs if not hasattr(pl_module, name)]
    missing += [
        f"a datamodule with {name}" + ("" if datamodule is None else f" ({type(datamodule).__name__} has none)")
        for name in callback.data_needs
        if datamodule is None or not hasattr(datamodule, name)
    ]
    if missing:
        raise TypeError(
            f"{type(callback).__name__} needs {', '.join(missing)}: loclin's LightningModules and "
            "PhasedDataModule provide them (README, 'Three ways in'); GeometryMonitor needs none of them"
        )


class LiveFigures(Callback):
    """Redraws the measurement callbacks' figures (drift against lag, spectra, …) in TensorBoard
    when a checkpoint is saved, at most every ``min_seconds``, so an hours-long run shows them live.

    A figure costs about half a second, so a run of seconds draws them once, at the end of its
    phase (``finish_phase``); ``min_seconds=0`` redraws at every checkpoint, ``None`` never.
    The numbers never depend on it: a figure only reads what the callbacks already hold.
    """

    def __init__(self, measurements: list[MeasurementCallback], min_seconds: float | None = 60.0):
        self.measurements = measurements
        self.min_seconds = min_seconds
        self.last_time = time.monotonic()
        self.last_step = -1

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.last_time = time.monotonic()

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        step = trainer.global_step
        if self.min_seconds is None or step == self.last_step or time.monotonic() - self.last_time < self.min_seconds:
            return
        if any(callback.phase_finished for callback in self.measurements):  # finish_phase draws the last ones
            return
        for callback in self.measurements:
            callback.log_figures(trainer, step)
        self.last_time, self.last_step = time.monotonic(), step


class MemoryReport(Callback):
    """Prints, once the measurement callbacks are set up, the bytes each may hold at most."""

    def __init__(self, measurements: list[MeasurementCallback]):
        self.measurements = measurements
        self.printed = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.printed:
            return
        self.printed = True
        sizes = {cb.state_key: cb.memory_bytes() for cb in self.measurements}
        parts = ", ".join(f"{name} {size / 2**20:.1f}" for name, size in sizes.items())
        rank_zero_info(f"[loclin] geometry state (MiB, upper bounds): {parts}; total {sum(sizes.values()) / 2**20:.1f}")


def metric(value: float, definition: str, baseline: float | None = None) -> dict[str, Any]:
    """One headline number with the name of its definition (and its random baseline)."""
    entry: dict[str, Any] = {"value": value, "definition": definition}
    if baseline is not None:
        entry["baseline"] = baseline
    return entry
