"""Build and run one experiment from a validated config: data, module, callbacks, Trainer."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from callbacks import (
    DriftCallback,
    GradientWindowCallback,
    PerTaskGradientCallback,
    RollingBasisCallback,
)
from callbacks.base import MeasurementCallback, MemoryReport, metric
from datamodules.synthetic import SyntheticTasksDataModule
from lightning_modules.synthetic import SyntheticMultitaskModule
from loclin.rundir import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    LAST_CHECKPOINT,
    SUMMARY_FILE,
    atomic_write_text,
    write_json,
)
from loclin.tensorboard import drift_layout


def build_datamodule(cfg: DictConfig) -> SyntheticTasksDataModule:
    d = cfg.data
    return SyntheticTasksDataModule(
        tasks=list(d.tasks),
        train_tasks=list(d.train_tasks) if d.train_tasks is not None else None,
        modulus=d.modulus,
        length=d.length,
        batch_size=d.batch_size,
        batch_mode=d.batch_mode,
        heldout_size=d.heldout_size,
        heldout_fraction=d.heldout_fraction,
        steps_per_epoch=cfg.trainer.eval_every,
        seed=cfg.seed,
    )


def build_module(cfg: DictConfig, datamodule: SyntheticTasksDataModule) -> SyntheticMultitaskModule:
    m, o = cfg.model, cfg.optim
    return SyntheticMultitaskModule(
        vocab_size=datamodule.vocab.size,
        context=datamodule.vocab.seq_len,
        task_names=datamodule.task_names,
        n_layers=m.n_layers,
        d_model=m.d_model,
        n_heads=m.n_heads,
        d_ff=m.d_ff,
        dropout=m.dropout,
        lr=o.lr,
        weight_decay=o.weight_decay,
        betas=tuple(o.betas),
        warmup_steps=o.warmup_steps,
    )


def build_geometry_callbacks(cfg: DictConfig) -> list[MeasurementCallback]:
    """Window first: later callbacks read what it captured in the same hook call."""
    g = cfg.geometry
    if not g.enabled:
        return []
    window = GradientWindowCallback(g.window, sources=list(g.sources), groups=list(g.groups) if g.groups else None)
    rolling = {s: RollingBasisCallback(window, s, k=g.k, stride=g.basis_stride, heldout_lags=tuple(g.heldout_lags)) for s in g.sources}
    drift = [DriftCallback(window, rolling[s], stride=g.drift_stride, lags=tuple(g.drift_lags)) for s in g.drift_sources]
    callbacks: list[MeasurementCallback] = [window, *rolling.values(), *drift]
    p = g.per_task
    if p.enabled:
        callbacks.append(PerTaskGradientCallback(window, list(cfg.data.tasks), stride=p.stride, n_batches=p.n_batches, n_heldout=p.n_heldout, k=p.k))
    return callbacks


def build_trainer(cfg: DictConfig, run_dir: Path, callbacks: list[Callback]) -> L.Trainer:
    t = cfg.trainer
    logger = TensorBoardLogger(save_dir=str(run_dir.parent.parent), name=run_dir.parent.name, version=run_dir.name, default_hp_metric=False)
    # monitor=None + save_top_k=1: one rolling file, rewritten at the end of every "epoch"
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / CHECKPOINT_DIR,
        filename=Path(LAST_CHECKPOINT).stem,
        save_top_k=1,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )
    return L.Trainer(
        max_steps=t.max_steps,
        max_epochs=-1,  # max_steps ends the run; a bound here would trip over Lightning's epoch count after a resume
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        precision=t.precision,
        logger=logger,
        callbacks=[*callbacks, checkpoint],
        log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.progress_bar,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        deterministic=True,
    )


def task_metrics(results: list[dict[str, float]], datamodule: SyntheticTasksDataModule) -> dict:
    """Held-out loss/accuracy/exact-match per task from ``Trainer.validate`` results."""
    merged = {key: value for result in results for key, value in result.items()}
    metrics = {}
    for task, chance in datamodule.chance_accuracy.items():
        metrics[f"task.{task}.acc"] = metric(float(merged[f"val/{task}/acc"]), "held-out answer-token accuracy", chance)
        metrics[f"task.{task}.exact"] = metric(float(merged[f"val/{task}/exact"]), "held-out exact match (all answer tokens right)")
        metrics[f"task.{task}.loss"] = metric(float(merged[f"val/{task}/loss"]), "held-out answer-token cross-entropy")
    return metrics


def run_experiment(cfg: DictConfig, run_dir: Path, resume_from: Path | None = None, extra_callbacks: list[Callback] | None = None) -> dict:
    """Train, measure, and write config.yaml, TensorBoard events, checkpoints and summary.json."""
    started = time.time()
    if resume_from is None:
        atomic_write_text(run_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    measurements = build_geometry_callbacks(cfg)
    reports = [MemoryReport(measurements)] if measurements else []
    trainer = build_trainer(cfg, run_dir, [*measurements, *reports, *(extra_callbacks or [])])
    if trainer.is_global_zero and measurements:
        trainer.logger.experiment.add_custom_scalars(drift_layout(cfg.geometry.drift_sources, cfg.geometry.sources, cfg.data.tasks))
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None)
    results = trainer.validate(module, datamodule=datamodule, verbose=False)
    summary = collect_summary(cfg, run_dir, trainer, measurements, task_metrics(results, datamodule))
    summary["wall_seconds_this_process"] = time.time() - started
    if trainer.is_global_zero:
        write_json(run_dir / SUMMARY_FILE, summary)
    return summary


def collect_summary(cfg: DictConfig, run_dir: Path, trainer: L.Trainer, measurements: list[MeasurementCallback], task_metrics: dict) -> dict:
    summary = {
        "experiment": cfg.experiment,
        "run_dir": str(run_dir),
        "seed": cfg.seed,
        "steps": trainer.global_step,
        "checkpoint": str(run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT),
        "geometry": {"window": cfg.geometry.window, "k": cfg.geometry.k},
        "metrics": dict(task_metrics),
        "curves": {},
        "memory_bytes": {cb.state_key: cb.memory_bytes() for cb in measurements},
        "torch_threads": torch.get_num_threads(),
    }
    for callback in measurements:
        part = callback.summary()
        summary["metrics"].update(part.get("metrics", {}))
        summary["curves"].update(part.get("curves", {}))
        if "dim" in part:
            summary["geometry"]["dim"] = part["dim"]
            summary["geometry"]["random_baseline_k_over_D"] = cfg.geometry.k / part["dim"]
        if "counts" in part:
            summary["counts"] = part["counts"]
    return summary
