"""Every shell block of the README against the code: each `python train.py --config …` line
resolves its config and overrides (``--print-config``: nothing runs), each script, module, config
and map it names exists and answers ``--help``, and each map script parses (``bash -n``). The
Python blocks run as written in tests/test_monitor.py and tests/test_hf_callback.py; the long
commands (a whole default run, the maps) run in CI's own test command and the map scripts."""

import contextlib
import importlib.util
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def shell_lines() -> list[str]:
    """The commands of the README's ```bash blocks, continuation lines joined, comments dropped."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            command = line.split(" #", 1)[0].strip()
            if command and not command.startswith("#"):
                lines.extend(part.strip() for part in command.split("&&"))
    return lines


COMMANDS = shell_lines()
TEST_COMMAND = "python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder"


def test_the_readme_has_the_commands_this_test_reads():
    assert any(c.startswith("python train.py --config") for c in COMMANDS)
    assert any(c.startswith("bash docs/maps/") for c in COMMANDS) and TEST_COMMAND in COMMANDS
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == TEST_COMMAND  # CI runs exactly the README's test command


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("python train.py --config")])
def test_every_config_line_resolves(command, monkeypatch, tmp_path):
    from loclin import train

    monkeypatch.chdir(REPO)
    argv = [a for a in shlex.split(command)[2:] if a != "--print-config"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = train.main([*argv, f"output_root={tmp_path}", "--print-config"])
    if code == 2 and "is not in the cache" in err.getvalue():  # the README fetches it on the line before
        pytest.skip(err.getvalue().strip())
    assert code == 0, err.getvalue()
    assert "protocol:" in out.getvalue() and not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("command", COMMANDS)
def test_every_named_file_and_module_exists(command):
    words = shlex.split(command)
    for word in words:
        if re.fullmatch(r"(conf|docs|benchmarks)/[\w./-]+\.(yaml|sh|py|json)", word) and "OUT" not in word:
            if not word.startswith("docs/results/"):  # outputs the command writes
                assert (REPO / word).is_file(), f"{command}: {word} does not exist"
    if words[:2] == ["python", "-m"] and words[2] != "venv":
        assert importlib.util.find_spec(words[2]) is not None, command
    if words[0] == "python" and words[1].endswith(".py"):
        assert (REPO / words[1]).is_file(), command
    if words[0] == "bash":
        assert subprocess.run(["bash", "-n", str(REPO / words[1])]).returncode == 0, command


@pytest.mark.parametrize("module", sorted({shlex.split(c)[2] for c in COMMANDS if c.startswith("python -m loclin.")}))
def test_every_loclin_module_the_readme_runs_answers_help(module):
    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0 and "usage" in done.stdout.lower(), module


def test_the_readme_stays_short_and_every_link_it_and_docs_make_resolves():
    """The README is the door (at most 250 lines); the pages it and docs/ link to exist."""
    assert len(README.splitlines()) <= 250
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not re.match(r"[a-z]+:", target) and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert broken == []
