"""Sweeps: one run directory per grid point and seed, resumable, in parallel workers.

    python -m loclin.sweep --config conf/recovery_synthetic.yaml \\
        --grid phases.2.optim.name=[sgd,adamw] --grid phases.2.lr=[0.01,0.1] --seeds 0,1 [--workers 2]
    python -m loclin.sweep --fork runs/recovery_synthetic/version_0 --after degrade --grid ... [--seeds 0]
    python analyze.py SWEEP_DIR --key recovery.capture.P8_updates

The sweep directory (``--out``, default ``<output_root>/sweeps/<experiment>``) holds
``sweep.json`` (the manifest: the command's config or parent, the grid, the seeds and every
point's overrides) and ``points/<point>/version_<n>/``, a plain run directory per point.
Running the same command again skips finished points (summary.json), resumes killed ones
(``train.py --resume``) and starts the rest; run with more ``--seeds`` (and parents), it adds
them. A forked sweep takes one parent per seed with ``--fork RUN [RUN ...]`` (in the order of
``--seeds``), or one parent for every point.

Each point runs as its own ``python -m loclin.train`` process (a checkout or the installed
package). The launcher is an existing engine, never a scheduler of ours: ``local`` (a pool of
``--workers`` subprocesses, the default), ``submitit`` (SLURM, or its local executor with
``--cluster local``) and ``ray`` (``ray.remote`` tasks on a running or local Ray instance); the
last two are optional extras (``pip install loclin[sweep]``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from loclin.config import ConfigError, load_config
from loclin.runs.fork import ALWAYS_FREE
from loclin.runs.grid import (
    MANIFEST,
    expand,
    parse_grid,
    parse_seeds,
    point_command,
    point_states,
)
from loclin.runs.launchers import (
    LAUNCHERS,
    launcher,
)
from loclin.runs.rundir import RunDirError, lock_run_dir, write_json


def build_manifest(args: argparse.Namespace) -> dict:
    grid = parse_grid(args.grid)
    seeds = parse_seeds(args.seeds)
    parents = [str(Path(p).resolve()) for p in args.fork or []]
    if parents and not args.after:
        raise ConfigError("--fork needs --after PHASE")
    if parents and len(parents) not in (1, len(seeds)):
        raise ConfigError(f"--fork takes one parent, or one per seed ({len(seeds)}); got {len(parents)}")
    if parents and "seed" in grid:
        raise ConfigError("a forked sweep's seeds are its parents' (--fork one run per seed)")
    points = expand(grid, seeds, parents)
    # every point's config is checked before anything runs: a bad override is one line, exit 2
    from loclin.runs.fork import fork_config

    for point in points:
        if point["parent"]:
            fork_config(Path(point["parent"]), args.after, [*args.overrides, *point["overrides"]])
        else:
            load_config(args.config, [*args.overrides, *point["overrides"]])
    if parents:
        experiment = load_config(Path(parents[0]) / "config.yaml").experiment
        output_root = load_config(Path(parents[0]) / "config.yaml").output_root
    else:
        base = load_config(args.config, args.overrides)
        experiment, output_root = base.experiment, base.output_root
    return {
        "config": str(Path(args.config).resolve()) if args.config else None,
        "overrides": list(args.overrides),
        "fork": parents,
        "after": args.after,
        "grid": grid,
        "seeds": seeds,
        "points": points,
        "default_out": str(Path(output_root) / "sweeps" / experiment),
    }


def computed(overrides: list[str]) -> list[str]:
    """The overrides that change what a point computes: all but names and execution settings
    (loclin.runs.fork.ALWAYS_FREE: threads, progress bar, whether checkpoints are kept, …)."""
    return [o for o in overrides if o.split("=", 1)[0] not in ALWAYS_FREE]


def grows(old: dict, new: dict) -> bool:
    """Whether ``new`` is the sweep of ``old`` or that sweep with more seeds: the same command and
    grid (fixed overrides up to execution settings), and every earlier point kept as it was (its
    overrides and parent), so finished points stay finished. Seeds may be added later, for example a
    second parent seed in one cell."""
    same = ("config", "after", "grid")
    if any(old.get(key) != new[key] for key in same):
        return False
    if computed(old.get("overrides", [])) != computed(new["overrides"]):
        return False
    keep = ("name", "overrides", "parent")
    new_points = [{key: point[key] for key in keep} for point in new["points"]]
    return all({key: point.get(key) for key in keep} in new_points for point in old["points"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="experiment YAML")
    source.add_argument("--fork", nargs="+", metavar="RUN_DIR", help="parent run(s): one, or one per seed")
    parser.add_argument("--after", metavar="PHASE", help="with --fork: the parent's last reused phase")
    parser.add_argument(
        "--grid", action="append", default=[], metavar="key=[a,b,c]", help="one axis of the grid (repeat)"
    )
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (a forked sweep: one per parent)")
    parser.add_argument("--workers", type=int, default=1, help="points run at once")
    parser.add_argument("--launcher", choices=LAUNCHERS, default="local")
    parser.add_argument("--cluster", default=None, help="submitit: slurm, local or debug (default: detected)")
    parser.add_argument("--out", type=Path, default=None, help="the sweep directory")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="fixed overrides for every point")
    return parser.parse_intermixed_args(argv)  # fixed overrides may stand before or after the --grid options


def read_manifest(out: Path) -> dict | None:
    """The sweep directory's manifest, None where there is none yet; unreadable is one line."""
    previous = out / MANIFEST
    if not previous.is_file():
        return None
    try:
        manifest = json.loads(previous.read_text())
    except (OSError, ValueError) as error:
        raise RunDirError(
            f"'{previous}' is not a readable sweep manifest ({error}); move it away or choose another --out"
        ) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("points"), list):
        raise RunDirError(f"'{previous}' is JSON but not a loclin sweep manifest (no list of points)")
    return manifest


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.workers < 1:
            raise ConfigError(f"--workers={args.workers} must be >= 1")
        if args.out is not None and args.out.exists() and not args.out.is_dir():
            raise ConfigError(f"--out '{args.out}' is a file; give a folder for the sweep (made if missing)")
        manifest = build_manifest(args)
        out = args.out or Path(manifest.pop("default_out"))
        manifest.pop("default_out", None)
        previous = read_manifest(out)
        if previous is not None and not grows(previous, manifest):
            raise ConfigError(f"'{out}' holds a different sweep ({MANIFEST} differs); choose another --out")
        run = launcher(args.launcher, args.workers, out, args.cluster)
        out.mkdir(parents=True, exist_ok=True)
        lock_run_dir(out, "sweep directory")  # a second live sweep on this --out stops here
        jobs, skipped = [], 0
        for point in manifest["points"]:
            command = point_command(manifest, point, out)
            if command:
                jobs.append((command, str(out / "logs" / f"{point['name']}.log")))
            else:
                skipped += 1
    except (ConfigError, RunDirError) as error:
        print(f"loclin: error: {error}", file=sys.stderr)
        return 2
    manifest["status"] = point_states(manifest, out)
    write_json(out / MANIFEST, manifest)
    print(
        f"[loclin] sweep {out}: {len(manifest['points'])} points, {skipped} finished, {len(jobs)} to run "
        f"({args.launcher}, {args.workers} workers)",
        flush=True,
    )
    codes = run(jobs) if jobs else []
    manifest["status"] = states = point_states(manifest, out)
    write_json(out / MANIFEST, manifest)
    diverged = {name: state for name, state in states.items() if state["state"] == "diverged"}
    failed = [log for (_, log), code in zip(jobs, codes) if code != 0 and Path(log).stem not in diverged]
    for log in failed:
        print(f"loclin: error: a point failed; see {log}", file=sys.stderr)
    for name, state in diverged.items():
        print(
            f"loclin: error: point {name} diverged (phase '{state.get('phase')}', step {state.get('step')}); "
            "its summary marks it, and tables and maps name it instead of averaging it",
            file=sys.stderr,
        )
    print(
        f"[loclin] sweep done: {len(jobs) - len(failed)} ran, {skipped} skipped, {len(diverged)} diverged, "
        f"{len(failed)} failed; python -m loclin.analyze {out}"
    )
    return 1 if failed or diverged else 0


if __name__ == "__main__":
    sys.exit(main())
