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
import ctypes
import ctypes.util
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from loclin.config import ConfigError, load_config
from loclin.fork import ALWAYS_FREE
from loclin.rundir import SUMMARY_FILE, RunDirError, check_resumable, live_holder, lock_run_dir, write_json

MANIFEST = "sweep.json"
LAUNCHERS = ("local", "submitit", "ray")
TRAIN = [sys.executable, "-m", "loclin.train"]  # the installed package's, or a checkout's: no path to a script


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


def stop_live_point(run_dir: Path) -> None:
    """A point's run directory still held by a live process (left by a sweep that was killed
    before it could stop its points) is stopped, so the rerun resumes it rather than calling it
    failed; SIGTERM, then SIGKILL after STOP_GRACE_SECONDS. A holder this machine cannot signal is
    one line."""
    pid = live_holder(run_dir)
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError, OverflowError):
        raise RunDirError(
            f"point '{run_dir}' is held by a live process (pid {pid}) this machine cannot stop; stop it, then rerun"
        ) from None
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while live_holder(run_dir) is not None:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = math.inf
        time.sleep(0.1)
    print(f"[loclin] stopped a point left running by an earlier sweep (pid {pid}): {run_dir}", flush=True)


def die_with_parent(parent: int) -> None:
    """In a point's process before it execs: the kernel sends it SIGTERM when the sweep that
    started it dies, even by SIGKILL (Linux's PR_SET_PDEATHSIG; elsewhere a rerun stops it)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the sweep died before the call above: nothing would signal us
        os.kill(os.getpid(), signal.SIGTERM)


PR_SET_PDEATHSIG = 1
LIVE_POINTS: set[subprocess.Popen] = set()  # this process's running points, stopped with it
STOPPING = threading.Event()  # set by a signal: no new point starts
STOP_GRACE_SECONDS = 10


def run_command(command: list[str], log: str) -> int:
    """One point in a subprocess, its output in the point's log (a module-level function, so
    submitit and Ray can ship it to their workers)."""
    if STOPPING.is_set():
        return 128 + signal.SIGTERM
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle:
        child = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, preexec_fn=partial(die_with_parent, os.getpid())
        )
        LIVE_POINTS.add(child)
        if STOPPING.is_set():  # the signal came between the check above and the start
            child.kill()
        try:
            return child.wait()
        finally:
            LIVE_POINTS.discard(child)


def stop_points(signum: int, frame) -> None:
    """SIGTERM/SIGINT to the sweep stops its running points too, so a restarted sweep never
    shares a run directory with a point left running; they resume from their last checkpoint.
    Points not started yet are not started."""
    STOPPING.set()
    for child in list(LIVE_POINTS):
        child.terminate()
    for child in list(LIVE_POINTS):
        try:  # Lightning finishes the step (or the end-of-phase work) before it stops
            child.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()  # resumable all the same: a point resumes from its last checkpoint
            child.wait()
    raise SystemExit(128 + signum)


def launch_local(jobs: list[tuple[list[str], str]], workers: int) -> list[int]:
    previous = {sig: signal.signal(sig, stop_points) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda job: run_command(*job), jobs))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def launch_submitit(jobs: list[tuple[list[str], str]], workers: int, folder: Path, cluster: str | None) -> list[int]:
    import submitit

    executor = submitit.AutoExecutor(folder=str(folder / "submitit"), cluster=cluster)
    executor.update_parameters(timeout_min=24 * 60, slurm_array_parallelism=workers)
    submitted = [executor.submit(run_command, command, log) for command, log in jobs]
    return [job.result() for job in submitted]


def launch_ray(jobs: list[tuple[list[str], str]], workers: int) -> list[int]:
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=1)(run_command)
    return ray.get([remote.remote(command, log) for command, log in jobs])


def launcher(name: str, workers: int, folder: Path, cluster: str | None) -> Callable[[list], list[int]]:
    if name == "local":
        return lambda jobs: launch_local(jobs, workers)
    module = {"submitit": "submitit", "ray": "ray"}[name]
    try:
        __import__(module)
    except ImportError:
        raise ConfigError(f"--launcher {name} needs the '{module}' package: pip install 'loclin[sweep]'") from None
    if name == "submitit":
        return lambda jobs: launch_submitit(jobs, workers, folder, cluster)
    return lambda jobs: launch_ray(jobs, workers)


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
    from loclin.fork import fork_config

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
    (loclin.fork.ALWAYS_FREE: threads, progress bar, whether checkpoints are kept, …)."""
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
