"""What the recovery callbacks share: the held-out scores of the target task, the seeded random
positions of the controls, and a recovery length's row of metrics and scalars."""

from __future__ import annotations

import contextlib

import lightning as L
import torch
from loclin.callbacks.base import metric
from loclin.geometry.capture import random_capture_baseline
from loclin.geometry.recovery_progress import (
    upper_percentile,
)


def heldout_on_device(trainer: L.Trainer, pl_module: L.LightningModule, target: str) -> dict:
    """Task ``target``'s held-out batch, on the module's device."""
    return {key: value.to(pl_module.device) for key, value in trainer.datamodule.heldout_batch(target).items()}


def heldout_scores(trainer: L.Trainer, pl_module: L.LightningModule, target: str) -> dict:
    """Task ``target``'s held-out loss and accuracy at the current θ."""
    with torch.no_grad():
        return pl_module.evaluate_batch(heldout_on_device(trainer, pl_module, target))


def no_sync(trainer: L.Trainer):
    """DDP's ``no_sync`` of the wrapped module (its reducer stays out of a backward pass made
    outside its forward), or a plain context in one process."""
    wrapped = getattr(trainer.strategy, "model", None)
    return wrapped.no_sync() if hasattr(wrapped, "no_sync") else contextlib.nullcontext()


def control_positions(steps: int, m: int, draws: int, seed: int, salt: int = 0) -> list[list[int]]:
    """``draws`` seeded sets of m distinct recovery positions in [0, steps), each in draw order
    (its first j positions are the j-update control); ``salt`` gives another length its own draws."""
    generator = torch.Generator().manual_seed(seed * 1000 + 29 + 100_003 * salt)
    return [torch.randperm(steps, generator=generator)[:m].tolist() for _ in range(draws)] if steps >= m else []


def length_metrics(row: dict, target: str, dim: int) -> dict:
    """The C4 deciders at one recovery length T (a row of ``capture_at_length``), for m = 8: the
    offset-block null, S0, the shares, the capture after the prefix, the function-space pair and
    steps_to_recover, as summary metrics ``recovery.capture_at_T{T}.*`` (nothing for an absent part)."""
    at, metrics, prefix = f"after T = {row['T']} recovery steps", {}, f"recovery.capture_at_T{row['T']}"
    if 8 not in row["m"]:
        return metrics
    i = row["m"].index(8)
    metrics[f"{prefix}.P8_after_prefix"] = metric(
        row["after_prefix"][i],
        f"cap(P_8, θ_T − θ_8): the displacement made after the prefix, {at}",
        random_capture_baseline(8, dim),
    )
    metrics[f"{prefix}.path_share_P8"] = metric(row["path_share"][i], f"Σ_(t<8) ‖u_t‖ / Σ_(t<T) ‖u_t‖, {at}")
    metrics[f"{prefix}.displacement_share_P8"] = metric(row["displacement_share"][i], f"‖θ_8 − θ_0‖ / ‖Δ_T‖, {at}")
    metrics[f"{prefix}.delta_norm"] = metric(row["delta_norm"], f"‖Δ_T‖ = ‖θ_T − θ_0‖, {at}")
    offset = row.get("offset")
    if offset and offset["m"] == 8 and offset["captures"]:
        captures = offset["captures"]
        metrics[f"{prefix}.P8_offset_mean"] = metric(
            sum(captures) / len(captures),
            f"null: cap of Δ_T by 8 consecutive updates at {len(captures)} offsets in [8, T − 8), mean, {at}",
            random_capture_baseline(8, dim),
        )
        metrics[f"{prefix}.P8_offset_p95"] = metric(
            upper_percentile(captures), f"null: the 95th percentile of those {len(captures)} offset blocks, {at}"
        )
    if "S0_theta0_updates" in row:
        metrics[f"{prefix}.S0_theta0_updates"] = metric(
            row["S0_theta0_updates"],
            f"null: cap of Δ_T by the optimizer's step-0 updates at θ_0 on fresh batches (S0), {at}",
        )
    if row.get("projected", {}).get("m") == 8:
        metrics[f"{prefix}.projected_acc_P8"] = metric(
            row["projected"]["acc"], f"task-{target} held-out accuracy at θ_0 + P_8 P_8ᵀ Δ_T, {at}"
        )
    for fraction, step in row.get("steps_to_recover", {}).items():
        if step is not None:
            metrics[f"{prefix}.steps_to_{round(float(fraction) * 100)}pct"] = metric(
                step, f"the first evaluated step with {float(fraction):.0%} of the accuracy gain made by T, {at}"
            )
    return metrics


def length_scalars(row: dict) -> dict[str, float]:
    """TensorBoard lines at step T (``recovery_by_T/…``): P_8 and its nulls, and the shares."""
    metrics = length_metrics(row, "", 1)
    names = (
        "P8_after_prefix",
        "P8_offset_mean",
        "P8_offset_p95",
        "S0_theta0_updates",
        "path_share_P8",
        "displacement_share_P8",
    )
    scalars = {
        f"recovery_by_T/{name}": metrics[f"recovery.capture_at_T{row['T']}.{name}"]["value"]
        for name in names
        if f"recovery.capture_at_T{row['T']}.{name}" in metrics
    }
    if 8 in row["m"]:
        i = row["m"].index(8)
        scalars["recovery_by_T/P8_updates"] = row["prefix"][i]
        scalars["recovery_by_T/L8_last_updates"] = row["last"][i]
        if row["random"][i]:
            scalars["recovery_by_T/R8_random_positions"] = sum(row["random"][i]) / len(row["random"][i])
    return scalars
