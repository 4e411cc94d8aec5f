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


def test_the_project_cites_only_its_own_files():
    """Definitions are the project's own (docs/science.md): no tracked file points outside the repository."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()
    if not files:
        pytest.skip("not a git checkout")
    outside = ("SCIENCE.md", "../shared", "ARCHITECTURE.md", "paper-abstract.md")
    citing = [
        name
        for name in files
        if (REPO / name).is_file()
        and any(word in (REPO / name).read_text(errors="ignore") for word in outside)
        and name != "tests/test_style.py"
    ]
    assert not citing, citing
    assert (REPO / "docs" / "science.md").is_file()
