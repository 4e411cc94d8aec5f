"""What the phased runner builds from a validated config: the model family's module and data, the
geometry callbacks, the logger and the Trainer of each phase."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from weakref import proxy

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from loclin.callbacks.activation_shift import ActivationShiftCallback
from loclin.callbacks.base import MeasurementCallback
from loclin.callbacks.divergence import DivergenceGuard
from loclin.callbacks.drift import DriftCallback
from loclin.callbacks.gradient_stream import GradientStream
from loclin.callbacks.gradient_window import GradientWindowCallback
from loclin.callbacks.parameter_vector import GroupSpec
from loclin.callbacks.per_task import PerTaskGradientCallback
from loclin.callbacks.rolling_basis import RollingBasisCallback
from loclin.config import ConfigError
from loclin.datamodules.contrast import encode_contrasts, load_items, split_items
from loclin.datamodules.phased import PhasedDataModule
from loclin.datamodules.synthetic import SyntheticTasksDataModule
from loclin.datamodules.text import TextTasksDataModule
from loclin.datamodules.text_tasks import CORPUS_TASKS
from loclin.geometry.lags import fitting_lags
from loclin.lightning_modules.answer_tokens import AnswerTokenModule
from loclin.lightning_modules.causal_lm import AdapterError, CausalLMLoRAModule
from loclin.lightning_modules.optim import OptimizerSpec
from loclin.lightning_modules.synthetic import SyntheticMultitaskModule
from loclin.model_source import resolve_model_and_tokenizer
from loclin.protocols.train.config import phase_optimizer, phase_plan
from loclin.runs.rundir import (
    LAST_CHECKPOINT,
)
from loclin.schema import resolve_asset_file


def build_synthetic(cfg: DictConfig) -> tuple[AnswerTokenModule, PhasedDataModule]:
    datamodule = build_datamodule(cfg)
    return build_module(cfg, datamodule), datamodule


def build_lora(cfg: DictConfig) -> tuple[AnswerTokenModule, PhasedDataModule]:
    module = build_lora_module(cfg)  # it brings the tokenizer the text tasks are encoded with
    return module, build_text_datamodule(cfg, module.tokenizer)


MODEL_FAMILIES = {"synthetic": build_synthetic, "lora": build_lora}  # the phased runner's model families


def build_module_and_data(cfg: DictConfig) -> tuple[AnswerTokenModule, PhasedDataModule]:
    """The module and its datamodule of the model family ``cfg.family`` (MODEL_FAMILIES)."""
    module, datamodule = MODEL_FAMILIES[cfg.family](cfg)
    module.grad_shards = cfg.trainer.grad_shards or 1  # one process only (see AnswerTokenModule.training_step)
    return module, datamodule


def build_lora_module(cfg: DictConfig) -> CausalLMLoRAModule:
    """The LoRA module; an adapter that does not fit the model, found only once the model is
    built, is a ConfigError all the same (train.py then removes the new run directory)."""
    model_source, tokenizer_source = resolve_model_and_tokenizer(cfg.lm.model, cfg.lm.tokenizer)
    adapter = OmegaConf.to_object(cfg.lm.lora)
    try:
        return CausalLMLoRAModule(model_source, list(cfg.data.tasks), tokenizer_source, adapter, first_optimizer(cfg))
    except AdapterError as error:
        raise ConfigError(str(error)) from None


def first_optimizer(cfg: DictConfig) -> OptimizerSpec:
    """The first phase's optimizer: what a module steps with until the runner sets each phase's."""
    return phase_optimizer(cfg, phase_plan(cfg)[0])


def build_text_datamodule(cfg: DictConfig, tokenizer) -> TextTasksDataModule:
    d = cfg.data
    needs_corpus = any(task in CORPUS_TASKS for task in d.tasks)
    return TextTasksDataModule(
        tokenizer,
        OmegaConf.to_object(d),
        corpus=resolve_asset_file(d.corpus, "brown.txt") if needs_corpus else None,
        steps_per_epoch=cfg.trainer.eval_every,
        seed=cfg.seed,
        special_tokens=cfg.lm.special_tokens,
    )


def build_datamodule(cfg: DictConfig) -> SyntheticTasksDataModule:
    return SyntheticTasksDataModule(
        OmegaConf.to_object(cfg.data), steps_per_epoch=cfg.trainer.eval_every, seed=cfg.seed
    )


def build_module(cfg: DictConfig, datamodule: SyntheticTasksDataModule) -> SyntheticMultitaskModule:
    vocab = datamodule.vocab
    shape = OmegaConf.to_object(cfg.model)
    return SyntheticMultitaskModule(vocab.size, vocab.seq_len, datamodule.task_names, shape, first_optimizer(cfg))


def build_activation_shift(cfg: DictConfig, module: CausalLMLoRAModule) -> ActivationShiftCallback:
    """Cosine of the activation shift with a CAA vector of fixed contrast items, at a stride."""
    a = cfg.activation_shift
    items = load_items(a.source, resolve_asset_file(a.data, ""), a.template, a.yes_answer, a.no_answer)
    probe, _ = split_items(items, min(a.n_items, len(items)), 0, cfg.seed)
    return ActivationShiftCallback(
        encode_contrasts(module.tokenizer, probe, cfg.lm.special_tokens), stride=a.stride, batch_size=a.batch_size
    )


def build_geometry_callbacks(
    cfg: DictConfig, steps: int, per_task: bool = True, group_spec: GroupSpec = None, frozen: bool = False
) -> list[MeasurementCallback]:
    """One gradient stream, handed to every callback that reads it (any order gives the same numbers).
    ``group_spec`` says how the module's parameters form groups (callbacks.parameter_vector). ``frozen``:
    a phase at lr 0, whose updates are all 0, measures its gradients only (the stream that cannot drift)."""
    g = cfg.geometry
    sources = [s for s in g.sources if s == "grad" or not frozen]
    if not g.enabled or steps < g.window or not sources:
        return []
    stream = GradientStream(
        g.window,
        sources=sources,
        groups=list(g.groups) if g.groups else None,
        sketch_dim=g.sketch_dim,
        seed=cfg.seed,
        shard_windows=g.shard_windows,
        group_spec=group_spec,
        background=bool(OmegaConf.select(cfg, "trainer.background_measurements", default=False)),  # not on the HF path
    )
    window = GradientWindowCallback(stream)
    rolling = {
        s: RollingBasisCallback(stream, s, k=g.k, stride=g.basis_stride, heldout_lags=tuple(g.heldout_lags))
        for s in sources
    }
    lags = fitting_lags(list(g.drift_lags), g.window, steps)
    drift = (
        [
            DriftCallback(stream, stream.bases[s], stride=g.drift_stride, lags=tuple(lags))
            for s in g.drift_sources
            if s in sources
        ]
        if lags
        else []
    )
    callbacks: list[MeasurementCallback] = [window, *rolling.values(), *drift]
    p = g.per_task
    if p.enabled and per_task and p.stride <= steps:
        callbacks.append(
            PerTaskGradientCallback(
                stream, list(cfg.data.tasks), stride=p.stride, n_batches=p.n_batches, n_heldout=p.n_heldout, k=p.k
            )
        )
    return callbacks


class AtomicCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose file appears whole or not at all: written beside it as
    ``<name>.tmp`` and renamed into place, so a run killed while saving keeps its previous
    checkpoint (ModelCheckpoint itself writes the target in place)."""

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        partial = f"{filepath}.tmp"
        try:
            trainer.save_checkpoint(partial, self.save_weights_only)
            if trainer.is_global_zero:
                os.replace(partial, filepath)
        except BaseException:  # a full disk, a kill: the previous checkpoint stays, no partial one is left
            if trainer.is_global_zero:
                Path(partial).unlink(missing_ok=True)
            raise
        trainer.strategy.barrier("atomic_checkpoint")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))


class PhaseLogger(TensorBoardLogger):
    """TensorBoard logger whose steps continue across phases (step + offset of the phase)."""

    step_offset = 0

    def log_metrics(self, metrics, step=None):
        super().log_metrics(metrics, None if step is None else step + self.step_offset)


def build_logger(run_dir: Path) -> PhaseLogger:
    return PhaseLogger(
        save_dir=str(run_dir.parent.parent), name=run_dir.parent.name, version=run_dir.name, default_hp_metric=False
    )


def fp16_scaled(precision) -> bool:
    """float16 mixed precision, whose gradient scaler skips the steps that overflow by design
    (bf16 and true float16 have no scaler: a non-finite gradient there is a real one)."""
    return str(precision) in ("16", "16-mixed")


class OncePerProcess(logging.Filter):
    """Lightning's start-up lines (devices, its tips, the model summary) and loclin's "figures
    skipped" are said once a run, not once a phase: an info line already printed is dropped."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        text = record.getMessage()
        if text in self.seen:
            return False
        self.seen.add(text)
        return True


_STARTUP_SAID: list[bool] = []


def say_startup_once() -> bool:
    """Install :class:`OncePerProcess` on the handlers of Lightning's logger (idempotent); True the
    first time in this process (the model summary, printed outside logging, is drawn only then)."""
    first = not _STARTUP_SAID
    _STARTUP_SAID.append(True)
    for handler in logging.getLogger("lightning.pytorch").handlers:
        if not any(isinstance(f, OncePerProcess) for f in handler.filters):
            handler.addFilter(OncePerProcess())
    return first


def build_trainer(
    cfg: DictConfig, phase_dir: Path, logger: PhaseLogger | bool, callbacks: list[Callback], steps: int
) -> L.Trainer:
    t = cfg.trainer
    first_trainer = say_startup_once()
    # monitor=None + save_top_k=1: one rolling file, rewritten at the end of every "epoch"
    checkpoint = AtomicCheckpoint(
        dirpath=phase_dir,
        filename=Path(LAST_CHECKPOINT).stem,
        save_top_k=1,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )
    return L.Trainer(
        max_steps=steps,
        max_epochs=-1,  # max_steps ends the phase; a bound here would trip over Lightning's epoch count after a resume
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        precision=t.precision,
        logger=logger,
        callbacks=[
            *callbacks,
            *(
                [DivergenceGuard(t.divergence_patience, t.divergence_share, not fp16_scaled(t.precision))]
                if t.divergence_patience
                else []
            ),
            checkpoint,
        ],
        log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),  # loclin.runs.progress: a bar or lines
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        enable_model_summary=first_trainer,  # once a run, not once a phase
        deterministic=True,
        inference_mode=False,  # metric states made in one phase's validation are updated in the next
    )
