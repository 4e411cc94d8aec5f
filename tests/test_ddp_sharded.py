"""Sharded windows on two ranks (each keeps half the coordinates; the geometry all-reduces partial
sums: ≤ 1e-5 relative to one process), a sharded run killed mid-run and resumed, and a fork whose
phases run on two ranks (bit for bit). The unsharded runs are in test_ddp.py."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ddp_runs import DDP, REPO, SAME_THREADS, SHARDED, command, only_run_dir, run, values

pytestmark = pytest.mark.slow  # end-to-end runs: the full suite, not the quick one


@pytest.fixture(scope="module")
def single_unsharded(tmp_path_factory):
    return run(
        "tiny_synthetic.yaml",
        tmp_path_factory.mktemp("single"),
        "trainer.grad_shards=2",
        "geometry.per_task.enabled=false",
    )


def assert_close_summaries(found: dict, expected: dict) -> None:
    assert found.keys() == expected.keys()
    for name, value in expected.items():
        if isinstance(value, (str, bool)):
            assert found[name] == value, name
        else:
            assert found[name] == pytest.approx(value, rel=1e-5, abs=1e-9), name


def test_sharded_windows_give_the_unsharded_geometry(single_unsharded, tmp_path):
    sharded = run("tiny_synthetic.yaml", tmp_path, *DDP, *SHARDED)
    assert_close_summaries(values(sharded), values(single_unsharded))


def test_killed_sharded_run_resumes_to_the_same_numbers(single_unsharded, tmp_path):
    """Killed (SIGKILL to every rank) once its first checkpoint is on disk, then resumed."""
    launched = subprocess.Popen(
        command("tiny_synthetic.yaml", tmp_path, *DDP, *SHARDED),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    checkpoint = tmp_path / "tiny_synthetic" / "version_0" / "checkpoints" / "train" / "last.ckpt"
    deadline = time.time() + 300
    while not checkpoint.exists() and launched.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(launched.pid, signal.SIGKILL)
    launched.wait()
    run_dir = only_run_dir(tmp_path, "tiny_synthetic.yaml")
    assert checkpoint.exists() and not (run_dir / "summary.json").exists()  # killed mid-run
    resumed = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--resume", str(run_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_close_summaries(
        values(json.loads((run_dir / "summary.json").read_text())["metrics"]), values(single_unsharded)
    )


def test_a_fork_on_two_ranks_gives_the_single_process_fork_bit_for_bit(tmp_path):
    """A recovery forked from a one-process parent's θ_0 runs its phases on two ranks."""
    run("tiny_recovery.yaml", tmp_path / "parent")
    parent = only_run_dir(tmp_path / "parent", "tiny_recovery.yaml")
    change = ["phases.2.optim.name=sgd", "phases.2.lr=0.05"]

    def fork(root: Path, *overrides: str) -> dict:
        args = [
            sys.executable,
            str(REPO / "train.py"),
            "--fork",
            str(parent),
            "--after",
            "degrade",
            f"output_root={root}",
            *SAME_THREADS,
            *change,
            *overrides,
        ]
        result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
        return json.loads((only_run_dir(root, "tiny_recovery.yaml") / "summary.json").read_text())["metrics"]

    single = fork(tmp_path / "single", "trainer.grad_shards=2")
    parallel = fork(tmp_path / "ddp", *DDP)
    assert any(name.startswith("recovery.capture.P") for name in single)
    assert values(parallel) == values(single)
