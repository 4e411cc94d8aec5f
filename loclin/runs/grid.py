"""A sweep's points: the grid and seeds parsed from the command line, one point per assignment and
seed (and fork parent), its name, its run directory and the command that runs it."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from loclin.config import ConfigError
from loclin.runs.launchers import (
    stop_live_point,
)
from loclin.runs.rundir import SUMMARY_FILE, RunDirError, check_resumable

TRAIN = [sys.executable, "-m", "loclin.train"]  # the installed package's, or a checkout's: no path to a script

MANIFEST = "sweep.json"  # a sweep folder's manifest: its command, grid, seeds and points


def parse_grid(items: list[str]) -> dict[str, list]:
    """``key=[a,b,c]`` → {key: [a, b, c]} with OmegaConf's value grammar (numbers stay numbers).
    A key given twice, or a value listed twice, is refused: each point runs once, so a repeat would
    count one measurement as two seeds' worth of certainty."""
    grid: dict[str, list] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid '{item}' is not of the form key=[a,b,...]")
        key, _ = item.split("=", 1)
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; give its values once, in one list")
        try:
            values = OmegaConf.to_container(OmegaConf.from_dotlist([item]))
        except (OmegaConfBaseException, yaml.YAMLError, ValueError) as error:
            reason = str(error).splitlines()[0]
            raise ConfigError(f"--grid '{item}' is not key=[a,b,...] ({reason})") from None
        for part in key.split("."):
            values = values[part]
        grid[key] = values if isinstance(values, list) else [values]
        if not grid[key]:
            raise ConfigError(f"--grid {key} has no values")
        texts = [value_text(v) for v in grid[key]]
        repeated = sorted({t for t in texts if texts.count(t) > 1})
        if repeated:
            raise ConfigError(f"--grid {key} lists {', '.join(repeated)} more than once; each point runs once")
    return grid


def parse_seeds(text: str | None) -> list[int]:
    """``0,1,2`` → [0, 1, 2]; anything else (an empty entry, a word, a repeat) is one line."""
    if text is None:
        return [0]
    parts = [part.strip() for part in text.split(",")]
    if not all(part.lstrip("-").isdigit() for part in parts):
        raise ConfigError(f"--seeds '{text}' must be comma-separated whole numbers, e.g. --seeds 0,1,2")
    seeds = [int(part) for part in parts]
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise ConfigError(f"--seeds '{text}' repeats {repeated}; each seed runs once")
    return seeds


def value_text(value) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def point_name(assignment: dict, seed: int) -> str:
    """A readable directory name: ``p2.optim.name=sgd_p2.lr=0.1__seed0`` (phases.i → pi)."""
    parts = [f"{key.replace('phases.', 'p')}={value_text(v)}" for key, v in assignment.items()]
    safe = "_".join(parts).replace("/", "-").replace(" ", "")
    return f"{safe or 'base'}__seed{seed}"


def expand(grid: dict[str, list], seeds: list[int], parents: list[str]) -> list[dict]:
    """Every (grid cell, seed): its overrides, name and parent (for a forked sweep)."""
    points = []
    for values in itertools.product(*grid.values()) if grid else [()]:
        assignment = dict(zip(grid, values))
        for i, seed in enumerate(seeds):
            parent = (parents[i] if len(parents) == len(seeds) else parents[0]) if parents else None
            overrides = [f"{key}={value_text(value)}" for key, value in assignment.items()]
            if not parents:
                overrides.append(f"seed={seed}")
            points.append(
                {
                    "name": point_name(assignment, seed),
                    "cell": assignment,
                    "seed": seed,
                    "parent": parent,
                    "overrides": overrides,
                }
            )
    return points


def latest_version(point_dir: Path) -> Path | None:
    """A point's newest run directory (``version_<n>`` with the largest n), or None."""
    versions = [p for p in point_dir.glob("version_*") if p.name.split("_")[1].isdigit()]
    return max(versions, key=lambda p: int(p.name.split("_")[1]), default=None)


def point_command(manifest: dict, point: dict, sweep_dir: Path) -> list[str]:
    """The train.py command that starts, or resumes, one point (None when it is finished)."""
    root = sweep_dir / "points"
    latest = latest_version(root / point["name"])
    if latest is not None:
        if (latest / SUMMARY_FILE).is_file():
            return []
        stop_live_point(latest)
        try:
            check_resumable(latest)
            return [*TRAIN, "--resume", str(latest)]
        except RunDirError:
            pass  # killed before its first checkpoint: a fresh version of the point
    where = [f"output_root={root}", f"experiment={point['name']}", "trainer.progress_bar=false"]
    if point["parent"]:
        return [
            *TRAIN,
            "--fork",
            point["parent"],
            "--after",
            manifest["after"],
            *where,
            *manifest["overrides"],
            *point["overrides"],
        ]
    return [
        *TRAIN,
        "--config",
        manifest["config"],
        *where,
        *manifest["overrides"],
        *point["overrides"],
    ]


def point_states(manifest: dict, out: Path) -> dict[str, dict]:
    """Each point's state from its newest run directory: ``finished``, ``diverged`` (its summary
    says where), or ``not finished`` (failed, killed or not run)."""
    states = {}
    for point in manifest["points"]:
        latest = latest_version(out / "points" / point["name"])
        summary_file = latest / SUMMARY_FILE if latest is not None else None
        if summary_file is None or not summary_file.is_file():
            states[point["name"]] = {"state": "not finished"}
            continue
        try:
            diverged = json.loads(summary_file.read_text()).get("diverged")
        except ValueError:
            states[point["name"]] = {"state": "not finished", "why": f"{summary_file} is not valid JSON"}
            continue
        if diverged:
            where = {key: diverged[key] for key in ("phase", "step", "message") if key in diverged}
            states[point["name"]] = {"state": "diverged", **where}
        else:
            states[point["name"]] = {"state": "finished"}
    return states
