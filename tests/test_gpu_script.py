"""benchmarks/gpu.sh, the script prepared for the first GPU machine lent, run as its CPU dry run: it
writes the records it promises, and loclin.reports.results renders them in the "On a GPU" section with
each variant's step as a ratio to the plain step of the same run."""

import json
import subprocess
from pathlib import Path

import pytest

from loclin.reports.performance import GPU_FOLDER, performance_sections

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # four tiny GPT-2 trainings and a refresh benchmark


def test_the_gpu_script_dry_run_writes_records_that_render(tmp_path):
    out = tmp_path / "performance" / GPU_FOLDER
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu.sh"), "--dry-run", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(path.name for path in out.iterdir()) == ["gpt2_step.json", "refresh_floor.json"]
    step = json.loads((out / "gpt2_step.json").read_text())
    assert list(step["variants"]) == ["off", "exact", "sketched", "off again"]
    assert step["variants"]["exact"]["memory_mib"] > step["variants"]["sketched"]["memory_mib"] > 0
    text = "\n".join(performance_sections(out.parent))
    assert "## On a GPU (benchmarks/gpu.sh)" in text and "### A GPT-2 step with GeometryMonitor (32-true)" in text
    off, exact = step["variants"]["off"], step["variants"]["exact"]
    assert f"| exact | {exact['median_ms']:.1f} | {exact['median_ms'] / off['median_ms']:.3f} |" in text
