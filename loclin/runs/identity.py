"""What made a run: its science digest, and the few fields a person reads to tell two runs apart.

A published map point is identified by what made it, never by its name alone (a sweep, a cell and
a seed can be re-used by a run of another model). The digest is the sha256 of

    {the resolved config, less names and execution settings (fork.ALWAYS_FREE),
     the parent's digest (a fork: the parent's config and the numbers of the phases it reuses),
     loclin's version}

so two runs share a digest exactly when the same code ran the same model, data, optimizer,
measurements and seed from the same parent. Threads are an execution setting (results move in
the last bit): they are kept beside the digest in ``made_by``, not in it.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from loclin.runs.fork import ALWAYS_FREE, flatten
from loclin.runs.rundir import CONFIG_FILE, PHASES_DIR

MADE_BY_KEYS = ("protocol", "family", "recovery.target", "recovery.degradation", "seed")


def loclin_version() -> str:
    try:
        return metadata.version("loclin")
    except metadata.PackageNotFoundError:  # a checkout that was never installed
        return "unknown"


def science_config(cfg: DictConfig) -> dict[str, object]:
    """The config's dotted keys that decide the numbers (names and execution settings left out)."""
    flat = flatten(OmegaConf.to_container(cfg, resolve=True))
    return {k: v for k, v in flat.items() if not any(k == f or k.startswith(f"{f}.") for f in ALWAYS_FREE)}


def sha256(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def parent_digest(cfg: DictConfig) -> str | None:
    """A fork's parent: its own run digest and the phase records it hands over (None for no fork)."""
    if not cfg.fork.parent:
        return None
    parent = Path(cfg.fork.parent)
    from loclin.config import load_config
    from loclin.protocols.train.config import phase_plan

    parent_cfg = load_config(parent / CONFIG_FILE)
    names = [p.name for p in phase_plan(parent_cfg)]
    reused = names[: names.index(cfg.fork.after) + 1] if cfg.fork.after in names else names
    phases = {name: (parent / PHASES_DIR / f"{name}.json").read_text() for name in reused}
    return sha256({"parent": run_digest(parent_cfg), "phases": phases})


def run_digest(cfg: DictConfig) -> str:
    return sha256({"config": science_config(cfg), "parent": parent_digest(cfg), "loclin": loclin_version()})


def run_identity(run_dir: str | Path, threads: int | None = None) -> dict:
    """``{"digest": ..., "made_by": {...}}`` of a finished run directory (empty where it has no
    readable config: a record made before digests, or by hand)."""
    from loclin.config import ConfigError, load_config

    try:
        cfg = load_config(Path(run_dir) / CONFIG_FILE)
        digest = run_digest(cfg)
    except (ConfigError, OSError):
        return {}
    flat = science_config(cfg)
    made_by = {key: flat[key] for key in MADE_BY_KEYS if key in flat}
    if flat.get("protocol") == "steer":  # the pretrained model, where there is one
        made_by["model"] = flat.get("steer.model")
    elif flat.get("family") == "lora":
        made_by["model"] = flat.get("lm.model")
    made_by["parent"] = (parent_digest(cfg) or "")[:12] or None
    made_by["loclin"] = loclin_version()
    made_by["threads"] = cfg.trainer.cpu_threads or threads
    return {"digest": digest, "made_by": made_by}


def difference(earlier: dict, new: dict) -> str:
    """What tells two records' makers apart, for a one-line refusal."""
    a, b = earlier.get("made_by") or {}, new.get("made_by") or {}
    if not earlier.get("digest"):
        return "the published point has no digest (it was published before points carried one)"
    changed = [f"{key} {a.get(key)!r} → {b.get(key)!r}" for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]
    if changed:
        return ", ".join(changed)
    return f"the config differs (digest {earlier['digest'][:12]} → {new.get('digest', '')[:12]})"
