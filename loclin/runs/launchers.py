"""How a sweep's points run: the local pool, submitit or Ray, each point a python -m loclin.train
process that dies with the sweep, and a signal that stops them all."""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from loclin.callbacks.measurement_worker import CORES_ENV, machine_cores
from loclin.config import ConfigError
from loclin.runs.rundir import RunDirError, live_holder

LAUNCHERS = ("local", "submitit", "ray")


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


def run_command(command: list[str], log: str, cores: int | None = None) -> int:
    """One point in a subprocess, its output in the point's log (a module-level function, so
    submitit and Ray can ship it to their workers). ``cores``: its share of the machine, which it
    reads to decide whether a core is free for its measurement thread (callbacks.gradient_stream)."""
    if STOPPING.is_set():
        return 128 + signal.SIGTERM
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle:
        env = None if cores is None else {**os.environ, CORES_ENV: str(cores)}
        child = subprocess.Popen(
            command,
            stdout=handle,
            stderr=subprocess.STDOUT,
            preexec_fn=partial(die_with_parent, os.getpid()),
            env=env,
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
        cores = max(1, machine_cores() // workers)  # each point's share of this machine
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda job: run_command(*job, cores), jobs))
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
    return ray.get([remote.remote(command, log, 1) for command, log in jobs])


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
