"""Build and run one experiment from a validated config: data, module, callbacks, Trainer.

An experiment is a sequence of phases (``phases`` in the config, or one "train" phase), each
its own ``Trainer.fit`` with its own tasks, step budget, optimizer state and measurement
callbacks, in one run directory and one TensorBoard run (later phases continue the step
axis). A completed phase leaves ``phases/<name>.json`` and ``checkpoints/<name>/end.ckpt``;
a killed run resumes at the first incomplete phase, from its ``last.ckpt`` if it has one.
What a protocol adds (the recovery protocol of docs/science.md 5–7, the random-search probe) comes
through its phase hooks (loclin.protocols.train.hooks), named in loclin.protocols.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf

from loclin.callbacks.base import LiveFigures, MeasurementCallback, MemoryReport, metric
from loclin.callbacks.divergence import Diverged
from loclin.datamodules.phased import PhasedDataModule
from loclin.protocols.registry import protocol_for
from loclin.protocols.train.build import (
    PhaseLogger,
    build_activation_shift,
    build_geometry_callbacks,
    build_logger,
    build_module_and_data,
    build_trainer,
)
from loclin.protocols.train.config import phase_optimizer, phase_plan
from loclin.runs.progress import phase_progress
from loclin.runs.rundir import (
    CHECKPOINT_DIR,
    END_CHECKPOINT,
    LAST_CHECKPOINT,
    PHASES_DIR,
    RECOVERY_DIR,
    SUMMARY_FILE,
    write_config,
    write_json,
)
from loclin.runs.tensorboard import drift_layout, hparams_of, write_run_end


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
        for callback in phase_callbacks:
            callback.draw_figures = cfg.trainer.figures
        reports = [MemoryReport(phase_callbacks)] if phase_callbacks else []
        if measurements and cfg.trainer.figures:
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
    from loclin.reports.readings import headline_numbers, run_verdict

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
