"""The recovery protocol on the tiny config: bases, prefix curve, degradations, exact resume."""

import math
import re
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from loclin.callbacks.parameter_vector import ParameterVector
from loclin.callbacks.recovery_shared import control_positions
from loclin.datamodules.sections import DataConfig
from loclin.datamodules.synthetic import SyntheticTasksDataModule
from loclin.lightning_modules.sections import DecoderConfig
from loclin.lightning_modules.synthetic import SyntheticMultitaskModule
from omegaconf import OmegaConf
from tensorboard.plugins.hparams import plugin_data_pb2

from loclin.config import ConfigError, load_config
from loclin.protocols.recovery.hooks import degrade
from loclin.protocols.train.runner import run_experiment
from loclin.reports.readings import headline_numbers, run_verdict
from loclin.runs.rundir import create_run_dir
from loclin.runs.tensorboard import HPARAM_PREFIX, hparams_of
from tests.test_tensorboard import read_runs

pytestmark = pytest.mark.slow  # end-to-end runs: the full suite, not the quick one

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "conf" / "tiny_recovery.yaml"


class CrashInPhase(Callback):
    def __init__(self, phase: int, at: int):
        self.phase, self.at = phase, at

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.datamodule.phase == self.phase and trainer.global_step >= self.at:
            raise RuntimeError("simulated kill")


def run(root: Path, extra=None, resume_dir=None, overrides=("trainer.figures=false",)):
    cfg = load_config(TINY, [f"output_root={root}", *overrides])
    if resume_dir is not None:
        return run_experiment(cfg, resume_dir, resume=True)
    return run_experiment(cfg, create_run_dir(cfg.output_root, cfg.experiment), extra_callbacks=extra)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run(tmp_path_factory.mktemp("runs"), overrides=REFERENCE_OVERRIDES)


REFERENCE_OVERRIDES = (
    "trainer.live_figures_seconds=0",
)  # TensorBoard's figures at every checkpoint (test_tensorboard)


def test_every_basis_is_measured_and_prefix_capture_grows_with_m(reference):
    metrics = reference["metrics"]
    for name in (
        "S1_task_gradients",
        "S2_mean_gradient_plane",
        "S3_task_vector",
        "S4_rolling_end_of_training",
        "S5_hessian",
        "S6_go_back",
        "S7_random",
        "P8_updates",
        "P8_gradients",
    ):
        value = metrics[f"recovery.capture.{name}"]["value"]
        assert 0.0 <= value <= 1.0 + 1e-9, name
        assert f"recovery.projected_acc.{name}" in metrics
    curve = reference["curves"]["recovery.prefix"]
    assert curve["m"] == [1, 2, 4, 8, 16, 32]
    assert all(a <= b + 1e-12 for a, b in zip(curve["updates"], curve["updates"][1:]))  # nested spans
    assert metrics["recovery.theta_0.acc"]["value"] < metrics["recovery.theta_star.acc"]["value"]
    assert metrics["recovery.degradation_hurt"]["value"] == 1.0
    assert "recover.grad.overlap_lag10" in metrics and "degrade.task.copy.acc" in metrics
    constrained = reference["curves"]["recovery.table"]["constrained_P8_updates"]
    assert constrained["capture_of_own_displacement"] == pytest.approx(1.0, abs=1e-4)  # stayed in θ_0 + span(P8)
    assert 0.0 <= metrics["recovery.constrained_P8_updates.acc"]["value"] <= 1.0


def test_killed_mid_recovery_resumes_to_the_same_numbers(reference, tmp_path):
    with pytest.raises(RuntimeError, match="simulated kill"):
        run(tmp_path, extra=[CrashInPhase(phase=2, at=50)])
    run_dir = tmp_path / "tiny_recovery" / "version_0"
    assert (run_dir / "checkpoints" / "recover" / "last.ckpt").is_file()
    resumed = run(tmp_path, resume_dir=run_dir)
    for name, entry in reference["metrics"].items():
        a, b = resumed["metrics"][name]["value"], entry["value"]
        assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7), name


def tiny_module():
    torch.manual_seed(0)
    dm = SyntheticTasksDataModule(DataConfig(tasks=["add", "copy"], modulus=7, length=3))
    module = SyntheticMultitaskModule(
        dm.vocab.size, dm.vocab.seq_len, dm.task_names, DecoderConfig(n_layers=2, d_model=8, n_heads=2, d_ff=16)
    )
    return module, ParameterVector(module.parameter_groups())


def test_negation_and_noise_degradations_are_exact():
    module, vector = tiny_module()
    theta_star = vector.values()
    theta_init = theta_star + torch.randn(vector.dim)
    cfg = OmegaConf.create({"negation_scale": 0.5, "noise_scale": 0.1, "reset_group": "block1.mlp"})
    degrade("negation", module, vector, theta_init, cfg, seed=0)
    torch.testing.assert_close(vector.values(), theta_star - 0.5 * (theta_star - theta_init))
    vector.load_values(theta_star)
    degrade("noise", module, vector, theta_init, cfg, seed=0)
    kick = vector.values() - theta_star
    assert float(kick.norm()) == pytest.approx(0.1 * float(theta_star.norm()), rel=1e-5)


def test_reset_reinitialises_only_the_named_group():
    module, vector = tiny_module()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(1.0)
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    degrade("reset", module, vector, vector.values(), OmegaConf.create({"reset_group": "block1.mlp"}), seed=0)
    reset = {n for n, _ in module.parameter_groups()["block1.mlp"]}
    for name, param in module.named_parameters():
        if name in reset:
            assert not torch.equal(param, before[name]), name
            if ".ln" in name and name.endswith("weight"):
                assert torch.all(param == 1.0)
        else:
            assert torch.equal(param, before[name]), name


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["recovery.degradation=noise"], "set phases[1].steps to 0"),
        (["recovery.prefix_ms=[1,64]"], "needs that many recovery steps"),
        (["recovery.target=sort"], "not in data.tasks"),
        (["recovery.recover_phase=nope"], "not among the phases"),
        (["recovery.degradation=melt"], "must be one of"),
        (
            [
                "recovery.degradation=reset",
                "phases=[{name: train, steps: 200}, {name: degrade, steps: 0}, {name: recover, steps: 60}]",
            ],
            "recovery.reset_group='block1.mlp' is not a parameter group",
        ),
        (["phases.1.steps=0"], "recovery.degradation=interference needs phases[1].steps >= 1"),
        (["phases.7.steps=3"], "there are 3 phases"),
        (["phases.1.stepz=3"], "Key 'stepz' not in 'PhaseConfig'"),
        (["geometry.groups=[block7.mlp]"], "unknown group"),
        (["phases.1.replays=recover"], "phases[1].replays='recover' must name an earlier phase, one of ['train']"),
        (
            ["phases.2.starts_from=train", "phases.2.fresh_optimizer=false"],
            "phases[2].starts_from needs fresh_optimizer",
        ),
        (
            [
                "phases=[{name: train, steps: 200}, {name: degrade, steps: 40}, {name: recover, steps: 60}, "
                "{name: recover_constrained, steps: 5}]"
            ],
            "'recover_constrained' is the name of recovery's constrained re-run",
        ),
        (["recovery.outside_m=3"], "recovery.outside_m=3 must be 0 or one of recovery.prefix_ms"),
        (["recovery.offset_draws=-1"], "recovery.offset_draws=-1 and recovery.theta0_batches=8 must be >= 0"),
        (
            [
                "phases=[{name: train, steps: 200}, {name: degrade, steps: 40}, {name: recover, steps: 60}, "
                "{name: recover_replica, steps: 5}]"
            ],
            "'recover_replica' is the name of recovery's replica (recovery.replica)",
        ),
    ],
)
def test_recovery_config_errors(overrides, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_config(TINY, overrides)


class CrashAtPhaseEnd(Callback):
    """Stops the run right after the recover phase's last step and its checkpoint at that step."""

    def on_train_end(self, trainer, pl_module):
        if trainer.datamodule.phase == 2:
            raise RuntimeError("simulated kill at the end of the phase")


def test_killed_after_the_last_step_checkpoint_resumes_to_every_number(tmp_path):
    """eval_every = the recover phase's 60 steps: its last.ckpt is written at its final step, and
    Lightning skips on_train_end for a phase resumed there; the recovery results must still come."""
    root = tmp_path / "whole"
    cfg = load_config(TINY, ["trainer.figures=false", f"output_root={root}", "trainer.eval_every=60"])
    whole = run_experiment(cfg, create_run_dir(cfg.output_root, cfg.experiment))
    cfg = load_config(TINY, ["trainer.figures=false", f"output_root={tmp_path / 'killed'}", "trainer.eval_every=60"])
    run_dir = create_run_dir(cfg.output_root, cfg.experiment)
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_experiment(cfg, run_dir, extra_callbacks=[CrashAtPhaseEnd()])
    assert torch.load(run_dir / "checkpoints" / "recover" / "last.ckpt", weights_only=False)["global_step"] == 60
    assert not (run_dir / "phases" / "recover.json").exists()
    resumed = run_experiment(cfg, run_dir, resume=True)
    recovery_keys = [name for name in whole["metrics"] if name.startswith("recovery.")]
    assert len(recovery_keys) > 50
    assert set(resumed["metrics"]) == set(whole["metrics"])
    for name, entry in whole["metrics"].items():
        assert resumed["metrics"][name]["value"] == entry["value"], name


def test_prefix_numbers_carry_pivots_and_controls(reference):
    metrics, curve = reference["metrics"], reference["curves"]["recovery.prefix"]
    pivots = curve["min_pivot_updates"]
    assert all(0 <= b <= a <= 1 for a, b in zip(pivots, pivots[1:]))  # a running minimum of relative pivots
    assert curve["determined_updates"] == [p >= 1e-8 for p in pivots]
    assert metrics["recovery.prefix_pivot.P8_updates"]["value"] == pivots[curve["m"].index(8)]
    controls = curve["controls"]
    assert controls["m"] == [1, 2, 4, 8] and all(len(draws) == 10 for draws in controls["random"])
    random8 = metrics["recovery.capture.R8_random_positions"]
    assert random8["value"] == pytest.approx(sum(controls["random"][-1]) / 10)
    assert random8["spread"]["min"] <= random8["value"] <= random8["spread"]["max"] <= 1
    assert 0 <= metrics["recovery.capture.L8_last_updates"]["value"] <= 1
    # positions are distinct within a draw and lie in the 60-step recovery
    assert all(len(set(p)) == 8 and all(0 <= i < 60 for i in p) for p in controls["positions"])


def test_a_plain_sgd_recovery_has_updates_parallel_to_its_gradients(tmp_path):
    """phases[2].optim: plain SGD at a constant rate makes u_t = −η g_t, so P_m from updates and
    from gradients are the same spaces; the training phase keeps AdamW."""
    overrides = [
        f"output_root={tmp_path}",
        "phases.2.optim.name=sgd",
        "phases.2.optim.weight_decay=0",
        "phases.2.optim.warmup_steps=0",
        "phases.2.lr=0.5",
        "recovery.constrained_m=0",
    ]
    cfg = load_config(TINY, [*overrides, "trainer.figures=false"])
    summary = run_experiment(cfg, create_run_dir(cfg.output_root, cfg.experiment))
    assert [p["optim"]["name"] for p in summary["phases"]] == ["adamw", "adamw", "sgd"]
    curve = summary["curves"]["recovery.prefix"]
    determined = [m for m, ok in zip(curve["m"], curve["determined_updates"]) if ok]
    assert len(determined) >= 3
    for m in determined:
        i = curve["m"].index(m)
        assert curve["updates"][i] == pytest.approx(curve["gradients"][i], abs=1e-5), m


def test_capture_against_recovery_length_from_one_trajectory(reference):
    rows = reference["curves"]["recovery.prefix"]["by_length"]
    assert [row["T"] for row in rows] == [10, 25, 60]  # conf/tiny_recovery.yaml: the last is the whole recovery
    for row in rows:
        assert row["m"] == [m for m in (1, 2, 4, 8, 16, 32) if m <= row["T"]]
        assert all(0 <= c <= 1 for c in row["prefix"]) and row["prefix"] == sorted(row["prefix"])
        assert 0 <= row["acc"] <= 1 and row["delta_norm"] > 0
    final = reference["curves"]["recovery.prefix"]  # at T = 60, Δ_T is Δ and θ_T is θ_R
    assert rows[-1]["prefix"] == pytest.approx(final["updates"], abs=1e-5)
    assert rows[-1]["acc"] == reference["metrics"]["recovery.theta_R.acc"]["value"]
    assert rows[-1]["last"][rows[-1]["m"].index(8)] == pytest.approx(
        reference["metrics"]["recovery.capture.L8_last_updates"]["value"], abs=1e-5
    )
    assert reference["metrics"]["recovery.capture_at_T25.acc"]["value"] == rows[1]["acc"]
    # the random-position control at each T: 10 draws of 8 positions in [0, T); at T = 60 the end's own
    for row in rows:
        assert [len(draws) for draws in row["random"]] == [10 if m <= 8 else 0 for m in row["m"]]
        assert all(0 <= c <= 1 for draws in row["random"] for c in draws)
    end_r8 = reference["metrics"]["recovery.capture.R8_random_positions"]["value"]
    assert reference["metrics"]["recovery.capture_at_T60.R8_random_positions"]["value"] == pytest.approx(
        end_r8, abs=1e-6
    )
    assert reference["metrics"]["recovery.capture_at_T60.L8_last_updates"]["value"] == pytest.approx(
        reference["metrics"]["recovery.capture.L8_last_updates"]["value"], abs=1e-5
    )
    positions = control_positions(25, 8, 10, 0, salt=25)
    assert all(len(set(p)) == 8 and all(0 <= i < 25 for i in p) for p in positions) and positions != control_positions(
        25, 8, 10, 0
    )


class CrashInReplay(Callback):
    """A kill in the constrained re-run (the one phase without a logger: replays are off the step axis)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not trainer.loggers and trainer.global_step >= 45:  # after its checkpoint at step 40
            raise RuntimeError("simulated kill")


def test_killed_in_the_constrained_rerun_resumes_to_the_same_numbers(reference, tmp_path):
    with pytest.raises(RuntimeError, match="simulated kill"):
        run(tmp_path, extra=[CrashInReplay()])
    run_dir = tmp_path / "tiny_recovery" / "version_0"
    assert (run_dir / "checkpoints" / "recover_constrained" / "last.ckpt").is_file()
    assert not (run_dir / "phases" / "recover_constrained.json").exists()
    resumed = run(tmp_path, resume_dir=run_dir)
    assert resumed["curves"]["recovery.table"] == reference["curves"]["recovery.table"]
    assert resumed["metrics"] == reference["metrics"]


def test_a_replay_from_the_same_start_with_the_same_optimizer_is_the_phase_again(tmp_path):
    """`starts_from` + `replays` re-run a phase: the same θ at its end, so every held-out number is equal."""
    again = "{name: again, steps: 60, tasks: [copy], starts_from: degrade, replays: recover}"
    plan = f"phases=[{{name: train, steps: 200}}, {{name: degrade, steps: 40}}, {{name: recover, steps: 60}}, {again}]"
    cfg = load_config(
        TINY,
        ["trainer.figures=false", f"output_root={tmp_path}", "protocol=train", plan, "geometry.per_task.enabled=false"],
    )
    summary = run_experiment(cfg, create_run_dir(cfg.output_root, cfg.experiment))
    recover = {n[len("recover.") :]: m["value"] for n, m in summary["metrics"].items() if n.startswith("recover.task.")}
    replay = {n[len("again.") :]: m["value"] for n, m in summary["metrics"].items() if n.startswith("again.task.")}
    assert recover and replay == recover
    assert summary["steps"] == 300 and summary["phases"][3]["replays"] == "recover"  # off the step axis
    degraded = {n: m["value"] for n, m in summary["metrics"].items() if n.startswith("degrade.task.")}
    assert degraded != {n.replace("recover.", "degrade."): v for n, v in recover.items()}  # a real change to redo


# TensorBoard, read back with its own reader (tests/test_tensorboard.py: one run per lag)


def test_figures_are_redrawn_at_every_checkpoint_and_recovery_headlines_are_scalars(reference):
    summary = reference
    cfg = load_config(TINY, list(REFERENCE_OVERRIDES))
    runs = read_runs(summary["run_dir"])
    train_steps = summary["phases"][0]["steps"]
    checkpoints = list(range(cfg.trainer.eval_every, train_steps + 1, cfg.trainer.eval_every))
    drawn = [event.step for event in runs.Images(".", "drift/grad/curve_drift")]
    assert drawn[: len(checkpoints)] == checkpoints  # every checkpoint of the first phase, the last one at its end
    end = summary["steps"]
    for name in ("recovery.capture.P8_updates", "recovery.capture.S1_task_gradients"):
        (event,) = runs.Scalars(".", name.replace(".", "/"))
        assert (event.step, event.value) == (end, pytest.approx(summary["metrics"][name]["value"], rel=1e-6))


def test_the_hparams_row_holds_the_config_and_the_headlines_and_the_verdict_is_a_text_panel(reference):
    summary = reference
    cfg = load_config(TINY, list(REFERENCE_OVERRIDES))
    accumulator = read_runs(summary["run_dir"]).GetAccumulator(".")
    content = accumulator.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    logged = {name: getattr(value, value.WhichOneof("kind")) for name, value in start.hparams.items()}
    expected = hparams_of(cfg)
    assert logged.keys() == expected.keys() and logged["recovery/target"] == cfg.recovery.target
    assert logged["geometry/window"] == cfg.geometry.window and logged["optim/lr"] == pytest.approx(cfg.optim.lr)
    for short, number in headline_numbers(summary).items():
        (event,) = accumulator.Scalars(HPARAM_PREFIX + short)
        assert (event.step, event.value) == (summary["steps"], pytest.approx(number, rel=1e-6)), short
    (text,) = accumulator.Tensors("verdict/text_summary")
    written = text.tensor_proto.string_val[0].decode()
    assert written == run_verdict(summary) and "**Recovery (C2, C4).**" in written and "**Drift (C3).**" in written
