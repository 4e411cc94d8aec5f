"""What loclin adds to TensorBoard beyond the scalars: the custom-scalars layout, the HParams table
and the verdict text panel.

Drift scalars at a lag are written as runs of their own (callbacks.lag_runs): the tag
``drift/grad/overlap`` of the runs ``lag10``, ``lag20``, … is one chart with a coloured line per lag.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

# the config keys an HParams row shows (those a run has), by the section they live in; a family's
# model section and a protocol's own section only when the run is of that family or protocol
HPARAM_KEYS = {
    "": ("experiment", "seed", "protocol", "family"),
    "data": ("batch_size", "tasks", "train_tasks"),
    "optim": ("name", "lr", "weight_decay", "momentum", "schedule", "warmup_steps"),
    "trainer": ("max_steps", "precision", "devices"),
    "geometry": ("window", "k", "basis_stride", "drift_stride", "sketch_dim", "groups"),
    "model": ("n_layers", "d_model", "n_heads"),
    "lm": ("model", "lora.rank", "lora.alpha", "lora.target_modules"),
    "recovery": ("target", "degradation", "k", "control_m"),
    "random_search": ("samples", "n_star"),
}
FAMILY_SECTIONS = {"synthetic": "model", "lora": "lm"}
HPARAM_PREFIX = "hparams/"  # the headline numbers' tags in the HParams table


def drift_layout(
    drift_sources: Sequence[str], sources: Sequence[str], tasks: Sequence[str], activation_shift: bool = False
) -> dict:
    """Layout for SummaryWriter.add_custom_scalars: {category: {chart: [kind, [tag regexes]]}}.

    A regex matches a tag in every run, so ``drift/grad/overlap$`` draws one line per lag run."""
    layout: dict[str, dict[str, list]] = {"drift": {}, "geometry": {}, "tasks": {}}
    for source in drift_sources:
        drift = f"drift/{source}"
        layout["drift"][f"{source}: overlap, one line per lag"] = ["Multiline", [rf"{drift}/overlap$"]]
        layout["drift"][f"{source}: stale-basis capture, one line per lag"] = [
            "Multiline",
            [rf"{drift}/stale_capture$"],
        ]
        layout["drift"][f"{source}: noise ceiling (running mean ± std)"] = [
            "Margin",
            [f"{drift}/noise_ceiling_mean", f"{drift}/noise_ceiling_lower", f"{drift}/noise_ceiling_upper"],
        ]
        layout["drift"][f"{source}: disjoint half-window overlap and the ceiling"] = [
            "Multiline",
            [rf"{drift}/half_overlap$", rf"{drift}/noise_ceiling$"],
        ]
        layout["drift"][f"{source}: overlap ÷ noise ceiling (the honest drift)"] = [
            "Multiline",
            [rf"{drift}/overlap_ratio$"],
        ]
    for source in sources:
        layout["geometry"][f"{source}: top-k energy per group"] = ["Multiline", [rf"geometry/{source}/energy_topk.*"]]
        layout["geometry"][f"{source}: held-out capture"] = ["Multiline", [rf"geometry/{source}/heldout_capture_h\d+"]]
    layout["tasks"]["held-out accuracy"] = ["Multiline", [rf"val/({'|'.join(tasks)})/acc"]]
    layout["tasks"]["per-task held-out gradient capture"] = ["Multiline", [r"pertask/[a-z]+/heldout_capture"]]
    if activation_shift:
        layout["activation"] = {
            "cos(activation shift, CAA) per block": ["Multiline", [r"activation/cos_shift_caa/block\d+"]],
            "cos with CAA: mean over blocks, last stride and since start": [
                "Multiline",
                [r"activation/cos_(total_)?shift_caa_mean"],
            ],
        }
    return layout


def hparams_of(cfg: DictConfig) -> dict[str, object]:
    """The config keys a run is compared by (HPARAM_KEYS), flattened ("optim/lr"). Lists become
    text; unset keys are left out (HParams takes numbers, text and booleans only)."""
    family_sections = set(FAMILY_SECTIONS.values())
    flat: dict[str, object] = {}
    for section, keys in HPARAM_KEYS.items():
        if section in family_sections and section != FAMILY_SECTIONS.get(cfg.family):
            continue
        if section in ("recovery", "random_search") and section != cfg.protocol:
            continue
        for key in keys:
            dotted = f"{section}.{key}" if section else key
            value = OmegaConf.select(cfg, dotted)
            if value is not None:
                flat[dotted.replace(".", "/")] = hparam_value(value)
    return flat


def hparam_value(value: object) -> bool | int | float | str:
    """A config value as HParams takes it: numbers, text and booleans as they are, anything else
    (a list) as its text."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(OmegaConf.to_container(value)) if OmegaConf.is_config(value) else str(value)


def write_run_end(logger: TensorBoardLogger, hparams: dict, headlines: dict[str, float], verdict: str, step: int):
    """The HParams row (the config against the headline numbers, written as scalars
    ``hparams/<name>`` at ``step``) and the verdict as a text panel. Non-finite headlines are left
    out of the table (HParams cannot sort them)."""
    metrics = {HPARAM_PREFIX + name: value for name, value in headlines.items() if math.isfinite(value)}
    # log_metrics of loclin's PhaseLogger adds the last phase's offset; ``step`` is on the run's axis already
    logger.log_hyperparams(hparams, metrics=metrics or None, step=step - getattr(logger, "step_offset", 0))
    if verdict:
        logger.experiment.add_text("verdict", verdict, global_step=step)
    logger.experiment.flush()
