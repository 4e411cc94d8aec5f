"""Shared by the DDP tests (test_ddp.py, test_ddp_sharded.py): launch train.py on one process or on
two gloo ranks with one CPU thread each, and read back the summary's numbers."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DDP = ["trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu"]
SAME_THREADS = ["trainer.cpu_threads=1", "trainer.progress_bar=false", "trainer.figures=false"]  # numbers only
SHARDED = ["geometry.shard_windows=true", "geometry.per_task.enabled=false"]


def command(config: str, root: Path, *overrides: str) -> list[str]:
    return [
        sys.executable,
        str(REPO / "train.py"),
        "--config",
        str(REPO / "conf" / config),
        f"output_root={root}",
        *SAME_THREADS,
        *overrides,
    ]


def only_run_dir(root: Path, config: str) -> Path:
    versions = sorted((root / config.removesuffix(".yaml")).iterdir())
    assert [v.name for v in versions] == ["version_0"]  # one run directory, written by rank 0 only
    return versions[0]


def run(config: str, root: Path, *overrides: str) -> dict:
    result = subprocess.run(command(config, root, *overrides), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads((only_run_dir(root, config) / "summary.json").read_text())["metrics"]


def values(metrics: dict) -> dict:
    return {name: entry["value"] for name, entry in metrics.items()}
