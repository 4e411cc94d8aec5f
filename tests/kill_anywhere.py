"""Shared by test_kill_anywhere.py and test_kill_anywhere_late.py: a tiny recovery run SIGKILLed at
13 instants and interrupted with Ctrl-C at 2 more, over every
phase and the work between phases, each resumed with ``train.py --resume`` to the uninterrupted
run's summary, number for number.

Instants are keyed on the phase's name (tests/fault_injection.py): mid-step, before the first
checkpoint (the run starts again), half-way through writing a checkpoint, inside the static
bases' computation at the end of ``train``, around the renames that publish a phase's part
summary, end checkpoint and the prefix basis, in the constrained re-run, and just before
summary.json. Two runs go at a time, one CPU thread each (the reference uses one too). The killed
runs draw no figures and the reference does: numbers never depend on them."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EARLY = 8  # KILLS[:EARLY] in test_kill_anywhere.py (train and degrade), the rest in test_kill_anywhere_late.py
INJECT = REPO / "tests" / "fault_injection.py"
OVERRIDES = [
    "phases=[{name: train, steps: 100}, {name: degrade, steps: 20}, {name: recover, steps: 40}]",
    "trainer.eval_every=20",
    "trainer.cpu_threads=1",
    "geometry.drift_lags=[10,20,40]",
    "recovery.capture_at_steps=[10,25,40]",
]
KILLS = [
    {"kill": "step", "phase": "train", "step": 7},  # before the first checkpoint
    {"kill": "save", "path": "train/last.ckpt.tmp"},  # half a checkpoint on disk
    {"kill": "step", "phase": "train", "step": 50},
    {"kill": "call", "target": "loclin.protocols.recovery.hooks:freeze_static_bases", "phase": "train"},
    {"kill": "replace", "path": "phases/train.json", "when": "before"},
    {"kill": "replace", "path": "train/end.ckpt", "when": "after"},
    {"kill": "step", "phase": "degrade", "step": 15},
    {"kill": "step", "phase": "degrade", "step": 10, "signal": "SIGINT"},  # Ctrl-C: exit 130, one line
    {
        "kill": "call",
        "target": "loclin.protocols.recovery.hooks:freeze_static_bases",
        "phase": "train",
        "signal": "SIGINT",
    },
    {"kill": "step", "phase": "recover", "step": 30},
    {"kill": "replace", "path": "recovery/prefix_basis.pt", "when": "after"},
    {"kill": "replace", "path": "phases/recover.json", "when": "before"},
    {"kill": "step", "phase": "recover_constrained", "step": 25},
    {"kill": "replace", "path": "recover_constrained/end.ckpt", "when": "before"},
    {"kill": "replace", "path": "summary.json", "when": "before"},
]
# The killed runs draw no TensorBoard figures (a third of a tiny run's time); the reference draws them,
# so the comparison also shows that figures never change a number
NO_FIGURES = "trainer.figures=false"
NOT_NUMBERS_OF_THE_RUN = ("wall_seconds", "run_dir")  # the process's clock and the folder differ by design


def train(root: Path, *args: str, fault: dict | None = None) -> subprocess.CompletedProcess:
    script = [str(INJECT), json.dumps(fault)] if fault else [str(REPO / "train.py")]
    return subprocess.run([sys.executable, *script, *args], capture_output=True, text=True, timeout=600, cwd=root)


def numbers(value, path: str = "") -> dict[str, float]:
    """Every number in a summary by its path (inf/nan as JSON strings count as numbers)."""
    if isinstance(value, dict):
        return {
            k: v
            for key, item in value.items()
            if not any(skip in key for skip in NOT_NUMBERS_OF_THE_RUN)
            for k, v in numbers(item, f"{path}.{key}").items()
        }
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in numbers(item, f"{path}[{i}]").items()}
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return {}
    if isinstance(value, str):
        return {path: float(value)} if value in ("nan", "inf", "-inf") else {}
    return {path: float(value)}


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def killed_and_resumed(root: Path, fault: dict) -> dict:
    root.mkdir()
    config = ["--config", str(REPO / "conf" / "tiny_recovery.yaml"), f"output_root={root / 'runs'}", *OVERRIDES]
    config.append(NO_FIGURES)
    killed = train(root, *config, fault=fault)
    expected = 130 if fault.get("signal") == "SIGINT" else -9
    assert killed.returncode == expected, f"{fault}: not the fault's exit ({killed.returncode}) {killed.stderr[-800:]}"
    if expected == 130:
        errors = [line for line in killed.stderr.splitlines() if line.startswith("loclin: error:")]
        assert (
            errors
            == [
                f"loclin: error: interrupted; what was written is kept: python train.py --resume {root}/runs/"
                "tiny_recovery/version_0"
            ]
            and "Traceback" not in killed.stderr
        ), killed.stderr[-1500:]
    run_dir = root / "runs" / "tiny_recovery" / "version_0"
    assert not (run_dir / "summary.json").exists()
    resumed = train(root, "--resume", str(run_dir))
    assert resumed.returncode == 0, f"{fault}: {resumed.stderr[-1500:]}"
    assert not list(run_dir.rglob("*.tmp")), f"{fault}: a partial file was left"
    return json.loads((run_dir / "summary.json").read_text())


def image_tags(run_dir: Path) -> set[str]:
    """The image tags of a run's TensorBoard events (its phases' figures)."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    runs = EventMultiplexer(size_guidance={"images": 1})
    runs.AddRunsFromDirectory(str(run_dir))
    runs.Reload()
    return {tag for run in runs.Runs() for tag in runs.GetAccumulator(run).Tags()["images"]}


def check_kills(tmp_path: Path, kills: list[dict]) -> None:
    """Every kill of ``kills`` resumed to the uninterrupted reference run's summary, number for number."""
    with ThreadPoolExecutor(2) as pool:
        reference_job = pool.submit(
            train,
            tmp_path,
            "--config",
            str(REPO / "conf" / "tiny_recovery.yaml"),
            f"output_root={tmp_path / 'reference'}",
            *OVERRIDES,
        )
        jobs = [pool.submit(killed_and_resumed, tmp_path / f"kill_{i}", fault) for i, fault in enumerate(kills)]
        assert reference_job.result().returncode == 0, reference_job.result().stderr[-1500:]
        resumed = [job.result() for job in jobs]
    reference = tmp_path / "reference" / "tiny_recovery" / "version_0" / "summary.json"
    assert image_tags(reference.parent) and not image_tags(tmp_path / "kill_0" / "runs" / "tiny_recovery" / "version_0")
    expected = numbers(json.loads(reference.read_text()))
    assert len(expected) > 500 and any("constrained" in key for key in expected)
    compared = 0
    for fault, summary in zip(kills, resumed):
        got = numbers(summary)
        assert got.keys() == expected.keys(), f"{fault}: keys differ {sorted(got.keys() ^ expected.keys())[:5]}"
        unequal = [key for key in expected if not same(got[key], expected[key])]
        assert not unequal, f"{fault}: {len(unequal)} numbers differ, e.g. {unequal[:3]}"
        compared += len(expected)
    print(f"[kill-anywhere] {len(kills)} kills, {compared:,} numbers compared, all equal")
