"""The C4 deciders of a recovery against numpy on the recorded update vectors: the shares, the
capture after the prefix, the offset-block null, S0 (AdamW's first step in closed form), the
replica's capture and the projected-out re-run's orthogonality to span(P_8)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from loclin.callbacks.parameter_vector import ParameterVector
from loclin.callbacks.recovery import THETA0_KEY

from loclin.config import load_config
from loclin.protocols.train.runner import run_experiment
from loclin.runs.rundir import create_run_dir

pytestmark = pytest.mark.slow  # end-to-end runs: the full suite, not the quick one

TINY = Path(__file__).resolve().parents[1] / "conf" / "tiny_recovery.yaml"


class Trajectory(Callback):
    """θ at the start and after every step of each phase (the measured vector's layout); at the
    recover phase's start also the optimizer's step-0 settings and the gradients of S0's batches."""

    def __init__(self):
        self.thetas: dict[str, list[np.ndarray]] = {}
        self.s0: dict = {}

    def vector(self, pl_module) -> np.ndarray:
        return ParameterVector(pl_module.parameter_groups()).values().double().numpy()

    def on_train_start(self, trainer, pl_module):
        name = Path(trainer.checkpoint_callback.dirpath).name  # checkpoints/<phase>/
        self.thetas[name] = [self.vector(pl_module)]
        if name == "recover":
            groups = trainer.optimizers[0].param_groups
            decay = {id(p): group["weight_decay"] for group in groups for p in group["params"]}
            vector = ParameterVector(pl_module.parameter_groups())
            wd = np.concatenate([np.full(p.numel(), decay[id(p)]) for p in vector.params])  # decay_groups
            grads = []
            for i in range(8):
                pl_module.zero_grad(set_to_none=True)
                pl_module.loss(trainer.datamodule.probe_batch("copy", (THETA0_KEY, i))).backward()
                grad = torch.zeros(vector.dim)
                vector.write_grads(grad)
                grads.append(grad.double().numpy())
            pl_module.zero_grad(set_to_none=True)
            self.s0 = {"lr": groups[0]["lr"], "eps": groups[0]["eps"], "wd": wd, "grads": grads}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.thetas[Path(trainer.checkpoint_callback.dirpath).name].append(self.vector(pl_module))


def cap(vectors: list[np.ndarray], target: np.ndarray) -> float:
    q, _ = np.linalg.qr(np.stack(vectors, 1))
    return float(np.sum((q.T @ target) ** 2) / np.sum(target**2))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    root = tmp_path_factory.mktemp("c4")
    overrides = [f"output_root={root}", "recovery.replica=true", "recovery.outside_m=8", "recovery.constrained_m=0"]
    cfg = load_config(TINY, overrides)
    trajectory = Trajectory()
    summary = run_experiment(cfg, create_run_dir(cfg.output_root, cfg.experiment), extra_callbacks=[trajectory])
    return summary, trajectory


def test_shares_capture_after_the_prefix_and_the_offset_null_match_numpy(recorded):
    summary, trajectory = recorded
    thetas = trajectory.thetas["recover"]
    updates = [b - a for a, b in zip(thetas, thetas[1:])]
    rows = {row["T"]: row for row in summary["curves"]["recovery.prefix"]["by_length"]}
    assert sorted(rows) == [10, 25, 60]
    for t, row in rows.items():
        delta, i = thetas[t] - thetas[0], row["m"].index(8)
        norms = [np.linalg.norm(u) for u in updates[:t]]
        assert row["path_share"][i] == pytest.approx(sum(norms[:8]) / sum(norms), rel=1e-5)
        assert row["displacement_share"][i] == pytest.approx(
            np.linalg.norm(thetas[8] - thetas[0]) / np.linalg.norm(delta), rel=1e-5
        )
        assert row["prefix"][i] == pytest.approx(cap(updates[:8], delta), abs=1e-5)
        assert row["after_prefix"][i] == pytest.approx(cap(updates[:8], thetas[t] - thetas[8]), abs=1e-5)
        metric = summary["metrics"][f"recovery.capture_at_T{t}.P8_after_prefix"]["value"]
        assert metric == row["after_prefix"][i]
        if t <= 16:  # no block of 8 fits in [8, T − 8)
            assert "offset" not in row and f"recovery.capture_at_T{t}.P8_offset_p95" not in summary["metrics"]
            continue
        starts = row["offset"]["starts"]
        assert starts == sorted(set(starts)) and all(8 <= o < t - 8 for o in starts)
        assert len(starts) == min(20, t - 16)
        blocks = [cap(updates[o : o + 8], delta) for o in starts]
        assert row["offset"]["captures"] == pytest.approx(blocks, abs=1e-5)
        p95 = summary["metrics"][f"recovery.capture_at_T{t}.P8_offset_p95"]["value"]
        assert p95 == pytest.approx(np.percentile(blocks, 95), abs=1e-5)
        mean = summary["metrics"][f"recovery.capture_at_T{t}.P8_offset_mean"]["value"]
        assert mean == pytest.approx(np.mean(blocks), abs=1e-5)


def test_s0_is_adamws_first_step_at_theta_zero_in_closed_form(recorded):
    """AdamW from a fresh state: m̂ = g, v̂ = g², so u = −η (g / (|g| + ε) + λ θ_0)."""
    summary, trajectory = recorded
    s0, theta0 = trajectory.s0, trajectory.thetas["recover"][0]
    rows = [-s0["lr"] * (g / (np.abs(g) + s0["eps"]) + s0["wd"] * theta0) for g in s0["grads"]]
    delta = trajectory.thetas["recover"][-1] - theta0
    assert summary["metrics"]["recovery.capture.S0_theta0_updates"]["value"] == pytest.approx(
        cap(rows, delta), abs=1e-5
    )
    # S0's steps leave the run untouched: θ_0 is the degrade phase's end
    assert np.array_equal(theta0, trajectory.thetas["degrade"][-1])


def test_the_replica_shares_no_update_and_its_capture_matches_numpy(recorded):
    summary, trajectory = recorded
    recover, replica = trajectory.thetas["recover"], trajectory.thetas["recover_replica"]
    assert np.array_equal(replica[0], recover[0])  # the same θ_0
    assert len(replica) == 1 + 32  # max(prefix_ms) steps
    mine = [b - a for a, b in zip(recover, recover[1:])][:8]
    theirs = [b - a for a, b in zip(replica, replica[1:])][:8]
    assert not any(np.allclose(u, v) for u in mine for v in theirs)  # another data order: other updates
    for t in (10, 25, 60):
        value = summary["metrics"][f"recovery.capture_at_T{t}.P8_replica"]["value"]
        assert value == pytest.approx(cap(theirs, recover[t] - recover[0]), abs=1e-5)


def test_the_projected_out_rerun_stays_orthogonal_to_the_prefix(recorded):
    summary, trajectory = recorded
    recover, outside = trajectory.thetas["recover"], trajectory.thetas["recover_outside"]
    updates = [b - a for a, b in zip(recover, recover[1:])][:8]
    q, _ = np.linalg.qr(np.stack(updates, 1))
    assert np.array_equal(outside[0], recover[0])
    step = np.linalg.norm(updates[0])
    # its first step replays u_0 from θ_0, which lies in span(P_8): nothing is left of it but round-off,
    # a few float32 spacings of θ's coordinates (1.2e-6 of the step measured; the step itself if u_0 stayed)
    assert np.linalg.norm(outside[1] - outside[0]) <= 1e-5 * step
    for theta in outside[2:]:
        moved = theta - outside[0]
        assert np.linalg.norm(moved) > 1e-3 * step
        # in energy, as every capture is read: float32 θ leaves ~1e-8 of round-off in any 8 directions
        assert np.sum((q.T @ moved) ** 2) / np.sum(moved**2) <= 1e-6
    row = summary["curves"]["recovery.table"]["outside_P8_updates"]
    assert row["capture_of_own_displacement"] < 1e-10
    assert set(row["by_length"]) == {"10", "25", "60"}
    final = summary["metrics"]["recovery.capture_at_T60.outside_P8_updates_acc"]["value"]
    assert final == summary["metrics"]["recovery.outside_P8_updates.acc"]["value"]
    assert torch.isfinite(torch.tensor(final))


def test_every_null_is_a_tensorboard_line_at_its_recovery_step(recorded):
    """recovery_by_T/… at the recover phase's step T (200 train + 40 degrade steps before it); the
    replays' lines are written at the run's end, beside those the recover phase drew live."""
    from tests.test_tensorboard import read_runs

    summary, _ = recorded
    runs = read_runs(summary["run_dir"])
    tags = {tag for run in runs.Runs() for tag in runs.GetAccumulator(run).Tags()["scalars"]}
    for t in (25, 60):
        for name in (
            "P8_updates",
            "P8_offset_p95",
            "P8_after_prefix",
            "S0_theta0_updates",
            "P8_replica",
            "outside_P8_updates_acc",
        ):
            tag = f"recovery_by_T/{name}"
            assert tag in tags, tag
            events = [
                e
                for run in runs.Runs()
                if tag in runs.GetAccumulator(run).Tags()["scalars"]
                for e in runs.Scalars(run, tag)
            ]
            value = next(e.value for e in events if e.step == 240 + t)
            expected = summary["metrics"][f"recovery.capture_at_T{t}.{name}"]["value"]
            assert value == pytest.approx(expected, rel=1e-6), tag
