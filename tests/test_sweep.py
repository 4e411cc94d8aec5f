"""Sweeps: grid expansion, a killed sweep resumes without redoing finished points, the table's
intervals against a hand computation, one-line errors, and the submitit launcher on its local
executor."""

import json
import math
from pathlib import Path

import pytest

import analyze
from loclin import sweep
from loclin.reports.sweep_report import build_sweep_report
from loclin.runs import grid

pytestmark = pytest.mark.slow  # end-to-end runs: the full suite, not the quick one

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "conf" / "tiny_synthetic.yaml")
SHORT = ["trainer.max_steps=40", "geometry.enabled=false", "trainer.eval_every=20"]


def test_grid_expansion_names_every_point_and_keeps_value_types():
    parsed = grid.parse_grid(["phases.2.optim.name=[sgd,adam]", "phases.2.lr=[0.01,0.1]"])
    assert parsed == {"phases.2.optim.name": ["sgd", "adam"], "phases.2.lr": [0.01, 0.1]}
    points = grid.expand(parsed, [0, 1], [])
    assert len(points) == 8 and len({p["name"] for p in points}) == 8
    assert points[0]["name"] == "p2.optim.name=sgd_p2.lr=0.01__seed0"
    assert points[0]["overrides"] == ["phases.2.optim.name=sgd", "phases.2.lr=0.01", "seed=0"]


def test_a_killed_sweep_resumes_without_redoing_finished_points_and_tabulates_intervals(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = [
        "--config",
        TINY,
        "--grid",
        "optim.lr=[0.003]",
        "--seeds",
        "0,1,2",
        "--out",
        str(out),
        "--workers",
        "2",
        *SHORT,
    ]
    assert sweep.main(args) == 0
    finished = sorted(out.glob("points/*/version_0/summary.json"))
    assert len(finished) == 3
    # a kill: one point loses its summary (it resumes from its checkpoint), one its whole run
    stamps = {p: p.stat().st_mtime_ns for p in finished}
    finished[0].unlink()
    victim = finished[1].parent
    for file in sorted(victim.rglob("*"), reverse=True):
        file.unlink() if file.is_file() else file.rmdir()
    victim.rmdir()
    capsys.readouterr()
    assert sweep.main(args) == 0
    assert "3 points, 1 finished, 2 to run" in capsys.readouterr().out
    for path, stamp in stamps.items():
        if path not in finished[:2]:
            assert path.stat().st_mtime_ns == stamp  # not redone
    assert (finished[0]).is_file() and (finished[1]).is_file()
    # the table's interval against a hand computation over the three seeds
    key = "task.add.acc"
    values = [
        json.loads(p.read_text())["metrics"][key]["value"]
        for p in sorted(out.glob("points/optim.lr=0.003__seed*/version_*/summary.json"))
    ]
    mean = sum(values) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)
    text = build_sweep_report(out, tmp_path / "report", [key])
    row = next(line for line in text.splitlines() if line.startswith("0.003"))
    from loclin.reports.tables import fmt

    assert f"{fmt(mean)} [{fmt(mean - half)}, {fmt(mean + half)}]" in row
    assert analyze.main([str(out), "--key", key, "--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "sweep_0.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--grid", "optim.lr=[0.001,-1]"], "optim.lr=-1"),
        (["--grid", "optim.lrr=[0.1]"], "Key 'lrr' not in 'OptimConfig'"),
        (["--grid", "optim.lr"], "is not of the form key=[a,b,...]"),
        (["--workers", "0"], "--workers=0 must be >= 1"),
        (["--grid", "optim.lr=[0.1,"], "--grid 'optim.lr=[0.1,' is not key=[a,b,...]"),
        (["--grid", "optim.lr=[0.003,0.003]"], "--grid optim.lr lists 0.003 more than once"),
        (["--grid", "optim.lr=[0.003,3e-3]"], "--grid optim.lr lists 0.003 more than once"),
        (["--grid", "optim.lr=[0.1]", "--grid", "optim.lr=[0.2]"], "--grid optim.lr is given twice"),
        (["--seeds", "0,,1"], "--seeds '0,,1' must be comma-separated whole numbers"),
        (["--seeds", "x"], "--seeds 'x' must be comma-separated whole numbers"),
        (["--seeds", "0,1,0"], "--seeds '0,1,0' repeats [0]"),
    ],
)
def test_bad_sweeps_are_one_line_and_write_nothing(tmp_path, capsys, args, fragment):
    assert sweep.main(["--config", TINY, "--out", str(tmp_path / "s"), *args]) == 2
    error = capsys.readouterr().err.strip()
    assert fragment in error and len(error.splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_an_out_that_is_a_file_a_corrupt_manifest_and_a_second_live_sweep_are_one_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert sweep.main(["--config", TINY, "--out", str(afile)]) == 2
    assert "--out '" in capsys.readouterr().err and afile.read_text() == "x"
    out = tmp_path / "s"
    out.mkdir()
    (out / "sweep.json").write_text('{"points": [')
    assert sweep.main(["--config", TINY, "--out", str(out), *SHORT]) == 2
    error = capsys.readouterr().err.strip()
    assert "is not a readable sweep manifest" in error and len(error.splitlines()) == 1
    (out / "sweep.json").unlink()
    import subprocess
    import sys
    import time

    holder = subprocess.Popen(  # another process plays the first, live sweep
        [sys.executable, "-c", f"from loclin.runs.rundir import lock_run_dir; lock_run_dir({str(out)!r}); import time; "
         "print('locked', flush=True); time.sleep(60)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert sweep.main(["--config", TINY, "--out", str(out), *SHORT]) == 2
        error = capsys.readouterr().err.strip()
        assert f"sweep directory '{out.resolve()}' is in use by a live process (pid {holder.pid})" in error
        assert not (out / "points").exists()
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)


def test_a_diverged_point_is_named_in_the_manifest_the_table_and_on_every_rerun(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["--config", TINY, "--grid", "optim.lr=[0.003,1000.0]", "--out", str(out), *SHORT]
    assert sweep.main(args) == 1
    error = capsys.readouterr().err
    assert "point optim.lr=1000.0__seed0 diverged (phase 'train', step" in error
    status = json.loads((out / "sweep.json").read_text())["status"]
    assert status["optim.lr=1000.0__seed0"]["state"] == "diverged" and status["optim.lr=0.003__seed0"] == {
        "state": "finished"
    }
    text = build_sweep_report(out, tmp_path / "report", ["task.add.acc"])
    row = next(line for line in text.splitlines() if line.startswith("1000"))
    assert "0 (diverged: seed 0 at step" in row
    assert "diverged" in (tmp_path / "report" / "report.md").read_text()
    assert sweep.main(args) == 1  # a rerun runs nothing and still names it
    assert "point optim.lr=1000.0__seed0 diverged" in capsys.readouterr().err


def test_the_submitit_launcher_runs_points_on_its_local_executor(tmp_path):
    pytest.importorskip("submitit")
    out = tmp_path / "sweep"
    assert (
        sweep.main(
            [
                "--config",
                TINY,
                "--grid",
                "optim.lr=[0.003]",
                "--launcher",
                "submitit",
                "--cluster",
                "local",
                "--out",
                str(out),
                *SHORT,
            ]
        )
        == 0
    )
    assert len(list(out.glob("points/*/version_0/summary.json"))) == 1


def test_the_ray_launcher_runs_points_on_a_local_instance(tmp_path):
    """Ray is an optional extra (`pip install -e ".[sweep]"`): skipped where it is not installed."""
    pytest.importorskip("ray")
    out = tmp_path / "sweep"
    assert (
        sweep.main(["--config", TINY, "--grid", "optim.lr=[0.003]", "--launcher", "ray", "--out", str(out), *SHORT])
        == 0
    )
    assert len(list(out.glob("points/*/version_0/summary.json"))) == 1


def test_a_missing_launcher_extra_is_one_line(tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def without_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("no ray")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_ray)
    assert sweep.main(["--config", TINY, "--launcher", "ray", "--out", str(tmp_path / "s"), *SHORT]) == 2
    assert "--launcher ray needs the 'ray' package: pip install 'loclin[sweep]'" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_terminated_sweep_stops_its_running_points(tmp_path, how):
    """SIGTERM: the sweep stops its points. SIGKILL: the kernel does (the parent-death signal)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "sweep"
    args = ["--config", TINY, "--seeds", "0,1", "--out", str(out), "trainer.max_steps=100000", "geometry.enabled=false"]
    parent = subprocess.Popen(
        [sys.executable, "-m", "loclin.sweep", *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def points_alive() -> list[int]:
        found = []
        for proc in Path("/proc").iterdir():
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if proc.name.isdigit() and "loclin.train" in cmdline and str(out) in cmdline:
                found.append(int(proc.name))
        return found

    try:
        deadline = time.time() + 120
        while not points_alive() and time.time() < deadline:
            time.sleep(0.2)
        assert points_alive(), "the point never started"
        time.sleep(1.0)
        os.kill(parent.pid, getattr(signal, how))
        code = parent.wait(timeout=60)
        assert code == (128 + signal.SIGTERM if how == "SIGTERM" else -signal.SIGKILL)
        deadline = time.time() + 60
        while points_alive() and time.time() < deadline:  # the point finishes its step, then stops
            time.sleep(0.2)
        assert points_alive() == []  # stopped with the sweep, not left running into the next one
        time.sleep(2.0)
        assert points_alive() == [] and not (out / "points" / "base__seed1").exists()  # and the next point never starts
    finally:
        parent.kill()
        for pid in points_alive():
            os.kill(pid, signal.SIGKILL)


def test_a_forked_sweep_applies_its_fixed_overrides_to_every_point(tmp_path, capsys):
    import train

    recovery = str(REPO / "conf" / "tiny_recovery.yaml")
    parent_run = [
        "--config",
        recovery,
        f"output_root={tmp_path / 'parent'}",
        "trainer.progress_bar=false",
        "trainer.figures=false",
    ]
    assert train.main(parent_run) == 0
    parent = tmp_path / "parent" / "tiny_recovery" / "version_0"
    out = tmp_path / "sweep"
    fixed = ["phases.2.optim.name=sgd", "phases.2.optim.weight_decay=0", "recovery.constrained_m=0"]
    assert (
        sweep.main(
            ["--fork", str(parent), "--after", "degrade", "--grid", "phases.2.lr=[0.05]", "--out", str(out), *fixed]
        )
        == 0
    )
    (point,) = out.glob("points/*/version_0")
    summary = json.loads((point / "summary.json").read_text())
    assert summary["phases"][2]["optim"]["name"] == "sgd" and summary["phases"][2]["optim"]["lr"] == 0.05
    assert summary["phases"][2]["optim"]["weight_decay"] == 0
    # a fixed override that would change the parent's past is one line before anything runs
    capsys.readouterr()
    bad = [
        "--fork",
        str(parent),
        "--after",
        "degrade",
        "--grid",
        "phases.2.lr=[0.05]",
        "--out",
        str(tmp_path / "bad"),
        "model.d_model=32",
    ]
    assert sweep.main(bad) == 2
    assert "'model.d_model' would change what the parent computed" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_a_sweep_grows_by_seeds_but_refuses_any_other_change(tmp_path, capsys):
    def manifest(*args):
        return sweep.build_manifest(sweep.parse_args(["--config", TINY, *args, *SHORT]))

    one_seed = manifest("--grid", "optim.lr=[0.003,0.01]", "--seeds", "0")
    assert sweep.grows(one_seed, one_seed)
    assert sweep.grows(one_seed, manifest("--grid", "optim.lr=[0.003,0.01]", "--seeds", "0,1"))
    assert not sweep.grows(one_seed, manifest("--grid", "optim.lr=[0.003,0.01]", "--seeds", "1"))  # seed 0 dropped
    assert not sweep.grows(one_seed, manifest("--grid", "optim.lr=[0.003]", "--seeds", "0,1"))
    assert not sweep.grows(
        one_seed, manifest("--grid", "optim.lr=[0.003,0.01]", "--seeds", "0", "optim.weight_decay=0")
    )
    out = tmp_path / "s"
    out.mkdir()
    (out / grid.MANIFEST).write_text(json.dumps(one_seed))
    assert sweep.main(["--config", TINY, "--grid", "optim.lr=[0.003]", "--out", str(out), *SHORT]) == 2
    assert f"'{out}' holds a different sweep" in capsys.readouterr().err


def test_a_sweep_grows_over_execution_settings_but_not_over_what_it_computes():
    from loclin.sweep import grows

    old = {"config": "c.yaml", "after": None, "grid": {"lr": [1, 2]}, "overrides": ["phases.2.steps=200"], "points": []}
    same = {**old, "overrides": ["phases.2.steps=200", "trainer.keep_checkpoints=false", "trainer.cpu_threads=1"]}
    assert grows(old, same)  # threads and pruning change no number: the finished points stay finished
    assert not grows(old, {**old, "overrides": ["phases.2.steps=100"]})
    assert not grows(old, {**old, "overrides": ["phases.2.steps=200", "recovery.replica=true"]})
