"""The ``loclin`` command (loclin/cli.py): each subcommand reaches the same code as the scripts it
stands for, with the same output and exit code, and a mistake in the command is one line, exit 2."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_help_names_every_command_and_each_command_has_its_own():
    from loclin.cli import COMMANDS

    top = run("-m", "loclin", "--help")
    assert top.returncode == 0 and all(f"  {name} " in top.stdout for name in COMMANDS)
    for name in COMMANDS:
        own = run("-m", "loclin", name, "--help")
        assert own.returncode == 0 and own.stdout.startswith(f"usage: loclin {name}"), (name, own.stderr[-500:])


def test_train_prints_the_config_train_py_prints():
    via_cli = run("-m", "loclin", "train", "--config", "tiny_synthetic", "seed=3", "--print-config")
    via_script = run("train.py", "--config", "conf/tiny_synthetic.yaml", "seed=3", "--print-config")
    assert via_cli.returncode == via_script.returncode == 0
    assert via_cli.stdout == via_script.stdout and "seed: 3" in via_cli.stdout


def test_fork_is_train_fork(tmp_path):
    missing = str(tmp_path / "no_parent")
    via_cli = run("-m", "loclin", "fork", missing, "--after", "degrade")
    via_script = run("train.py", "--fork", missing, "--after", "degrade")
    assert via_cli.returncode == via_script.returncode == 2
    assert via_cli.stderr == via_script.stderr and via_cli.stderr.count("\n") == 1 and missing in via_cli.stderr


@pytest.mark.parametrize("args", [["bogus"], ["fork"], ["assets", "fetch"], ["train"]])
def test_a_wrong_command_is_one_line_and_exit_2(args):
    done = run("-m", "loclin", *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert [line for line in done.stderr.splitlines() if "error" in line] != []
