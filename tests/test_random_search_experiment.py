"""Random search on a model: perturbed losses against copied models, HVPs and Hutchinson against a
dense Hessian, and the tiny experiment end to end (theory holds at small σ, report written)."""

import copy
import json
import math

import pytest
import torch
from loclin.callbacks.parameter_vector import ParameterVector
from loclin.geometry.perturbed_loss import PerturbedLoss
from loclin.geometry.random_search import hutchinson

import analyze
import train
from loclin.config import ConfigError, load_config
from loclin.protocols.train.build import build_module_and_data

pytestmark = pytest.mark.slow  # end-to-end runs: the full suite, not the quick one


@pytest.fixture(scope="module")
def tiny():
    cfg = load_config("conf/tiny_random_search.yaml", ["model.d_model=4", "model.d_ff=8"])
    torch.manual_seed(0)
    module, datamodule = build_module_and_data(cfg)
    module.eval()
    batches = [datamodule.probe_batch(task, (1, 0), 8) for task in datamodule.train_task_names]
    vector = ParameterVector(module.parameter_groups())
    return module, batches, vector


def copied_loss(module, vector, batches, delta):
    """Reference: a deep copy of the model with θ + δ written into its parameters."""
    moved = copy.deepcopy(module)
    ParameterVector(moved.parameter_groups()).load_values(vector.values() + delta)
    with torch.no_grad():
        return torch.stack([moved.answer_loss(moved.logits(b), b["target"]) for b in batches]).mean()


def test_perturbed_losses_equal_copied_models_vectorised_or_not(tiny):
    module, batches, vector = tiny
    deltas = 0.05 * torch.randn(5, vector.dim, generator=torch.Generator().manual_seed(0))
    vectorised = PerturbedLoss(module, vector.names, batches, chunk=2)(deltas)
    looped = PerturbedLoss(module, vector.names, batches, vectorize=False)(deltas)
    reference = torch.stack([copied_loss(module, vector, batches, d) for d in deltas])
    torch.testing.assert_close(vectorised, reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(looped, reference, rtol=1e-5, atol=1e-6)
    assert len(set(vectorised.tolist())) == 5


def test_gradient_hvp_and_hutchinson_against_the_dense_hessian(tiny):
    module, batches, vector = tiny
    loss = PerturbedLoss(module, vector.names, batches)
    theta = vector.values().double()

    reference = copy.deepcopy(module).double()

    def flat_loss(flat):
        params = dict(
            zip(
                vector.names,
                [
                    piece.view(p.shape)
                    for piece, p in zip(flat.split([p.numel() for p in vector.params]), vector.params)
                ],
            )
        )
        losses = [
            reference.answer_loss(torch.func.functional_call(reference, params, (b["input"],)), b["target"])
            for b in batches
        ]
        return torch.stack(losses).mean()

    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        dense = torch.autograd.functional.hessian(flat_loss, theta, vectorize=True)
        gradient = torch.autograd.functional.jacobian(flat_loss, theta)
    torch.testing.assert_close(loss.gradient().double(), gradient, rtol=1e-4, atol=1e-6)
    v = torch.randn(vector.dim, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(loss.hvp()(v).double(), dense @ v.double(), rtol=1e-3, atol=1e-4)
    found = hutchinson(loss.hvp(), vector.dim, samples=100, seed=0)
    assert abs(found["trace"] - float(dense.trace())) < 4 * found["trace_se"]
    assert abs(found["frob_sq"] - float((dense**2).sum())) < 4 * found["frob_sq_se"]


FAST = [
    "trainer.figures=false",
    "random_search.samples=120",
    "random_search.best_of=[2,10,100]",
    "random_search.subspace_samples=30",
    "random_search.hutchinson_samples=6",
    "random_search.sigma_multiples=[0.01,0.3,10.0]",
    "random_search.widths=[4,16]",
]


def test_tiny_random_search_end_to_end(tmp_path):
    assert train.main(["--config", "conf/tiny_random_search.yaml", f"output_root={tmp_path}", *FAST]) == 0
    run = tmp_path / "tiny_random_search" / "version_0"
    summary = json.loads((run / "summary.json").read_text())
    points = summary["curves"]["random_search.points"]
    assert [p["step"] for p in points] == [40, 110]
    small = points[-1]["fixed"][0]  # σ = 0.01 σ_lin: the local-linear regime
    n = 120
    assert abs(small["p_improve"] - small["pred_p_improve"]) < 4 * math.sqrt(0.25 / n)
    assert abs(small["mean"] - small["pred_mean"]) < 4 * small["mean_se"] + abs(small["pred_mean"])
    assert small["std"] == pytest.approx(small["pred_std"], rel=0.25)
    assert small["best10"] == pytest.approx(small["pred_best10"], rel=0.3)
    assert set(points[-1]["subspaces"]) == {"full", "rolling", "prefix", "random"}
    assert all(row["k"] == 3 for name, row in points[-1]["subspaces"].items() if name != "full")
    widths = summary["curves"]["random_search.widths"]
    assert [w["width"] for w in widths] == [4, 16] and widths[0]["dim"] < widths[1]["dim"]
    assert (run / "widths" / "d4" / "summary.json").is_file()
    for w in widths:  # the ES estimate's cosine follows sqrt(N/(N+D+1)), which falls with D
        assert w["es_cos"] == pytest.approx(w["pred_es_cos"], rel=0.3)
    out = tmp_path / "analysis"
    assert analyze.main([str(run), "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "Theorem A and B" in report and "Proposition C" in report and "Dimension sweep" in report
    for name in ("rs_qq_0", "rs_theory_0", "rs_subspaces_0", "rs_dimension_0", "rs_along_run_0"):
        assert (out / f"{name}.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["random_search.at_steps=[5]"], "random_search.at_steps [5] must lie in [8, 117]"),
        (["random_search.at_steps=[]"], "random_search.at_steps is empty"),
        (["random_search.subspaces=[hessian]"], "random_search.subspaces: unknown ['hessian']"),
        (["random_search.sigma_multiples=[1.0,0.1]"], "must be increasing"),
        (["random_search.samples=5"], "need samples >= n_star=10"),
        (["random_search.widths=[5]"], "random_search.widths [5] must be multiples of model.n_heads=2"),
        (["geometry.enabled=false"], "random_search.subspaces 'rolling' needs geometry.enabled"),
    ],
)
def test_random_search_config_errors_are_one_line(overrides, fragment):
    with pytest.raises(ConfigError) as error:
        load_config("conf/tiny_random_search.yaml", overrides)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_random_search_on_a_lora_adapter(tiny_gpt2, text_assets, tmp_path):
    overrides = [
        f"output_root={tmp_path}",
        f"lm.model={tiny_gpt2}",
        "phases=[]",
        "protocol=random_search",
        "trainer.max_steps=50",
        "geometry.drift_lags=[10,20]",
        "random_search.at_steps=[30]",
        "random_search.sigma_multiples=[0.01,1.0]",
        "random_search.samples=40",
        "random_search.best_of=[2,20]",
        "random_search.n_star=10",
        "random_search.subspace_samples=10",
        "random_search.hutchinson_samples=4",
        "random_search.batch_size=8",
        "trainer.figures=false",
    ]
    assert train.main(["--config", "conf/tiny_lora.yaml", *overrides]) == 0
    summary = json.loads((tmp_path / "tiny_lora" / "version_0" / "summary.json").read_text())
    point = summary["curves"]["random_search.points"][0]
    assert point["dim"] == summary["geometry"]["dim"]  # the adapter's A and B only
    assert point["fixed"][0]["std"] == pytest.approx(point["fixed"][0]["pred_std"], rel=0.35)
    assert set(point["subspaces"]) == {"full", "rolling", "prefix", "random"}
    assert {"best2", "best10", "best20"} <= set(point["fixed"][0])  # n_star = 10 is measured though not in best_of


def test_killed_random_search_run_resumes_to_the_same_points(tmp_path):
    from loclin.protocols.train.runner import run_experiment
    from loclin.runs.rundir import create_run_dir
    from tests.test_train import Crash

    overrides = [*FAST, "random_search.widths=[]"]
    cfg = load_config("conf/tiny_random_search.yaml", [f"output_root={tmp_path / 'a'}", *overrides])
    reference = run_experiment(cfg, create_run_dir(cfg.output_root, cfg.experiment))
    cfg = load_config("conf/tiny_random_search.yaml", [f"output_root={tmp_path / 'b'}", *overrides])
    run_dir = create_run_dir(cfg.output_root, cfg.experiment)
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_experiment(cfg, run_dir, extra_callbacks=[Crash(at=75)])  # after the step-60 checkpoint, probe 40 done
    resumed = run_experiment(cfg, run_dir, resume=True)
    for before, after in zip(
        reference["curves"]["random_search.points"], resumed["curves"]["random_search.points"], strict=True
    ):
        assert after["step"] == before["step"]
        assert after["fixed"][0]["best10"] == pytest.approx(before["fixed"][0]["best10"], rel=1e-5)
        assert after["trace_h"] == pytest.approx(before["trace_h"], rel=1e-5)


def test_width_sweep_killed_in_the_main_run_resumes_with_its_widths(tmp_path, monkeypatch):
    import loclin.protocols.random_search.probe as sweep

    args = [
        "--config",
        "conf/tiny_random_search.yaml",
        *FAST,
        "random_search.widths=[4,16]",
        "random_search.at_steps=[110]",
    ]
    assert train.main([*args, f"output_root={tmp_path / 'whole'}"]) == 0
    whole = json.loads((tmp_path / "whole" / "tiny_random_search" / "version_0" / "summary.json").read_text())
    real = sweep.run_experiment

    def killed_in_the_main_run(cfg, run_dir, resume=False, **kwargs):
        if cfg.model.d_model == 16:
            raise RuntimeError("simulated kill")
        return real(cfg, run_dir, resume=resume, **kwargs)

    monkeypatch.setattr(sweep, "run_experiment", killed_in_the_main_run)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train.main([*args, f"output_root={tmp_path / 'killed'}"])
    monkeypatch.setattr(sweep, "run_experiment", real)
    run = tmp_path / "killed" / "tiny_random_search" / "version_0"
    assert train.main(["--resume", str(run)]) == 0  # the finished width d4 is read back, not rerun
    resumed = json.loads((run / "summary.json").read_text())
    for before, after in zip(
        whole["curves"]["random_search.widths"], resumed["curves"]["random_search.widths"], strict=True
    ):
        assert after["dim"] == before["dim"]
        assert after["best_over_linear"] == pytest.approx(before["best_over_linear"], rel=1e-5)
