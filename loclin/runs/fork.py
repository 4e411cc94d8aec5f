"""Fork a run from a completed phase: ``python train.py --fork RUN_DIR --after PHASE key=value ...``.

The new run directory reuses the parent's phases up to PHASE as they are (their part summaries,
their ``end.ckpt`` and the recovery files θ_init and the static bases, hard-linked, or copied
across file systems), and runs only the later phases with the overrides. Many recoveries from
one θ_0 then cost only the recoveries. An override that would change what the parent already
computed (the model, the data, the geometry, an earlier phase, the static bases) is refused with
one line; later phases and the recover phase's measurement keys may change.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from loclin.config import ConfigError, load_config
from loclin.protocols.train.config import phase_plan
from loclin.runs.rundir import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    END_CHECKPOINT,
    PHASES_DIR,
    RECOVERY_DIR,
    RunDirError,
    check_checkpoint_readable,
    check_config_unedited,
)

# names and execution settings: how the later phases run (processes, threads), not what was computed
ALWAYS_FREE = (
    "experiment",
    "output_root",
    "trainer.progress_bar",
    "trainer.log_every_n_steps",
    "fork",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.strategy",
    "trainer.grad_shards",
    "trainer.cpu_threads",
    "trainer.keep_checkpoints",
    "trainer.figures",
    "trainer.background_measurements",
)
RECOVER_MEASUREMENT = (
    "prefix_ms",
    "constrained_m",
    "outside_m",
    "replica",
    "control_m",
    "control_draws",
    "offset_draws",
    "theta0_batches",
    "capture_at_steps",
    "hurt_threshold",
)
DEGRADATION_KEYS = ("degradation", "negation_scale", "noise_scale", "reset_group")


def flatten(node, prefix: str = "") -> dict[str, object]:
    """Dotted keys of a config container; lists of sections (the phases) by index."""
    if isinstance(node, list) and node and all(isinstance(item, dict) for item in node):
        node = {str(i): item for i, item in enumerate(node)}
    if isinstance(node, dict):
        out: dict[str, object] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def free_keys(cfg: DictConfig, after: str) -> list[str]:
    """Keys (prefixes) a fork after phase ``after`` may change: the later phases and what only they use."""
    names = [p.name for p in phase_plan(cfg)]
    cut = names.index(after)
    free = [*ALWAYS_FREE, *(f"phases.{i}" for i in range(cut + 1, len(names)))]
    r = cfg.recovery  # read by the recovery protocol only: free when its phases come after the cut
    if r.recover_phase in names and names.index(r.recover_phase) > cut:
        free += [f"recovery.{key}" for key in RECOVER_MEASUREMENT]
    if r.degrade_phase in names and names.index(r.degrade_phase) > cut:
        free += [f"recovery.{key}" for key in DEGRADATION_KEYS]
    return free


def fork_config(parent: Path, after: str, overrides: list[str]) -> DictConfig:
    """The fork's config: the parent's with ``overrides``, checked against what the parent computed."""
    parent = Path(parent)
    if not (parent / CONFIG_FILE).is_file():
        raise RunDirError(f"--fork: '{parent}' is not a loclin run directory (no {CONFIG_FILE})")
    check_config_unedited(parent, "fork")  # as --resume does: the parent's checkpoints hold the config it wrote
    parent_cfg = load_config(parent / CONFIG_FILE)
    names = [p.name for p in phase_plan(parent_cfg)]
    if after not in names:
        raise ConfigError(f"--after {after}: the parent's phases are {names}")
    reuse = "the fork reuses it: re-run the parent, or fork another run"
    for name in names[: names.index(after) + 1]:
        if (
            not (parent / PHASES_DIR / f"{name}.json").is_file()
            or not (parent / CHECKPOINT_DIR / name / END_CHECKPOINT).is_file()
        ):
            raise RunDirError(
                f"--fork: the parent's phase '{name}' is not complete (no {PHASES_DIR}/{name}.json or its "
                f"{END_CHECKPOINT})"
            )
        check_checkpoint_readable(parent / CHECKPOINT_DIR / name / END_CHECKPOINT, reuse)
        try:
            json.loads((parent / PHASES_DIR / f"{name}.json").read_text())
        except ValueError:
            raise RunDirError(f"--fork: the parent's '{PHASES_DIR}/{name}.json' is not valid JSON; {reuse}") from None
    for saved in sorted((parent / RECOVERY_DIR).glob("*.pt")):
        check_checkpoint_readable(saved, reuse)
    cfg = load_config(parent / CONFIG_FILE, [*overrides, f"fork.parent={parent.resolve()}", f"fork.after={after}"])
    fork_names = [p.name for p in phase_plan(cfg)]
    if fork_names[: len(names[: names.index(after) + 1])] != names[: names.index(after) + 1]:
        raise ConfigError(
            f"--fork: the phases up to '{after}' must stay {names[: names.index(after) + 1]}, got {fork_names}"
        )
    free = free_keys(parent_cfg, after)
    before, now = flatten(OmegaConf.to_container(parent_cfg)), flatten(OmegaConf.to_container(cfg))
    for key in sorted(set(before) | set(now)):
        if any(key == f or key.startswith(f"{f}.") for f in free):
            continue
        if before.get(key) != now.get(key):
            raise ConfigError(
                f"--fork: '{key}' would change what the parent computed up to phase '{after}' "
                f"(parent {before.get(key)!r}, fork {now.get(key)!r}); only later phases and their measurement keys "
                "may change"
            )
    return cfg


def link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def populate_fork(parent: Path, run_dir: Path, cfg: DictConfig) -> None:
    """The parent's completed phases up to ``cfg.fork.after`` and its recovery files, in ``run_dir``."""
    names = [p.name for p in phase_plan(cfg)]
    for name in names[: names.index(cfg.fork.after) + 1]:
        link_or_copy(parent / PHASES_DIR / f"{name}.json", run_dir / PHASES_DIR / f"{name}.json")
        link_or_copy(parent / CHECKPOINT_DIR / name / END_CHECKPOINT, run_dir / CHECKPOINT_DIR / name / END_CHECKPOINT)
    for file in sorted((parent / RECOVERY_DIR).glob("*.pt")):
        link_or_copy(file, run_dir / RECOVERY_DIR / file.name)
