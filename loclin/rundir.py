"""Run directories: ``<root>/<experiment>/version_<n>/``, never reused, written atomically.

Under data parallelism every process runs the same script: only global rank 0 creates the
run directory and writes files (the writers below are no-ops elsewhere); the other ranks
find the directory in ``LOCLIN_RUN_DIR``, which rank 0 exports before it launches them."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"  # rewritten every trainer.eval_every steps within a phase
END_CHECKPOINT = "end.ckpt"  # written once a phase is complete
PHASES_DIR = "phases"  # one JSON per completed phase
RECOVERY_DIR = "recovery"  # θ_init, and θ* with the static bases frozen there


RUN_DIR_ENV = "LOCLIN_RUN_DIR"


class RunDirError(OSError):
    """A run directory cannot be created or read; the message is one line."""


def global_rank() -> int:
    """This process's rank as the launchers export it (0 without data parallelism)."""
    for variable in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        if variable in os.environ:
            return int(os.environ[variable])
    return 0


def launched_run_dir() -> Path | None:
    """The run directory rank 0 made, in a process it launched (rank > 0); else None."""
    if global_rank() > 0 and os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    return None


def create_run_dir(root: str | Path, experiment: str) -> Path:
    """Create the first free ``version_<n>`` under root/experiment (atomic: mkdir fails if taken)."""
    parent = Path(root) / experiment
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunDirError(f"cannot create run directory under '{parent}': {error.strerror}") from None
    existing = [int(p.name.split("_")[1]) for p in parent.glob("version_*") if p.name.split("_")[1].isdigit()]
    version = max(existing, default=-1) + 1
    while True:
        candidate = parent / f"version_{version}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            version += 1
        except OSError as error:
            raise RunDirError(f"cannot create run directory '{candidate}': {error.strerror}") from None


def check_resumable(run_dir: str | Path) -> Path:
    """The config file of a run to resume, or RunDirError naming what is missing."""
    run_dir = Path(run_dir)
    config = run_dir / CONFIG_FILE
    if not run_dir.is_dir():
        raise RunDirError(f"run directory '{run_dir}' not found")
    if not config.is_file():
        raise RunDirError(f"'{run_dir}' has no {CONFIG_FILE}; is it a loclin run directory?")
    if (run_dir / SUMMARY_FILE).is_file():
        raise RunDirError(f"'{run_dir}' already finished ({SUMMARY_FILE} exists); start a new run instead")
    checkpoints = sorted(run_dir.rglob("*.ckpt"))  # also those of sub-runs (a random-search width sweep)
    if not checkpoints:
        raise RunDirError(f"'{run_dir}' has no checkpoint yet; start a new run instead")
    for checkpoint in checkpoints:
        check_checkpoint_readable(checkpoint)
    return config


def check_checkpoint_readable(path: Path) -> None:
    """A checkpoint torch.save wrote is a zip archive; anything else (truncated, overwritten,
    unreadable) is one RunDirError line, before the run is rebuilt."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
    except (OSError, zipfile.BadZipFile) as error:
        reason = (
            error.strerror
            if isinstance(error, OSError) and error.strerror
            else "not a torch checkpoint (truncated or corrupt)"
        )
        raise RunDirError(
            f"checkpoint '{path}' is unreadable: {reason}; delete it to resume from the previous phase, or start a new "
            "run"
        ) from None
    if broken is not None:
        raise RunDirError(
            f"checkpoint '{path}' is corrupt (member {broken} fails its CRC); delete it to resume from the previous "
            "phase, or start a new run"
        )


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write through a temporary file in the same directory and rename it into place (rank 0)."""
    if global_rank() > 0:
        return
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_safe(value: Any) -> Any:
    """inf/nan are not JSON: write them as the strings "inf", "-inf", "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def atomic_torch_save(obj, path: str | Path) -> None:
    import torch

    if global_rank() > 0:
        return
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_json(path: str | Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(_json_safe(data), indent=2) + "\n")


def read_summary(run_dir: str | Path) -> dict:
    path = Path(run_dir) / SUMMARY_FILE
    if not path.is_file():
        raise RunDirError(f"'{run_dir}' has no {SUMMARY_FILE} (did the run finish?)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise RunDirError(f"{path}: not valid JSON ({error.msg})") from None
