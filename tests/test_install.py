"""The wheel, installed into a fresh virtual environment, run from a folder that holds a user's own
``callbacks.py`` and ``geometry.py``: everything imports from the one ``loclin`` namespace, and the
``loclin-train`` / ``loclin-analyze`` entry points run a packaged config and report on it."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.test_layers import check_one_name_per_module

pytestmark = pytest.mark.slow  # end-to-end runs: the full suite, not the quick one

REPO = Path(__file__).resolve().parents[1]


def run(command: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    """A venv with the wheel installed (no dependencies: they come from this environment's site
    packages through a .pth line, since nothing is downloaded here)."""
    root = tmp_path_factory.mktemp("install")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    built = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(root), str(REPO)],
        root,
        env,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next(root.glob("loclin-*.whl"))
    venv = root / "venv"
    assert run([sys.executable, "-m", "venv", str(venv)], root, env).returncode == 0
    python = venv / "bin" / "python"
    site = Path(
        run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root, env).stdout.strip()
    )
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], root, env)
    assert done.returncode == 0, done.stderr[-2000:]
    user = root / "user"
    user.mkdir()
    for name in ("callbacks.py", "geometry.py"):  # a user's own modules with the old top-level names
        (user / name).write_text(f"raise ImportError('the user\\'s own {name} was imported')\n")
    return venv, {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}"}


def test_the_wheel_holds_one_namespace_and_a_users_callbacks_py_shadows_nothing(installed):
    venv, env = installed
    code = (
        "import loclin, loclin.protocols.train.runner, loclin.callbacks.base as base, loclin.geometry.window as window;"
        "from loclin import GeometryMonitor; from loclin.hf import GeometryTrainerCallback;"
        "from loclin.config import packaged_configs;"
        "import sys; print(base.__file__); print(sorted(packaged_configs())[:3]);"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('callbacks', 'geometry', 'datamodules')))"
    )
    done = run([str(venv / "bin" / "python"), "-c", code], venv.parent / "user", env)
    assert done.returncode == 0, done.stderr[-2000:]
    file, configs, bare = done.stdout.splitlines()
    assert file.startswith(str(venv)) and "site-packages/loclin/callbacks/base.py" in file
    assert configs == "['lora_distilgpt2', 'lora_gpt2', 'lora_smollm2']" and bare == "[]"
    window, _, walked = check_one_name_per_module(str(venv / "bin" / "python"), venv.parent / "user", env)
    assert window.startswith(str(venv)) and int(walked) > 40  # installed, the walk reaches loclin/geometry too


def test_the_entry_points_run_a_packaged_config_and_analyze_it(installed):
    venv, env = installed
    user = venv.parent / "user"
    help_text = run(["loclin-train", "--help"], user, env)
    assert help_text.returncode == 0 and "tiny_synthetic" in help_text.stdout
    one_command = run(["loclin", "train", "--help"], user, env)  # the same parser behind the loclin command
    assert one_command.returncode == 0 and one_command.stdout.startswith("usage: loclin train")
    trained = run(["loclin-train", "--config", "tiny_synthetic"], user, env)
    assert trained.returncode == 0, trained.stderr[-2000:]
    run_dir = user / "runs" / "tiny_synthetic" / "version_0"
    assert (run_dir / "summary.json").is_file()
    lines = trained.stdout.splitlines()  # the headline table, its reading, then where to look next
    table = [i for i, line in enumerate(lines) if line.startswith("| run | seed | steps | D | k/D | energy_k")]
    assert len(table) == 1
    ending = lines[table[0] :]
    assert ending[2].startswith("| tiny_synthetic/version_0 (single seed) | 0 | 200 | 2864 |")
    assert [line.split(".**")[0] for line in ending if line.startswith("**")] == ["**Low rank (C1)", "**Drift (C3)"]
    assert f"[loclin] live panels: tensorboard --logdir {Path('runs/tiny_synthetic/version_0')}" in ending[-3:]
    assert ending[-1].startswith("[loclin] tables, plots and report.md: loclin-analyze ")  # the entry point in use
    analyzed = run(["loclin-analyze", str(run_dir)], user, env)
    assert analyzed.returncode == 0, analyzed.stderr[-2000:]
    assert (run_dir / "analysis" / "report.md").is_file()
    missing = run(["loclin-train", "--config", "no_such_config"], user, env)
    assert missing.returncode == 2 and "packaged configs: lora_distilgpt2" in missing.stderr
