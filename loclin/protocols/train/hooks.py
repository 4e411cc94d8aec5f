"""What a protocol adds to the phased runner (loclin.protocols.train.runner.run_experiment), phase by phase.

A phased protocol names its subclass in loclin.protocols (``hooks``); the runner asks ``phases``
for the phases to run (the config's, and any the protocol adds), then calls, for each phase in
order, ``tasks`` (when the phase does not list its own), ``before_phase`` (callbacks to
add to the phase's Trainer), ``after_phase`` (once the phase is validated), and ``finish`` with the
whole summary. The defaults add nothing: they are the train protocol's.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig


class PhaseHooks:
    def __init__(self, cfg: DictConfig, run_dir: Path, module, datamodule):
        self.cfg = cfg

    def phases(self, plan: list[DictConfig]) -> list[DictConfig]:
        """The phases to run, given the config's (recovery adds its constrained re-run)."""
        return plan

    @classmethod
    def tasks(cls, cfg: DictConfig, phase: DictConfig) -> list[str] | None:
        """The phase's training tasks when the protocol fills them in; None: ``data.train_tasks`` or all."""
        return None

    def before_phase(self, phase: DictConfig, index: int, measurements: list[Callback]) -> list[Callback]:
        """Callbacks for this phase's Trainer besides the measurements (which they may read)."""
        return []

    def after_phase(self, phase: DictConfig, measurements: list[Callback]) -> None:
        """After the phase's fit and validation, before its part of the summary is written."""

    def finish(self, summary: dict) -> None:
        """The whole summary, before summary.json is written."""

    def replay_lines(self, summary: dict) -> dict[int, dict[str, float]]:
        """TensorBoard scalars of phases off the step axis (replays), by the run step they belong
        to; written once the run ends."""
        return {}
