"""Forks: a recovery forked from a parent's θ_0 equals the full run bit for bit; overrides that
would change what the parent computed are one line, exit 2, and write nothing."""

import json
from pathlib import Path

import pytest

import train

pytestmark = pytest.mark.slow  # end-to-end runs: the full suite, not the quick one

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "conf" / "tiny_recovery.yaml")
QUIET = ["trainer.progress_bar=false", "trainer.figures=false"]  # numbers only: no bar, no TensorBoard figures
CHANGE = ["phases.2.optim.name=sgd", "phases.2.lr=0.05", "recovery.prefix_ms=[1,2,4,8]", "recovery.constrained_m=4"]


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def parent(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("parent")
    assert train.main(["--config", TINY, f"output_root={root}", *QUIET]) == 0
    return root / "tiny_recovery" / "version_0"


def test_a_forked_recovery_equals_the_full_run_with_the_same_settings(parent, tmp_path):
    assert train.main(["--config", TINY, f"output_root={tmp_path / 'full'}", *QUIET, *CHANGE]) == 0
    full = summary_of(tmp_path / "full" / "tiny_recovery" / "version_0")
    assert train.main(["--fork", str(parent), "--after", "degrade", f"output_root={tmp_path / 'fork'}", *CHANGE]) == 0
    fork_dir = tmp_path / "fork" / "tiny_recovery" / "version_0"
    forked = summary_of(fork_dir)
    assert set(forked["metrics"]) == set(full["metrics"])
    for name, entry in full["metrics"].items():
        assert forked["metrics"][name]["value"] == entry["value"], name
    assert forked["phases"][2]["optim"]["name"] == "sgd"
    config = (fork_dir / "config.yaml").read_text()
    assert f"parent: {parent.resolve()}" in config and "after: degrade" in config
    # the reused phases are the parent's files, not recomputed
    assert (fork_dir / "checkpoints" / "degrade" / "end.ckpt").stat().st_ino == (
        parent / "checkpoints" / "degrade" / "end.ckpt"
    ).stat().st_ino


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["--after", "degrade", "model.d_model=32"],
            "'model.d_model' would change what the parent computed up to phase 'degrade'",
        ),
        (["--after", "degrade", "recovery.k=2"], "'recovery.k' would change"),
        (["--after", "degrade", "phases.1.steps=20"], "'phases.1.steps' would change"),
        (["--after", "degrade", "recovery.degradation=noise", "phases.1.steps=0"], "would change"),
        (["--after", "melt"], "--after melt: the parent's phases are ['train', 'degrade', 'recover']"),
        ([], "--fork needs --after PHASE"),
    ],
)
def test_fork_overrides_that_change_the_past_are_one_line(parent, tmp_path, capsys, args, fragment):
    assert train.main(["--fork", str(parent), *args, f"output_root={tmp_path}"]) == 2
    error = capsys.readouterr().err.strip()
    assert fragment in error and len(error.splitlines()) == 1
    assert not (tmp_path / "tiny_recovery").exists()


@pytest.mark.parametrize("damage", ["edited config", "truncated end.ckpt", "truncated recovery file", "bad phase json"])
def test_a_fork_checks_its_parent_as_resume_does(parent, tmp_path, capsys, damage):
    """An edited config.yaml (target copy → add), or a reused file that cannot be read, stops the
    fork with one line before a run directory is made."""
    import shutil

    copy = tmp_path / "parent"
    shutil.copytree(parent, copy, ignore=shutil.ignore_patterns(".lock"))
    if damage == "edited config":
        text = (copy / "config.yaml").read_text()
        target = load_target(text)
        (copy / "config.yaml").write_text(
            text.replace(f"target: {target}", "target: copy" if target != "copy" else "target: add")
        )
        fragment = "was edited after the run started"
    elif damage == "truncated end.ckpt":
        (copy / "checkpoints" / "degrade" / "end.ckpt").write_bytes(b"PK\x03")
        fragment = "checkpoint '"
    elif damage == "truncated recovery file":
        next(iter(sorted((copy / "recovery").glob("*.pt")))).write_bytes(b"PK")
        fragment = "is unreadable"
    else:
        (copy / "phases" / "train.json").write_text("{")
        fragment = "phases/train.json' is not valid JSON"
    assert train.main(["--fork", str(copy), "--after", "degrade", f"output_root={tmp_path / 'out'}"]) == 2
    error = capsys.readouterr().err.strip()
    assert fragment in error and len(error.splitlines()) == 1
    assert not (tmp_path / "out" / "tiny_recovery").exists()


def load_target(text: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.strip().startswith("target:"))


def test_lightnings_startup_lines_are_printed_once_a_run_not_once_a_phase(parent, tmp_path):
    """A fork after `train` runs two phases (degrade, recover) in a process of its own: each of
    Lightning's tips and its model summary is printed once (loclin.protocols.train.build.OncePerProcess)."""
    import subprocess
    import sys

    args = ["--fork", str(parent), "--after", "train", f"output_root={tmp_path}", *QUIET]
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert result.returncode == 0, result.stderr[-1500:]
    output = result.stdout + result.stderr
    assert output.count("💡 Tip: For seamless cloud logging") == 1 and output.count("Total params") == 1


def test_a_fork_point_that_keeps_no_checkpoints_deletes_only_its_own_files(parent, tmp_path, capsys):
    """trainer.keep_checkpoints=false (a map's points): once summary.json is written the fork's
    checkpoints and recovery/*.pt go, the parent's hard-linked files stay, and a fork of the pruned
    run is one line."""
    assert (
        train.main(
            ["--fork", str(parent), "--after", "degrade", f"output_root={tmp_path}", "trainer.keep_checkpoints=false"]
        )
        == 0
    )
    pruned = tmp_path / "tiny_recovery" / "version_0"
    assert (pruned / "summary.json").is_file() and (pruned / "phases" / "recover.json").is_file()
    assert not (pruned / "checkpoints").exists() and not list((pruned / "recovery").glob("*.pt"))
    assert (parent / "checkpoints" / "degrade" / "end.ckpt").is_file() and list((parent / "recovery").glob("*.pt"))
    capsys.readouterr()
    assert train.main(["--fork", str(pruned), "--after", "degrade", f"output_root={tmp_path / 'again'}"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "end.ckpt" in error
