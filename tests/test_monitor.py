"""GeometryMonitor on a user's own LightningModule, which loclin has never seen, under a plain
Trainer with a CSV logger: its spectra against numpy SVDs of the gradients a separate callback
recorded, its scalars in the CSV and in callback_metrics, its summary.json, and its mistakes."""

import csv
import json
import re

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


@pytest.mark.slow
def test_analyze_reads_the_monitors_summary(tmp_path):
    from analyze import main as analyze

    monitor = GeometryMonitor(window=WINDOW, k=K, basis_stride=STRIDE, drift_stride=STRIDE, drift_lags=[5, 10])
    fit(tmp_path, monitor)
    assert analyze([str(monitor.summary_path.parent), "--out", str(tmp_path / "analysis")]) == 0
    assert "grad.energy_topk" in (tmp_path / "analysis" / "report.md").read_text()


def test_mistakes_are_one_line_naming_the_setting_or_prefix(tmp_path):
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['windw'\]"):
        GeometryMonitor(windw=8)
    with pytest.raises(ValueError, match="geometry.k=9 must be between 1 and geometry.window=8"):
        GeometryMonitor(window=8, k=9)
    with pytest.raises(
        ValueError, match=r"\['decoder'\] match no trainable parameter of UserRegressor.*'encoder', 'head'"
    ):
        fit(tmp_path, GeometryMonitor(window=WINDOW, k=K, basis_stride=STRIDE, groups=["encoder", "decoder"]))
    from loclin.callbacks.parameter_vector import parameter_groups

    one = parameter_groups(UserRegressor(), "encoder")  # one prefix as a string, not its characters
    assert list(one) == ["encoder"] and [n for n, _ in one["encoder"]] == ["encoder.0.weight", "encoder.0.bias"]


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"window": 1, "k": 1, "basis_stride": 1}, "geometry.window=1 must be >= 2"),
        ({"basis_stride": 3, "drift_stride": 4}, "geometry.drift_stride=4 must be a positive multiple of"),
        ({"basis_stride": 9}, "geometry.basis_stride=9 must be between 1 and geometry.window=8"),
        ({"drift_lags": [0]}, "geometry.drift_lags [0] must be positive multiples"),
    ],
)
def test_the_monitor_runs_train_pys_cross_key_checks(settings, fragment):
    """The checks are config.validate_geometry's, the same function train.py runs: one line each."""
    from loclin.config import ConfigError
    from loclin.schema import GeometryConfig, validate_geometry

    merged = {"window": WINDOW, "k": K, "basis_stride": STRIDE, "drift_stride": STRIDE, **settings}
    with pytest.raises(ValueError, match=re.escape(fragment)) as caught:
        GeometryMonitor(**merged)
    assert len(str(caught.value).splitlines()) == 1
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        validate_geometry(GeometryConfig(**merged), 1000)


def test_a_lag_the_run_cannot_fit_is_one_warning_and_overlapping_groups_are_named(tmp_path):
    monitor = GeometryMonitor(window=WINDOW, k=K, basis_stride=STRIDE, drift_stride=STRIDE, drift_lags=[5, 400])
    with pytest.warns(UserWarning, match=r"drift lag\(s\) \[400\] need more than this run's"):
        fit(tmp_path / "lags", monitor)
    summary = json.loads(monitor.summary_path.read_text())["metrics"]
    assert "grad.overlap_lag5" in summary and "grad.overlap_lag400" not in summary
    from loclin.callbacks.parameter_vector import parameter_groups

    with pytest.raises(ValueError, match=r"overlap: prefix 'encoder.0' \(encoder.0\) lies under 'encoder'"):
        parameter_groups(UserRegressor(), ["encoder", "encoder.0"])


def test_the_parts_listed_in_any_order_give_the_monitors_numbers(tmp_path):
    """The monitor's parts share one gradient stream: listed by hand in reverse (drift, bases,
    window), they give every number the monitor gives."""
    from loclin.protocols.train.runner import phase_summary

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


@pytest.mark.slow
def test_the_readmes_monitor_block_runs_as_written(tmp_path, monkeypatch):
    """The README's "your own LightningModule" block, executed verbatim on a user module: the
    EarlyStopping it shows waits for the lag-100 drift metric, then watches it."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b.split("```", 1)[0] for b in readme.split("```python\n") if "GeometryMonitor(window=32" in b)
    monkeypatch.chdir(tmp_path)
    namespace = {"model": UserRegressor(), "datamodule": loader()}
    exec(compile(block, "README.md", "exec"), namespace)
    trainer, monitor = namespace["trainer"], namespace["monitor"]
    assert "drift/grad/overlap_lag100" in trainer.callback_metrics and trainer.global_step >= 201
    assert json.loads(monitor.summary_path.read_text())["metrics"]["grad.overlap_lag100"]["value"] > 0
