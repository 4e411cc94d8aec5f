"""What a reader finds in TensorBoard, read back from the event files with TensorBoard's own reader:
one run per lag holding the numbers a CSV logger gets under the flat names, and charts whose regexes
find the tags. Figures redrawn at checkpoints, recovery headlines as scalars, the HParams row and
the verdict text are read from the recovery run of tests/test_recovery.py."""

import csv
import json
import re

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

from loclin import GeometryMonitor
from loclin.reports.readings import run_verdict
from loclin.runs.tensorboard import drift_layout
from tests.test_monitor import UserRegressor, loader

LAGS = [5, 10, 20]


def read_runs(folder) -> EventMultiplexer:
    runs = EventMultiplexer(size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    runs.AddRunsFromDirectory(str(folder))
    runs.Reload()
    return runs


def test_each_lag_is_a_tensorboard_run_holding_what_csv_gets_under_the_flat_name(tmp_path):
    monitor = GeometryMonitor(window=8, k=2, basis_stride=5, drift_stride=5, drift_lags=LAGS)
    csv_logger = CSVLogger(tmp_path, name="csv")
    tensorboard = TensorBoardLogger(tmp_path, name="tb", version="run")
    torch.manual_seed(0)
    trainer = L.Trainer(
        max_steps=60,
        logger=[tensorboard, csv_logger],
        callbacks=[monitor],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(UserRegressor(), loader())
    with open(csv_logger.experiment.metrics_file_path) as handle:
        rows = list(csv.DictReader(handle))
    runs = read_runs(tmp_path / "tb")
    assert sorted(runs.Runs()) == sorted(["run", *(f"run/lag{lag}" for lag in LAGS)])
    main_tags = runs.GetAccumulator("run").Tags()["scalars"]
    assert main_tags and not [tag for tag in main_tags if re.search(r"_lag\d+$", tag)]  # no lag left in the run
    for lag in LAGS:
        csv_points = {
            int(r["step"]): float(r[f"drift/grad/overlap_lag{lag}"])
            for r in rows
            if r.get(f"drift/grad/overlap_lag{lag}")
        }
        tb_points = {event.step: event.value for event in runs.Scalars(f"run/lag{lag}", "drift/grad/overlap")}
        assert csv_points and tb_points == pytest.approx(csv_points, rel=1e-6), lag  # TB stores float32
    # the chart "grad: overlap, one line per lag" finds one series in each lag run and none in the main run
    pattern = drift_layout(["grad"], ["grad"], [])["drift"]["grad: overlap, one line per lag"][1][0]
    found = {run for run, tags in runs.Runs().items() if any(re.search(pattern, tag) for tag in tags["scalars"])}
    assert found == {f"run/lag{lag}" for lag in LAGS}
    # a figure redrawn at a checkpoint needs a checkpoint: none here, so only the end of the fit drew them
    assert [event.step for event in runs.Images("run", "drift/grad/curve_drift")] == [60]
    summary = json.loads(monitor.summary_path.read_text())
    (text,) = runs.Tensors("run", "verdict/text_summary")
    verdict = run_verdict(summary)
    assert text.tensor_proto.string_val[0].decode() == verdict and "**Drift (C3).**" in verdict
