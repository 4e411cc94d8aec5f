"""The code style is enforced, not hoped for: ruff's lint rules (lines ≤ 120 characters among
them, pyproject.toml) and ``ruff format`` hold over the whole tree."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff_holds_over_the_tree(command):
    pytest.importorskip("ruff")  # a dev extra: pip install -e ".[dev]"
    done = subprocess.run([sys.executable, "-m", "ruff", *command], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-500:]
