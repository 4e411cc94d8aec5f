"""A sketched window (geometry.sketch_dim) against the exact one on the same tiny run."""

import json

import pytest

import train
from loclin.config import ConfigError, load_config

COMMON = ["geometry.per_task.enabled=false", "trainer.max_steps=120", "geometry.drift_lags=[10,20,40]"]


def summary_of(tmp_path, name, overrides):
    assert (
        train.main(["--config", "conf/tiny_synthetic.yaml", f"output_root={tmp_path / name}", *COMMON, *overrides]) == 0
    )
    return json.loads((tmp_path / name / "tiny_synthetic" / "version_0" / "summary.json").read_text())


@pytest.mark.slow
def test_sketched_window_estimates_the_exact_geometry(tmp_path):
    exact = summary_of(tmp_path, "exact", [])
    sketched = summary_of(tmp_path, "sketched", ["geometry.sketch_dim=1500"])
    assert sketched["geometry"]["dim"] == exact["geometry"]["dim"]  # D is still reported
    for name in (
        "grad.energy_topk",
        "update.energy_topk",
        "grad.overlap_lag10",
        "grad.overlap_lag40",
        "grad.heldout_capture_h1",
    ):
        assert sketched["metrics"][name]["value"] == pytest.approx(exact["metrics"][name]["value"], abs=0.06), name
    assert (
        sketched["metrics"]["task.add.acc"]["value"] == exact["metrics"]["task.add.acc"]["value"]
    )  # training untouched


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["geometry.sketch_dim=10"], "geometry.sketch_dim=10 must be at least 2 × geometry.window=8"),
        (["geometry.sketch_dim=1000"], "geometry.per_task need exact D-vectors"),
        (
            ["protocol=recovery", "geometry.sketch_dim=1000", "geometry.per_task.enabled=false"],
            "protocol: recovery need exact D-vectors",
        ),
    ],
)
def test_sketch_config_errors(overrides, fragment):
    config = "conf/tiny_recovery.yaml" if "protocol=recovery" in overrides else "conf/tiny_synthetic.yaml"
    with pytest.raises(ConfigError, match=fragment.replace("×", "×")):
        load_config(config, overrides)


def test_sketched_vector_writes_s_of_grads_values_and_updates():
    import torch
    from loclin.callbacks.parameter_vector import ParameterVector, SketchedParameterVector

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(30, 20), torch.nn.Linear(20, 5))
    vector = ParameterVector({"first": list(model[0].named_parameters()), "second": list(model[1].named_parameters())})
    sketched = SketchedParameterVector(vector, sketch_dim=64, seed=1)
    S = sketched.sketch.matrix()
    model(torch.randn(8, 30)).square().sum().backward()
    grads = vector.flatten([p.grad for p in vector.params])
    out = torch.zeros(sketched.dim)
    sketched.write_grads(out)
    torch.testing.assert_close(out, S @ grads, rtol=1e-5, atol=1e-5)
    before = vector.values()
    update = torch.zeros(sketched.dim)
    sketched.write_values(update)
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    sketched.subtract_from_values(update)
    torch.testing.assert_close(update, S @ (vector.values() - before), rtol=1e-4, atol=1e-5)
    cached = torch.zeros(sketched.dim)
    sketched.write_values(cached)  # nothing changed since: the kept S θ
    torch.testing.assert_close(cached, S @ vector.values(), rtol=1e-5, atol=1e-5)
    vector.load_values(before)  # an in-place change invalidates it
    sketched.write_values(cached)
    torch.testing.assert_close(cached, S @ before, rtol=1e-5, atol=1e-5)
