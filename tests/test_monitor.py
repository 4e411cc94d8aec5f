"""GeometryMonitor on a user's own LightningModule, which loclin has never seen, under a plain
Trainer with a CSV logger: its spectra against numpy SVDs of the gradients a separate callback
recorded, its scalars in the CSV and in callback_metrics, its summary.json, and its mistakes."""

import csv
import json

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from loclin import GeometryMonitor

WINDOW, K, STRIDE, STEPS = 8, 2, 5, 60


class UserRegressor(L.LightningModule):
    """What a researcher writes: two children, no loclin method."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, 16), nn.Tanh())
        self.head = nn.Linear(16, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.head(self.encoder(x)), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def loader(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(512, 6, generator=generator)
    y = torch.sin(x[:, :1]) + 0.1 * torch.randn(512, 1, generator=generator)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=False)


class GradientRecorder(Callback):
    """The reference: every step's flat gradient, in named_parameters() order."""

    def __init__(self):
        self.gradients = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.gradients.append(torch.cat([p.grad.flatten() for p in pl_module.parameters()]).double().numpy())


def energy_topk(window: np.ndarray, k: int) -> float:
    s = np.linalg.svd(window, compute_uv=False)
    return float((s[:k] ** 2).sum() / (s**2).sum())


def fit(tmp_path, monitor, seed=0):
    torch.manual_seed(seed)
    recorder = GradientRecorder()
    trainer = L.Trainer(
        max_steps=STEPS,
        logger=CSVLogger(tmp_path, name="user"),
        callbacks=[monitor, recorder],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        accelerator="cpu",
    )
    trainer.fit(UserRegressor(), loader())
    return trainer, recorder


def test_the_monitor_on_a_user_module_matches_numpy_and_reaches_csv_callback_metrics_and_summary(tmp_path):
    monitor = GeometryMonitor(
        window=WINDOW, k=K, basis_stride=STRIDE, heldout_lags=[1, 2], drift_stride=STRIDE, drift_lags=[5, 10, 20]
    )
    trainer, recorder = fit(tmp_path, monitor)
    gradients = np.stack(recorder.gradients)
    assert gradients.shape == (STEPS, 6 * 16 + 16 + 16 + 1)

    with open(f"{trainer.logger.log_dir}/metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("geometry/grad/energy_topk")]
    refresh_steps = [int(row["step"]) for row in rows]
    assert refresh_steps == list(range(WINDOW - 1 + (-(WINDOW - 1)) % STRIDE, STEPS, STRIDE))
    for row, step in zip(rows, refresh_steps):
        expected = energy_topk(gradients[step - WINDOW + 1 : step + 1], K)
        assert float(row["geometry/grad/energy_topk"]) == pytest.approx(expected, rel=1e-5)
    # per-group spectra: one group per top-level child, named after it
    encoder_columns = 6 * 16 + 16
    for row, step in zip(rows, refresh_steps):
        expected = energy_topk(gradients[step - WINDOW + 1 : step + 1, :encoder_columns], K)
        assert float(row["geometry/grad/energy_topk/encoder"]) == pytest.approx(expected, rel=1e-5)

    assert "drift/grad/overlap_lag10" in trainer.callback_metrics  # what EarlyStopping could monitor
    assert 0.0 <= float(trainer.callback_metrics["drift/grad/overlap_lag10"]) <= 1.0 + 1e-6

    summary = json.loads(monitor.summary_path.read_text())
    mean = np.mean([energy_topk(gradients[s - WINDOW + 1 : s + 1], K) for s in refresh_steps])
    assert summary["metrics"]["grad.energy_topk"]["value"] == pytest.approx(mean, rel=1e-5)
    assert summary["geometry"]["dim"] == gradients.shape[1]
    assert summary["geometry"]["random_baseline_k_over_D"] == pytest.approx(K / gradients.shape[1])
    assert "grad.overlap_lag10" in summary["metrics"] and summary["steps"] == STEPS


def test_analyze_reads_the_monitors_summary(tmp_path):
    from analyze import main as analyze

    monitor = GeometryMonitor(window=WINDOW, k=K, basis_stride=STRIDE, drift_stride=STRIDE, drift_lags=[5, 10])
    fit(tmp_path, monitor)
    assert analyze([str(monitor.summary_path.parent), "--out", str(tmp_path / "analysis")]) == 0
    assert "grad.energy_topk" in (tmp_path / "analysis" / "report.md").read_text()


def test_mistakes_are_one_line_naming_the_setting_or_prefix(tmp_path):
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['windw'\]"):
        GeometryMonitor(windw=8)
    with pytest.raises(ValueError, match="k=9 must be between 1 and window=8"):
        GeometryMonitor(window=8, k=9)
    with pytest.raises(
        ValueError, match=r"\['decoder'\] match no trainable parameter of UserRegressor.*'encoder', 'head'"
    ):
        fit(tmp_path, GeometryMonitor(window=WINDOW, k=K, groups=["encoder", "decoder"]))
    from loclin.callbacks.parameter_vector import parameter_groups

    one = parameter_groups(UserRegressor(), "encoder")  # one prefix as a string, not its characters
    assert list(one) == ["encoder"] and [n for n, _ in one["encoder"]] == ["encoder.0.weight", "encoder.0.bias"]


def test_the_parts_listed_in_any_order_give_the_monitors_numbers(tmp_path):
    """The monitor's parts share one gradient stream: listed by hand in reverse (drift, bases,
    window), they give every number the monitor gives."""
    from loclin.experiment import phase_summary

    settings = dict(window=WINDOW, k=K, basis_stride=STRIDE, drift_stride=STRIDE, drift_lags=[5, 10, 20])
    monitor = GeometryMonitor(**settings)
    fit(tmp_path / "monitor", monitor)
    expected = json.loads(monitor.summary_path.read_text())["metrics"]

    reversed_parts = GeometryMonitor(**settings).build_parts(STEPS)[::-1]
    torch.manual_seed(0)
    trainer = L.Trainer(
        max_steps=STEPS,
        logger=False,
        callbacks=reversed_parts,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(UserRegressor(), loader())
    measured = phase_summary(None, 0, trainer, reversed_parts, {})["metrics"]
    assert set(measured) == set(expected) and len(expected) > 20
    assert all(measured[name]["value"] == expected[name]["value"] for name in expected)


def test_a_callback_that_needs_loclins_datamodule_says_what_is_missing_in_one_line():
    """The per-task probe calls the module's loss(batch) and the datamodule's probe_batch: on a user
    module trained from a plain DataLoader, setup stops with one line naming both."""
    from loclin.callbacks.gradient_stream import GradientStream
    from loclin.callbacks.per_task import PerTaskGradientCallback

    probe = PerTaskGradientCallback(GradientStream(WINDOW), ["add"], stride=10, n_batches=4, n_heldout=2, k=2)
    trainer = L.Trainer(max_steps=5, logger=False, callbacks=[probe], enable_progress_bar=False)
    with pytest.raises(TypeError) as error:
        trainer.fit(UserRegressor(), loader())
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("PerTaskGradientCallback needs UserRegressor.loss(), a datamodule with probe_batch:")
