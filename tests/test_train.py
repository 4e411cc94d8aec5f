"""End to end on the tiny config: run directory, summary, no overwrite, exact resume, analyze."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import Callback

from loclin.config import load_config
from loclin.protocols.train.runner import run_experiment
from loclin.runs.rundir import create_run_dir

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "conf" / "tiny_synthetic.yaml"


class Crash(Callback):
    """Simulates a killed process: raises once ``global_step`` reaches ``at``."""

    def __init__(self, at: int):
        self.at = at

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.at:
            raise RuntimeError("simulated kill")


def run_tiny(root: Path, *overrides: str, extra_callbacks=None, resume_dir: Path | None = None):
    cfg = load_config(TINY, [f"output_root={root}", *overrides])
    if resume_dir is not None:
        return run_experiment(cfg, resume_dir, resume=True)
    run_dir = create_run_dir(cfg.output_root, cfg.experiment)
    return run_experiment(cfg, run_dir, extra_callbacks=extra_callbacks)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    summary = run_tiny(root)
    return root, summary


def test_run_directory_holds_config_events_checkpoint_summary(reference_run):
    root, summary = reference_run
    run_dir = root / "tiny_synthetic" / "version_0"
    assert (run_dir / "config.yaml").is_file()
    assert list(run_dir.glob("events.out.tfevents.*"))
    assert (run_dir / "checkpoints" / "train" / "last.ckpt").is_file()
    assert (run_dir / "checkpoints" / "train" / "end.ckpt").is_file()
    assert (run_dir / "phases" / "train.json").is_file()
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["steps"] == 200
    metrics = on_disk["metrics"]
    for name in (
        "grad.energy_topk",
        "grad.heldout_capture_h1",
        "grad.overlap_lag20",
        "grad.half_life",
        "update.energy_topk",
        "pertask.heldout_capture_mean",
        "task.add.acc",
    ):
        assert name in metrics, name
        assert "definition" in metrics[name]
    # the geometry is far from random even on the tiny model
    assert metrics["grad.heldout_capture_h1"]["value"] > 20 * metrics["grad.heldout_capture_h1"]["baseline"]
    assert on_disk["curves"]["grad.drift"]["lags"][-1] == 80


def test_second_run_never_overwrites_the_first(tmp_path):
    first = create_run_dir(tmp_path, "exp")
    (first / "marker").write_text("keep")
    second = create_run_dir(tmp_path, "exp")
    assert first.name == "version_0" and second.name == "version_1"
    assert (first / "marker").read_text() == "keep"


def _close(a, b):
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_summary(reference_run, tmp_path):
    _, reference = reference_run
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_tiny(tmp_path, extra_callbacks=[Crash(at=130)])
    run_dir = tmp_path / "tiny_synthetic" / "version_0"
    assert not (run_dir / "summary.json").exists()
    resumed = run_tiny(tmp_path, resume_dir=run_dir)
    assert resumed["steps"] == reference["steps"]
    assert resumed["metrics"].keys() == reference["metrics"].keys()
    for name, entry in reference["metrics"].items():
        assert _close(resumed["metrics"][name]["value"], entry["value"]), name
    heat, reference_heat = resumed["curves"]["grad.heatmap"], reference["curves"]["grad.heatmap"]
    assert heat["s"] == reference_heat["s"] and heat["t"] == reference_heat["t"]
    assert heat["overlap"] == pytest.approx(reference_heat["overlap"], rel=1e-6)


def test_analyze_prints_table_and_writes_plots_and_report(reference_run, tmp_path):
    root, _ = reference_run
    out = tmp_path / "analysis"
    result = subprocess.run(
        [sys.executable, str(REPO / "analyze.py"), str(root), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "tiny_synthetic/version_0" in result.stdout
    report = (out / "report.md").read_text()
    for png in ("spectrum_grad.png", "drift_curve_grad.png", "heldout_capture_grad.png", "drift_heatmap_grad_0.png"):
        assert (out / png).stat().st_size > 1000
        assert f"({png})" in report


def test_analyze_of_a_missing_run_is_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "analyze.py"), str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "not found" in result.stderr


class PoisonGradients(Callback):
    """NaN and inf gradients at chosen steps (as under fp16 overflow). The measurement reads them;
    then they are zeroed before the optimizer, as a GradScaler skips such a step."""

    def __init__(self, steps: dict[int, float]):
        self.steps = steps

    def on_after_backward(self, trainer, pl_module):
        if trainer.global_step in self.steps:
            next(p for p in pl_module.parameters() if p.grad is not None).grad.view(-1)[0] = self.steps[
                trainer.global_step
            ]

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_step in self.steps:
            for p in pl_module.parameters():
                if p.grad is not None:
                    p.grad.nan_to_num_(0.0, 0.0, 0.0)


def test_nonfinite_gradients_are_counted_skipped_and_never_poison_a_basis(tmp_path):
    summary = run_tiny(
        tmp_path,
        "trainer.max_steps=60",
        "geometry.drift_lags=[10,20]",
        extra_callbacks=[PoisonGradients({17: float("nan"), 33: float("inf")})],
    )
    assert summary["counts"]["nonfinite_grad"] == 2 and summary["counts"]["nonfinite_update"] == 0
    values = [m["value"] for name, m in summary["metrics"].items() if name.startswith(("grad.", "update."))]
    assert values and not any(math.isnan(v) for v in values)  # (a half-life may be inf: longer than the largest lag)


def test_a_checkpoint_killed_while_saving_leaves_the_previous_one(tmp_path):
    import torch

    from loclin.protocols.train.build import AtomicCheckpoint

    target = tmp_path / "last.ckpt"
    torch.save({"step": 1}, target)

    class KilledWhileSaving:
        is_global_zero, loggers, global_step = True, [], 2

        def save_checkpoint(self, path, weights_only=False):
            Path(path).write_bytes(b"PK\x03\x04 half a checkpoint")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpoint(dirpath=tmp_path)._save_checkpoint(KilledWhileSaving(), str(target))
    assert torch.load(target) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # the half-written .tmp is gone


@pytest.mark.slow
def test_a_diverging_run_stops_with_one_line_and_its_summary_says_so(tmp_path):
    """lr = 1e3: the loss is NaN within a few steps; the run stops ``divergence_patience`` steps
    later (well before the per-task probe that NaN would crash), exit 1, and analyze names it."""
    command = [
        sys.executable,
        str(REPO / "train.py"),
        "--config",
        str(TINY),
        f"output_root={tmp_path}",
        "optim.lr=1e3",
        "trainer.progress_bar=false",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 1, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("loclin: error:")]
    assert (
        len(errors) == 1
        and "training diverged: " in errors[0]
        and "stopped at run step" in errors[0]
        and "Traceback" not in result.stderr
    )
    run_dir = tmp_path / "tiny_synthetic" / "version_0"
    summary = json.loads((run_dir / "summary.json").read_text())
    diverged = summary["diverged"]
    assert diverged["phase"] == "train" and diverged["patience"] == 10 and 0 < diverged["step"] < 40
    out = tmp_path / "analysis"
    assert (
        subprocess.run(
            [sys.executable, str(REPO / "analyze.py"), str(run_dir), "--out", str(out)],
            capture_output=True,
            timeout=120,
            cwd=REPO,
        ).returncode
        == 0
    )
    assert "diverged in phase 'train'" in (out / "report.md").read_text()


@pytest.mark.slow
def test_the_geometry_callbacks_give_the_same_numbers_in_any_order(reference_run, tmp_path, monkeypatch):
    """Drift reads the rolling basis, which reads the window: listed backwards (drift first, as a
    user might), every number is still the one of the builder's order, drift included."""
    import loclin.protocols.train.runner as experiment

    build = experiment.build_geometry_callbacks
    monkeypatch.setattr(experiment, "build_geometry_callbacks", lambda *a, **k: build(*a, **k)[::-1])
    reversed_order = run_tiny(tmp_path)
    _, summary = reference_run
    assert "grad.overlap_lag10" in summary["metrics"] and "update.half_life" in summary["metrics"]
    assert reversed_order["metrics"].keys() == summary["metrics"].keys()
    for name, entry in summary["metrics"].items():
        a, b = entry["value"], reversed_order["metrics"][name]["value"]
        assert a == b or (a != a and b != b), name  # bit for bit (NaN equals NaN)


class StubStrategy:
    @staticmethod
    def reduce_boolean_decision(decision: bool, all: bool = True) -> bool:
        return decision


class StubTrainer:
    strategy = StubStrategy()

    def __init__(self):
        self.global_step = 0


def guard_stops_at(guard, bad_losses: set[int], bad_gradients: set[int], steps: int = 100):
    """The step at which ``guard`` raises Diverged over a hand-written pattern, and the error."""
    import torch
    from loclin.callbacks.divergence import Diverged

    trainer, module = StubTrainer(), torch.nn.Linear(2, 1)
    for step in range(steps):
        module.weight.grad = torch.full((1, 2), float("nan") if step in bad_gradients else 1.0)
        loss = torch.tensor(float("inf") if step in bad_losses else 1.0)
        guard.on_before_optimizer_step(trainer, module, None)
        trainer.global_step = step + 1  # Lightning counts the step before on_train_batch_end
        try:
            guard.on_train_batch_end(trainer, module, {"loss": loss}, None, step)
        except Diverged as error:
            return trainer.global_step, error
    return None, None


def test_the_divergence_guard_stops_on_a_share_of_bad_gradients_or_a_run_of_bad_losses():
    from loclin.callbacks.divergence import DivergenceGuard

    # 4 scattered bad gradients in any 10 steps never reach share 0.5 of patience 10 ...
    scattered = {3, 6, 9, 12, 15, 18, 21, 24}
    assert guard_stops_at(DivergenceGuard(10, 0.5), set(), {s for s in scattered if s % 2})[0] is None
    # ... the 5th within 10 steps does: bad at 30, 32, 34, 36, 38 -> stopped after step 38 (global step 39)
    step, error = guard_stops_at(DivergenceGuard(10, 0.5), set(), {30, 32, 34, 36, 38})
    assert step == 39 and error.first == 30 and "5 of the last 10 steps had non-finite gradients" in str(error)
    # a loss that is not finite for 10 steps in a row, from step 40
    step, error = guard_stops_at(DivergenceGuard(10, 1.0), set(range(40, 60)), set())
    assert step == 50 and error.first == 40 and "not finite for 10 steps in a row" in str(error)
    # fp16 mixed precision: the scaler skips overflowing steps, so gradients do not count
    assert guard_stops_at(DivergenceGuard(10, 0.5, check_gradients=False), set(), set(range(100)))[0] is None
    # the guard's state survives a checkpoint: a resumed guard stops at the same step
    first, resumed = DivergenceGuard(10, 0.5), DivergenceGuard(10, 0.5)
    guard_stops_at(first, set(), {1, 3, 5, 7}, steps=9)
    resumed.load_state_dict(first.state_dict())
    assert list(resumed.bad_gradients) == list(first.bad_gradients) and sum(resumed.bad_gradients) == 4


@pytest.mark.slow
def test_with_the_guard_off_a_diverging_run_finishes_and_every_probe_skips_non_finite_gradients(tmp_path):
    """lr = 1e3 and no guard: NaN gradients from step ~5 on. The per-task probe (whose Gram
    eigen-decomposition failed on NaN before) skips and counts them, as the windows do."""
    command = [sys.executable, str(REPO / "train.py"), "--config", str(TINY), f"output_root={tmp_path}"]
    result = subprocess.run(
        [*command, "optim.lr=1e3", "trainer.divergence_patience=0", "trainer.progress_bar=false"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    summary = json.loads((tmp_path / "tiny_synthetic" / "version_0" / "summary.json").read_text())
    assert summary["counts"]["pertask_skipped_probes"] >= 4  # probes at steps 40, 80, ..., 200
    assert summary["counts"]["nonfinite_grad"] > 150


STREAMING = ["geometry.basis_stride=1", "trainer.max_steps=120", "geometry.drift_lags=[10,20,40]"]
POISONED = {37: float("nan"), 38: float("inf")}  # two in a row: the same overwritten row restored twice


@pytest.fixture(scope="module")
def streaming_run(tmp_path_factory):
    return run_tiny(tmp_path_factory.mktemp("streaming"), *STREAMING, extra_callbacks=[PoisonGradients(POISONED)])


@pytest.mark.slow
def test_a_basis_refreshed_every_step_streams_the_numbers_of_full_refreshes(streaming_run, tmp_path, monkeypatch):
    """basis_stride 1: a Gram row per commit and held-out captures from W-sized products give the
    numbers of forming and reading every B_t in full (within 1e-6), non-finite gradients included."""
    from loclin.geometry.rolling import RollingBasis

    monkeypatch.setattr(RollingBasis, "streaming", property(lambda self: False))
    full = run_tiny(tmp_path, *STREAMING, extra_callbacks=[PoisonGradients(POISONED)])
    assert streaming_run["counts"]["nonfinite_grad"] == 2
    assert streaming_run["metrics"].keys() == full["metrics"].keys()
    assert "grad.heldout_capture_h4" in full["metrics"]
    for name, entry in full["metrics"].items():
        assert streaming_run["metrics"][name]["value"] == pytest.approx(entry["value"], rel=1e-6, nan_ok=True), name


@pytest.mark.slow
def test_a_streaming_run_killed_resumes_to_the_same_numbers(streaming_run, tmp_path):
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_tiny(tmp_path, *STREAMING, extra_callbacks=[PoisonGradients(POISONED), Crash(at=70)])
    run_dir = tmp_path / "tiny_synthetic" / "version_0"
    resumed = run_tiny(tmp_path, *STREAMING, resume_dir=run_dir)
    assert resumed["counts"]["nonfinite_grad"] == 2  # counted before the kill, kept by the checkpoint
    assert resumed["metrics"].keys() == streaming_run["metrics"].keys()
    for name, entry in streaming_run["metrics"].items():
        assert _close(resumed["metrics"][name]["value"], entry["value"]), name


def test_a_phase_at_lr_0_holds_theta_and_measures_its_gradients_only(tmp_path):
    """The frozen-θ null of C3: fresh batches at one θ, so nothing can drift; its updates are all 0
    and are not measured (their spectrum is undefined)."""
    import torch

    summary = run_tiny(
        tmp_path, "phases=[{name: train, steps: 100}, {name: frozen, steps: 100, lr: 0}]", "geometry.drift_lags=[10,20]"
    )
    ends = {
        name: torch.load(Path(summary["run_dir"]) / "checkpoints" / name / "end.ckpt", weights_only=False)["state_dict"]
        for name in ("train", "frozen")
    }
    assert all(torch.equal(ends["train"][key], ends["frozen"][key]) for key in ends["train"])
    metrics = summary["metrics"]
    assert "frozen.grad.noise_ceiling" in metrics and "frozen.grad.overlap_ratio_lag10" in metrics
    assert not [key for key in metrics if key.startswith("frozen.update.")]
    assert "update.noise_ceiling" in metrics  # the train phase still measures both streams


def test_the_measurements_on_a_background_thread_are_bit_for_bit_those_measured_in_line(tmp_path, monkeypatch):
    """The same run in line and on the second thread (told a core is free beside training's threads,
    whatever the suite's share of the machine): every metric and curve is equal, to the last bit."""
    import torch
    from loclin.callbacks.gradient_stream import STAGED_STEPS
    from loclin.callbacks.measurement_worker import CORES_ENV

    inline = run_tiny(tmp_path / "inline", "trainer.background_measurements=false", "trainer.figures=false")
    monkeypatch.setenv(CORES_ENV, str(torch.get_num_threads() + 1))
    background = run_tiny(tmp_path / "background", "trainer.figures=false")
    window = "GradientWindow[grad,update]"
    staged = background["memory_bytes"][window] - inline["memory_bytes"][window]
    assert staged == STAGED_STEPS * 2 * inline["geometry"]["dim"] * 4  # its staging rows: it ran in the background
    assert background["metrics"] == inline["metrics"] and background["curves"] == inline["curves"]


def test_a_fit_that_raises_ends_its_measurement_thread_and_keeps_its_own_error(tmp_path, monkeypatch, caplog):
    """Lightning calls no teardown after an exception: the thread is ended in on_exception, so none is
    left running into the process's exit (a thread inside a torch call then aborts the process)."""
    import threading

    import torch
    from loclin.callbacks.measurement_worker import CORES_ENV

    monkeypatch.setenv(CORES_ENV, str(torch.get_num_threads() + 1))  # a core free: the run measures on the thread
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_tiny(tmp_path, "trainer.figures=false", extra_callbacks=[Crash(at=30)])
    assert "measured on a background thread" in caplog.text
    assert not [t for t in threading.enumerate() if t.name == "loclin-measurements" and t.is_alive()]
