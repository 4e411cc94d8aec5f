"""Progress of a phased run: the phase's name, its step and the run's, and the time left.

In a terminal, Lightning's tqdm bar counts the phase's optimizer steps (not an epoch's batches,
which read ``Epoch 3/-2`` with ``max_epochs=-1``) with tqdm's own rate and ETA, and shows the run's
step beside it. Piped into a file or a job log, where a bar redrawn with carriage returns shows
nothing until the end, plain lines are printed instead, flushed, every ``LINES`` of the phase.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta

import lightning as L
from lightning.pytorch.callbacks import Callback, TQDMProgressBar

LINES = 20  # plain progress lines per phase


def run_position(run_offset: int | None, step: int, run_total: int) -> str | None:
    """Where ``step`` of a phase is on the run's step axis, ``run step/run total``; None for a
    replay, which is not on it."""
    return None if run_offset is None else f"{run_offset + step}/{run_total}"


class PhaseBar(TQDMProgressBar):
    """``recover  40%|████      | 120/300 [00:05<00:07, 24 it/s, run=4620/4800, train_loss=0.31]``."""

    def __init__(self, phase: str, run_offset: int | None, run_total: int):
        super().__init__()
        self.phase, self.run_offset, self.run_total = phase, run_offset, run_total

    def on_train_epoch_start(self, trainer: L.Trainer, *_) -> None:
        bar = self.train_progress_bar
        if bar.total != trainer.max_steps:  # a phase is one bar over its steps, whatever the epochs
            bar.reset(total=trainer.max_steps)
            bar.n = trainer.global_step
        bar.set_description(self.phase)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        self.train_progress_bar.n = trainer.global_step
        self._show_position(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._show_position(trainer, pl_module)  # Lightning's would show the metrics without the run step

    def _show_position(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        bar = self.train_progress_bar
        if not bar.disable:
            run = run_position(self.run_offset, trainer.global_step, self.run_total) or "replay"
            bar.set_postfix(run=run, **self.get_metrics(trainer, pl_module))
            bar.refresh()

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)  # the run directory's version, not a measurement
        return metrics


class PhaseLines(Callback):
    """``[loclin] recover step 120/300 (run 4620/4800), 24.1 steps/s, ETA 0:00:07`` on stderr."""

    def __init__(self, phase: str, run_offset: int | None, run_total: int, lines: int = LINES):
        self.phase, self.run_offset, self.run_total, self.lines = phase, run_offset, run_total, lines
        self._start: tuple[float, int] | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = (time.monotonic(), trainer.global_step)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        step, total = trainer.global_step, trainer.max_steps
        every = max(1, total // self.lines)
        if not trainer.is_global_zero or (step % every and step != total) or self._start is None:
            return
        began, first = self._start
        rate = (step - first) / max(time.monotonic() - began, 1e-9)
        left = timedelta(seconds=round((total - step) / rate)) if rate > 0 else "?"
        position = run_position(self.run_offset, step, self.run_total)
        where = f"run {position}" if position else "a replay, off the run's step axis"
        print(
            f"[loclin] {self.phase} step {step}/{total} ({where}), {rate:.1f} steps/s, ETA {left}",
            file=sys.stderr,
            flush=True,
        )


def phase_progress(phase: str, run_offset: int | None, run_total: int, enabled: bool) -> list[Callback]:
    """The progress callback for one phase (``run_offset`` None: a replay, off the run's step axis):
    a bar on a terminal, lines otherwise, none if disabled.
    Lightning's own bar is then turned off (``enable_progress_bar`` follows whether a bar is given)."""
    if not enabled:
        return []
    if sys.stderr.isatty():
        return [PhaseBar(phase, run_offset, run_total)]
    return [PhaseLines(phase, run_offset, run_total)]
