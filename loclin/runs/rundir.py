"""Run directories: ``<root>/<experiment>/version_<n>/``, never reused, written atomically.

Under data parallelism every process runs the same script: only global rank 0 creates the
run directory and writes files (the writers below are no-ops elsewhere); the other ranks
find the directory in ``LOCLIN_RUN_DIR``, which rank 0 exports before it launches them."""

from __future__ import annotations

import hashlib
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
CONFIG_DIGEST = ".config.sha256"  # config.yaml's sha256 as the run wrote it: a resume refuses an edited config
LOCK_FILE = ".lock"  # flock-ed by the live process of the run (the kernel frees it when the process dies)


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


_held_locks: dict[Path, int] = {}  # run directory -> descriptor of its lock, open while this process lives


def lock_run_dir(run_dir: str | Path, what: str = "run directory") -> None:
    """Make this process the folder's only live writer, or RunDirError naming the holder.

    An exclusive ``flock`` on ``<run_dir>/.lock``, never released while the process lives; the
    kernel drops it when the process exits or is killed, so a stale lock file blocks nothing.
    Only rank 0 locks: the data-parallel ranks it launches share its run directory. A sweep
    directory is locked the same way (``what`` names it in the message)."""
    import fcntl

    run_dir = Path(run_dir).resolve()
    if global_rank() > 0 or run_dir in _held_locks:
        return
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise RunDirError(f"cannot lock {what} '{run_dir}': {error.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunDirError(
            f"{what} '{run_dir}' is in use by a live process (pid {holder}); wait for it to end or stop it"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held_locks[run_dir] = fd


def live_holder(run_dir: str | Path) -> int | None:
    """The pid of the live process that holds ``run_dir``'s lock, or None when no process does
    (the lock is probed, never kept)."""
    import fcntl

    lock = Path(run_dir) / LOCK_FILE
    if not lock.is_file() or Path(run_dir).resolve() in _held_locks:
        return None
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        text = os.read(fd, 32).decode(errors="replace").strip()
        return int(text) if text.isdigit() else -1
    finally:
        os.close(fd)


def release_run_dir(run_dir: str | Path) -> None:
    """Drop this process's lock on run_dir (tests; a process that exits drops it anyway)."""
    fd = _held_locks.pop(Path(run_dir).resolve(), None)
    if fd is not None:
        os.close(fd)


def config_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_config(run_dir: str | Path, text: str) -> None:
    """config.yaml, and its digest beside it: what lets a resume tell an edited config."""
    atomic_write_text(Path(run_dir) / CONFIG_FILE, text)
    atomic_write_text(Path(run_dir) / CONFIG_DIGEST, config_digest(text) + "\n")


def check_config_unedited(run_dir: Path, action: str = "resume") -> None:
    """RunDirError when config.yaml differs from what the run wrote (no digest: a run from before
    digests were kept, nothing to check). Its checkpoints hold that config's model and state."""
    digest = run_dir / CONFIG_DIGEST
    if digest.is_file() and digest.read_text().strip() != config_digest((run_dir / CONFIG_FILE).read_text()):
        raise RunDirError(
            f"'{run_dir / CONFIG_FILE}' was edited after the run started, and its checkpoints hold the original "
            f"config; undo the edit to {action} it, or start a new run with --config on a copy"
        )


def check_resumable(run_dir: str | Path) -> Path:
    """The config file of a run to resume, or RunDirError naming what is missing, edited or broken."""
    run_dir = Path(run_dir)
    config = run_dir / CONFIG_FILE
    if not run_dir.is_dir():
        raise RunDirError(f"run directory '{run_dir}' not found")
    if not config.is_file():
        raise RunDirError(f"'{run_dir}' has no {CONFIG_FILE}; is it a loclin run directory?")
    check_config_unedited(run_dir)
    if (run_dir / SUMMARY_FILE).is_file():
        raise RunDirError(f"'{run_dir}' already finished ({SUMMARY_FILE} exists); start a new run instead")
    # a run killed before its first checkpoint starts again from step 0, in its own directory
    checkpoints = sorted(run_dir.rglob("*.ckpt"))  # also those of sub-runs (a random-search width sweep)
    for checkpoint in checkpoints:
        check_checkpoint_readable(checkpoint)
    for saved in sorted((run_dir / RECOVERY_DIR).glob("*.pt")):  # θ_init, θ*, the bases: written once, at a phase end
        check_checkpoint_readable(
            saved, "it is written once, at the end of its phase: start a new run, or --fork a run that has it"
        )
    return config


RETRY_PREVIOUS_PHASE = "delete it to resume from the previous phase, or start a new run"


def check_checkpoint_readable(path: Path, advice: str = RETRY_PREVIOUS_PHASE) -> None:
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
        raise RunDirError(f"checkpoint '{path}' is unreadable: {reason}; {advice}") from None
    if broken is not None:
        raise RunDirError(f"checkpoint '{path}' is corrupt (member {broken} fails its CRC); {advice}")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write through a temporary file in the same directory and rename it into place (rank 0)."""
    if global_rank() > 0:
        return
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; a result file is as readable as any other
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _json_safe(value: Any) -> Any:
    """inf/nan are not JSON: write them as the strings "inf", "-inf", "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _from_json_safe(value: Any) -> Any:
    """The inverse of :func:`_json_safe`: the strings "nan", "inf" and "-inf" are numbers again."""
    if isinstance(value, str):
        return NON_FINITE.get(value, value)
    if isinstance(value, dict):
        return {k: _from_json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json_safe(v) for v in value]
    return value


def atomic_torch_save(obj, path: str | Path) -> None:
    import torch

    if global_rank() > 0:
        return
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:  # a full disk or a kill: no half-written file left behind
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(_json_safe(data), indent=2) + "\n")


def read_summary(run_dir: str | Path) -> dict:
    """A run's summary.json, with non-finite numbers (written as strings) as floats again."""
    path = Path(run_dir) / SUMMARY_FILE
    if not path.is_file():
        raise RunDirError(f"'{run_dir}' has no {SUMMARY_FILE} (did the run finish?)")
    try:
        summary = _from_json_safe(json.loads(path.read_text()))
    except json.JSONDecodeError as error:
        raise RunDirError(f"{path}: not valid JSON ({error.msg})") from None
    if (
        not isinstance(summary, dict)
        or not {"protocol", "metrics"} & summary.keys()
        or not isinstance(summary.get("metrics", {}), dict)
    ):
        raise RunDirError(
            f"{path} is JSON but not a loclin summary (a mapping with 'protocol' and 'metrics'; got "
            f"{type(summary).__name__}{' without them' if isinstance(summary, dict) else ''})"
        )
    return summary
