"""Build and run one experiment from a validated config: data, module, callbacks, Trainer.

An experiment is a sequence of phases (``phases`` in the config, or one "train" phase), each
its own ``Trainer.fit`` with its own tasks, step budget, optimizer state and measurement
callbacks, in one run directory and one TensorBoard run (later phases continue the step
axis). A completed phase leaves ``phases/<name>.json`` and ``checkpoints/<name>/end.ckpt``;
a killed run resumes at the first incomplete phase, from its ``last.ckpt`` if it has one.
What a protocol adds (the recovery protocol of docs/science.md 5–7, the random-search probe) comes
through its phase hooks (loclin.phase_hooks), named in loclin.protocols.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from weakref import proxy

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from loclin.callbacks.activation_shift import ActivationShiftCallback
from loclin.callbacks.base import LiveFigures, MeasurementCallback, MemoryReport, metric
from loclin.callbacks.divergence import Diverged, DivergenceGuard
from loclin.callbacks.drift import DriftCallback
from loclin.callbacks.gradient_stream import GradientStream
from loclin.callbacks.gradient_window import GradientWindowCallback
from loclin.callbacks.parameter_vector import GroupSpec
from loclin.callbacks.per_task import PerTaskGradientCallback
from loclin.callbacks.rolling_basis import RollingBasisCallback
from loclin.config import ConfigError, phase_optimizer, phase_plan, resolve_asset_file
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
from loclin.progress import phase_progress
from loclin.protocols import protocol_for
from loclin.rundir import (
    CHECKPOINT_DIR,
    END_CHECKPOINT,
    LAST_CHECKPOINT,
    PHASES_DIR,
    RECOVERY_DIR,
    SUMMARY_FILE,
    write_config,
    write_json,
)
from loclin.tensorboard import drift_layout, hparams_of, write_run_end


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
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),  # loclin.progress: a bar or lines
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        enable_model_summary=first_trainer,  # once a run, not once a phase
        deterministic=True,
        inference_mode=False,  # metric states made in one phase's validation are updated in the next
    )


def task_metrics(results: list[dict[str, float]], datamodule: PhasedDataModule) -> dict:
    """Held-out loss/accuracy/exact-match per task from ``Trainer.validate`` results."""
    merged = {key: value for result in results for key, value in result.items()}
    metrics = {}
    for task, chance in datamodule.chance_accuracy.items():
        metrics[f"task.{task}.acc"] = metric(float(merged[f"val/{task}/acc"]), "held-out answer-token accuracy", chance)
        metrics[f"task.{task}.exact"] = metric(
            float(merged[f"val/{task}/exact"]), "held-out exact match (all answer tokens right)"
        )
        metrics[f"task.{task}.loss"] = metric(float(merged[f"val/{task}/loss"]), "held-out answer-token cross-entropy")
    return metrics


def phase_tasks(cfg: DictConfig, phase: DictConfig) -> list[str]:
    """A phase's training tasks: its own, else the protocol's (recovery: D1's "all but T", then "T
    only"), else ``data.train_tasks`` or every task."""
    if phase.tasks is not None:
        return list(phase.tasks)
    filled = protocol_for(cfg).hook_class().tasks(cfg, phase)
    return filled if filled is not None else list(cfg.data.train_tasks or cfg.data.tasks)


def run_experiment(
    cfg: DictConfig,
    run_dir: Path,
    resume: bool = False,
    extra_callbacks: list[Callback] | None = None,
    extend_summary: Callable[[dict], None] | None = None,
) -> dict:
    """Run every phase; write config.yaml, TensorBoard events, checkpoints and summary.json
    (``extend_summary`` adds to the summary first: summary.json marks a finished run)."""
    started = time.time()
    if not resume:
        write_config(run_dir, OmegaConf.to_yaml(cfg))
    if cfg.trainer.cpu_threads:
        torch.set_num_threads(cfg.trainer.cpu_threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module, datamodule = build_module_and_data(cfg)
    logger = build_logger(run_dir)
    if cfg.geometry.enabled or cfg.activation_shift.enabled:
        logger.experiment.add_custom_scalars(
            drift_layout(cfg.geometry.drift_sources, cfg.geometry.sources, cfg.data.tasks, cfg.activation_shift.enabled)
        )
    hooks = protocol_for(cfg).hook_class()(cfg, run_dir, module, datamodule)
    plan = hooks.phases(phase_plan(cfg))
    summary = base_summary(cfg, run_dir, plan)
    offset, restore_from, optimizer_state = 0, None, None
    for index, phase in enumerate(plan):
        phase_dir = run_dir / CHECKPOINT_DIR / phase.name
        part_file, end_checkpoint = run_dir / PHASES_DIR / f"{phase.name}.json", phase_dir / END_CHECKPOINT
        if part_file.is_file() and end_checkpoint.is_file():  # completed by an earlier process
            merge_part(summary, json.loads(part_file.read_text()))
            offset, restore_from = offset + steps_on_axis(phase), end_checkpoint
            continue
        last_checkpoint = phase_dir / LAST_CHECKPOINT
        if phase.starts_from is not None:
            restore_from = run_dir / CHECKPOINT_DIR / phase.starts_from / END_CHECKPOINT
        if restore_from is not None and not last_checkpoint.is_file():
            previous = torch.load(restore_from, weights_only=False)
            module.load_state_dict(previous["state_dict"], strict=module.strict_loading)
            optimizer_state = (previous.get("optimizer_states") or [None])[0]
        restore_from = None
        datamodule.set_phase(*phase_data(cfg, plan, phase))
        module.optim_spec = phase_optimizer(cfg, schedule_source(plan, phase))  # a replay steps as its source did
        module.carried_optimizer_state = None if phase.fresh_optimizer else optimizer_state
        logger.step_offset = offset
        frozen = module.optim_spec.lr == 0
        measurements = (
            [] if phase.replays else build_geometry_callbacks(cfg, phase.steps, per_task=index == 0, frozen=frozen)
        )
        if cfg.activation_shift.enabled and phase.steps >= cfg.activation_shift.stride and not phase.replays:
            measurements.append(build_activation_shift(cfg, module))
        phase_callbacks: list[MeasurementCallback] = [*measurements, *hooks.before_phase(phase, index, measurements)]
        reports = [MemoryReport(phase_callbacks)] if phase_callbacks else []
        if measurements:
            reports.append(LiveFigures(measurements, cfg.trainer.live_figures_seconds))
        trainer = build_trainer(
            cfg,
            phase_dir,
            False if phase.replays else logger,  # a replay is off the step axis: its numbers are its summary
            [
                *phase_callbacks,
                *reports,
                *(extra_callbacks or []),
                *phase_progress(
                    phase.name, offset if steps_on_axis(phase) else None, summary["steps"], cfg.trainer.progress_bar
                ),
            ],
            phase.steps,
        )
        try:
            if phase.steps > 0:
                trainer.fit(
                    module, datamodule=datamodule, ckpt_path=str(last_checkpoint) if last_checkpoint.is_file() else None
                )
                for callback in phase_callbacks:  # a resume from a checkpoint at the last step skips on_train_end
                    callback.finish_phase(trainer, module)
                optimizer_state = trainer.optimizers[0].state_dict()
            results = trainer.validate(module, datamodule=datamodule, verbose=False)
            part = phase_summary(phase, index, trainer, phase_callbacks, task_metrics(results, datamodule))
            hooks.after_phase(phase, measurements)
        except Diverged as error:  # a finished run all the same: its summary says where and why
            summary["diverged"] = {
                "phase": phase.name,
                "step": offset + error.first,
                "stopped_at": offset + error.step,
                "patience": error.patience,
                "message": str(error),
            }
            summary["wall_seconds_this_process"] = time.time() - started
            if trainer.is_global_zero:
                write_json(run_dir / SUMMARY_FILE, summary)
                prune_checkpoints(cfg, run_dir)
            return summary
        if trainer.is_global_zero:
            (run_dir / PHASES_DIR).mkdir(exist_ok=True)
            write_json(part_file, part)
        trainer.save_checkpoint(phase_dir / f".{END_CHECKPOINT}.tmp")
        if trainer.is_global_zero:
            (phase_dir / f".{END_CHECKPOINT}.tmp").replace(end_checkpoint)
        merge_part(summary, part)
        offset += steps_on_axis(phase)
    hooks.finish(summary)
    if extend_summary is not None:
        extend_summary(summary)
    summary["wall_seconds_this_process"] = time.time() - started
    write_json(run_dir / SUMMARY_FILE, summary)
    prune_checkpoints(cfg, run_dir)
    if cfg.geometry.enabled or cfg.activation_shift.enabled:
        logger.step_offset = 0
        for step, scalars in sorted(hooks.replay_lines(summary).items()):
            logger.log_metrics(scalars, step)
        write_tensorboard_end(logger, cfg, summary)
    return summary


def prune_checkpoints(cfg: DictConfig, run_dir: Path) -> None:
    """With ``trainer.keep_checkpoints: false``, a finished run's checkpoints and recovery/*.pt go
    (its summary, config, phase records and TensorBoard stay); forks of the run are then refused."""
    if cfg.trainer.keep_checkpoints:
        return
    shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)
    for saved in (run_dir / RECOVERY_DIR).glob("*.pt"):
        saved.unlink(missing_ok=True)


def write_tensorboard_end(logger: PhaseLogger, cfg: DictConfig, summary: dict) -> None:
    """The HParams row (the config against the headline numbers) and the verdict text panel."""
    from loclin.readings import headline_numbers, run_verdict

    write_run_end(logger, hparams_of(cfg), headline_numbers(summary), run_verdict(summary), summary["steps"])


def steps_on_axis(phase: DictConfig) -> int:
    """Steps a phase adds to the run's step axis (TensorBoard, ``steps``): none for a replay."""
    return 0 if phase.get("replays") else phase.steps


def schedule_source(plan: list[DictConfig], phase: DictConfig) -> DictConfig:
    """The phase whose optimizer and learning-rate schedule ``phase`` steps with: for a replay,
    the phase it replays (a replica shorter than it keeps its schedule); else itself."""
    return next(p for p in plan if p.name == phase.replays) if phase.get("replays") else phase


def phase_data(cfg: DictConfig, plan: list[DictConfig], phase: DictConfig) -> tuple[int, list[str], int | None]:
    """The datamodule's (phase index, tasks, batch size) for a phase: a replay's are those of the
    phase it replays, so it trains on the same batches; one that ``reorders`` draws them in its own
    order (the batches are seeded by the phase index)."""
    names = [p.name for p in plan]
    source = schedule_source(plan, phase)
    index = names.index(phase.name) if phase.get("reorders") else names.index(source.name)
    return index, phase_tasks(cfg, source), source.batch_size


def base_summary(cfg: DictConfig, run_dir: Path, plan: list[DictConfig]) -> dict:
    return {
        "experiment": cfg.experiment,
        "protocol": cfg.protocol,
        "family": cfg.family,
        "run_dir": str(run_dir),
        "seed": cfg.seed,
        "steps": sum(steps_on_axis(p) for p in plan),
        "phases": [
            {
                "name": p.name,
                "steps": p.steps,
                "tasks": phase_data(cfg, plan, p)[1],
                "optim": phase_optimizer(cfg, schedule_source(plan, p)).as_dict(),
                **{key: p[key] for key in ("starts_from", "replays") if p.get(key)},
            }
            for p in plan
        ],
        "geometry": {"window": cfg.geometry.window, "k": cfg.geometry.k},
        "metrics": {},
        "curves": {},
        "memory_bytes": {},
        "torch_threads": torch.get_num_threads(),
    }


def phase_summary(
    phase: DictConfig, index: int, trainer: L.Trainer, callbacks: list[MeasurementCallback], task_metrics: dict
) -> dict:
    """One phase's numbers. The first phase's names are bare (``grad.energy_topk``); later
    phases are prefixed with the phase name (``recover.grad.overlap_lag100``)."""
    prefix = "" if index == 0 else f"{phase.name}."
    part = {
        "metrics": {f"{prefix}{n}": v for n, v in task_metrics.items()},
        "curves": {},
        "memory_bytes": {},
        "counts": {},
        "geometry": {},
    }
    for callback in callbacks:
        result = callback.summary()
        part["metrics"].update(
            {f"{prefix}{n}": v for n, v in result.get("metrics", {}).items() if not n.startswith("recovery.")}
        )
        part["metrics"].update({n: v for n, v in result.get("metrics", {}).items() if n.startswith("recovery.")})
        part["curves"].update(
            {(n if n.startswith("recovery.") else f"{prefix}{n}"): c for n, c in result.get("curves", {}).items()}
        )
        part["memory_bytes"][f"{prefix}{callback.state_key}"] = callback.memory_bytes()
        if "dim" in result:
            part["geometry"]["dim"] = result["dim"]
        part["counts"].update({f"{prefix}{n}": c for n, c in result.get("counts", {}).items()})
    return part


def merge_part(summary: dict, part: dict) -> None:
    """A phase's part into the summary; a table two phases fill (the recovery table) merges by row."""
    for key in ("metrics", "curves", "memory_bytes"):
        for name, value in part.get(key, {}).items():
            if isinstance(value, dict) and isinstance(summary[key].get(name), dict) and key == "curves":
                summary[key][name] = {**summary[key][name], **value}
            else:
                summary[key][name] = value
    summary.setdefault("counts", {}).update(part.get("counts", {}))
    if "dim" in part.get("geometry", {}):
        summary["geometry"]["dim"] = part["geometry"]["dim"]
        summary["geometry"]["random_baseline_k_over_D"] = summary["geometry"]["k"] / part["geometry"]["dim"]
