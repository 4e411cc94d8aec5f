"""LoRA adapters on causal LMs: loading, adapter geometry against peft, text batches against
transformers' own loss, the tiny end-to-end recovery run, exact resume, offline hub ids."""

import json
import math
import re
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from loclin.datamodules.sections import DataConfig
from loclin.datamodules.text import TextTasksDataModule, encode_examples

import train
from loclin.config import ConfigError, load_config
from loclin.model_source import ModelSourceError, resolve_model_source
from loclin.protocols.train.build import build_lora_module
from loclin.protocols.train.runner import run_experiment
from loclin.runs.rundir import create_run_dir
from loclin.runs.tensorboard import drift_layout

pytestmark = pytest.mark.slow  # end-to-end runs: the full suite, not the quick one

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "conf" / "tiny_lora.yaml"


def tiny_config(root: Path, model_dir: Path, *overrides: str):
    return load_config(TINY, [f"output_root={root}", f"lm.model={model_dir}", "trainer.figures=false", *overrides])


@pytest.fixture(scope="module")
def module(tiny_gpt2, tmp_path_factory):
    return build_lora_module(tiny_config(tmp_path_factory.mktemp("unused"), tiny_gpt2))


def test_only_lora_matrices_train_and_form_the_two_groups(module):
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    groups = module.parameter_groups()
    assert list(groups) == ["lora_A", "lora_B"]
    grouped = {n for params in groups.values() for n, _ in params}
    assert grouped == trainable and all(".lora_" in n for n in trainable)
    # 2 layers × (c_attn 64→192, c_fc 64→256) × rank 4: A r×in, B out×r
    assert sum(p.numel() for _, p in module.trainable_parameters()) == 2 * (4 * 64 + 192 * 4 + 4 * 64 + 256 * 4)


def test_effective_weight_equals_peft_merged_weight_change(module):
    """(α/r) B A from lora_layers() against peft's own merge, on GPT-2's Conv1D (fan_in_fan_out)."""
    named = dict(module.named_parameters())
    with torch.no_grad():
        for _, param in module.parameter_groups()["lora_B"]:
            param.normal_(0, 0.1)  # B starts at zero; give it something to merge
        a_name, b_name, scale = module.lora_layers()[0]
        layer = module.get_submodule(a_name.split(".lora_A.")[0])
        before = layer.base_layer.weight.detach().clone()
        layer.merge()
        merged_change = layer.base_layer.weight.detach() - before
        layer.unmerge()
    assert scale == pytest.approx(8 / 4)
    assert layer.fan_in_fan_out
    torch.testing.assert_close(merged_change.T, scale * named[b_name] @ named[a_name], rtol=1e-5, atol=1e-6)


def test_answer_token_loss_equals_transformers_labels_loss(module, text_assets):
    tokenizer = module.tokenizer
    dm = TextTasksDataModule(
        tokenizer, DataConfig(tasks=["arith", "reverse"], batch_size=4, heldout_size=8), corpus=text_assets["corpus"]
    )
    examples = [dm.samplers["reverse"].heldout[0], dm.samplers["arith"].heldout[1]]
    batch = encode_examples(tokenizer, examples, [2, 0])
    answer_ids = [tokenizer(a, add_special_tokens=False)["input_ids"] for _, a in examples]
    for row, ids in enumerate(answer_ids):  # targets are exactly the answer's own tokens
        assert batch["target"][row][batch["target"][row] != -100].tolist() == ids
    total, count = 0.0, 0
    for (prompt, _), ids in zip(examples, answer_ids):
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        sequence = torch.tensor([prompt_ids + ids])
        labels = torch.tensor([[-100] * len(prompt_ids) + ids])
        reference = module.model(input_ids=sequence, labels=labels).loss  # transformers shifts labels itself
        total, count = total + float(reference) * len(ids), count + len(ids)
    assert float(module.loss(batch)) == pytest.approx(total / count, rel=1e-5)  # padding changes nothing


def test_heldout_examples_are_never_trained_on(text_assets, module):
    data = DataConfig(tasks=["arith", "compare", "reverse", "nextword"], heldout_size=64)
    dm = TextTasksDataModule(module.tokenizer, data, corpus=text_assets["corpus"])
    rng = np.random.default_rng(0)
    for name, task in dm.samplers.items():
        heldout = set(task.heldout)
        train = task.sample(rng, 2000)
        if name == "nextword":  # held out by sentence: no training prompt starts a held-out sentence
            held_sentences = {" ".join(task.sentences[k]) for k in task.heldout_keys.tolist()}
            assert not any(" ".join(task.sentences[k]) in held_sentences for k in task.train_keys[:2000].tolist())
        else:
            assert not heldout & set(train), name
    compare = [answer for _, answer in dm.samplers["compare"].heldout]
    assert set(compare) == {" Yes", " No"}


@pytest.fixture(scope="module")
def tiny_run(tiny_gpt2, tmp_path_factory):
    cfg = tiny_config(tmp_path_factory.mktemp("runs"), tiny_gpt2)
    run_dir = create_run_dir(cfg.output_root, cfg.experiment)
    return run_dir, run_experiment(cfg, run_dir)


def test_tiny_lora_recovery_measures_both_spaces_and_drift(tiny_run, module):
    run_dir, summary = tiny_run
    metrics, curve = summary["metrics"], summary["curves"]["recovery.prefix"]
    assert summary["geometry"]["dim"] == 4608
    assert curve["m"] == [1, 2, 4, 8, 16]
    for key in ("updates", "effective_updates"):
        values = curve[key]
        assert all(0 <= v <= 1 + 1e-9 for v in values) and all(a <= b + 1e-12 for a, b in zip(values, values[1:])), key
    assert curve["effective_dim"] == 2 * (64 * 192 + 64 * 256)
    for name in ("S1_task_gradients", "S3_task_vector", "S5_hessian", "S6_go_back", "S7_random", "P8_updates"):
        assert f"recovery.capture.{name}" in metrics, name
    assert "recover.grad.overlap_lag10" in metrics and "recover.grad.half_life" in metrics
    assert "task.compare.acc" in metrics and "recovery.theta_R.acc" in metrics
    # checkpoints hold the adapter, not the frozen 3.3M-parameter base model
    checkpoint = torch.load(run_dir / "checkpoints" / "recover" / "end.ckpt", weights_only=False)
    assert set(checkpoint["state_dict"]) == {n for n, _ in module.trainable_parameters()}


class CrashInRecovery(Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.datamodule.phase == 2 and trainer.global_step >= 25:
            raise RuntimeError("simulated kill")


def test_killed_lora_run_resumes_to_the_same_numbers(tiny_run, tiny_gpt2, tmp_path):
    _, reference = tiny_run
    cfg = tiny_config(tmp_path, tiny_gpt2)
    run_dir = create_run_dir(cfg.output_root, cfg.experiment)
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_experiment(cfg, run_dir, extra_callbacks=[CrashInRecovery()])
    assert (run_dir / "checkpoints" / "recover" / "last.ckpt").is_file()  # mid-recovery, adapter only
    resumed = run_experiment(cfg, run_dir, resume=True)
    assert resumed["metrics"].keys() == reference["metrics"].keys()
    for name, entry in reference["metrics"].items():
        assert math.isclose(resumed["metrics"][name]["value"], entry["value"], rel_tol=1e-5, abs_tol=1e-7), name


def test_lora_gpt2_config_builds_from_a_local_gpt2_family_model(tiny_gpt2, tmp_path):
    cfg = load_config(REPO / "conf" / "lora_gpt2.yaml", [f"lm.model={tiny_gpt2}", f"output_root={tmp_path}"])
    module = build_lora_module(cfg)
    names = [n for n, _ in module.trainable_parameters()]
    assert names and all(".c_attn.lora_" in n for n in names)
    assert module.get_submodule(names[0].split(".lora_A.")[0]).fan_in_fan_out
    batch = encode_examples(module.tokenizer, [("2 + 3 =", " 5")], [0])
    assert math.isfinite(float(module.loss(batch)))


@pytest.mark.parametrize("config", ["lora_gpt2.yaml", "lora_distilgpt2.yaml"])
def test_hub_configs_fail_fast_offline_and_write_nothing(config, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(
        huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache")
    )  # a user's cached gpt2 must not count
    assert train.main(["--config", str(REPO / "conf" / config), f"output_root={tmp_path / 'runs'}"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "is not a local directory or in the Hugging Face cache" in error
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["data.tasks=[arith,add]"], "unknown task(s) ['add']"),
        (["lm.lora.rank=0"], "lm.lora.rank=0"),
        (["lm.lora.target_modules=[]"], "lm.lora.target_modules is empty"),
        (["lm.model=asset:no-such-model"], "unknown asset 'no-such-model'"),
        (["data.corpus=/nonexistent/brown.txt"], "file /nonexistent/brown.txt not found"),
        (["geometry.groups=[lora_C]"], "unknown group(s) ['lora_C']"),
    ],
)
def test_lora_config_errors_are_one_line(overrides, fragment, tiny_gpt2):
    with pytest.raises(ConfigError) as error:
        load_config(TINY, [f"lm.model={tiny_gpt2}", *overrides])
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_missing_asset_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCLIN_CACHE", str(tmp_path / "empty"))
    with pytest.raises(
        ConfigError, match=r"lm.model: asset 'tiny-gpt2' is not in the cache .* python -m loclin.assets fetch tiny-gpt2"
    ):
        load_config(TINY)


def test_summary_json_is_plain_json(tiny_run):
    run_dir, _ = tiny_run
    assert json.loads((run_dir / "summary.json").read_text())["experiment"] == "tiny_lora"


def test_model_sources_resolve_local_directories_and_refuse_bad_ones(tiny_gpt2, text_assets, tmp_path):
    assert resolve_model_source(str(tiny_gpt2)) == (str(tiny_gpt2), True)
    assert resolve_model_source(str(text_assets["tokenizer"]), "tokenizer_config.json")[1] is True
    with pytest.raises(ModelSourceError, match="without config.json"):
        resolve_model_source(str(text_assets["tokenizer"]))  # a tokenizer is not a model
    with pytest.raises(ModelSourceError, match="does not exist"):
        resolve_model_source(str(tmp_path / "missing"))


def test_activation_shift_callback_logs_cosines_to_the_caa_vector(tiny_gpt2, contrast_assets, tmp_path):
    overrides = [
        "activation_shift.enabled=true",
        f"activation_shift.data={contrast_assets}",
        "activation_shift.stride=10",
        "activation_shift.n_items=8",
        "protocol=train",
        "phases=[{name: train, steps: 30}]",
        "geometry.enabled=false",
    ]
    cfg = tiny_config(tmp_path, tiny_gpt2, *overrides)
    summary = run_experiment(cfg, create_run_dir(cfg.output_root, cfg.experiment))
    curve = summary["curves"]["activation.shift"]
    assert curve["step"] == [10, 20, 30]
    assert all(len(row) == 2 and all(-1 <= c <= 1 for c in row) for row in curve["cos_shift"])  # one per block
    assert curve["random_rms"] == pytest.approx(64**-0.5)
    assert -1 <= summary["metrics"]["activation.cos_shift_caa_mean"]["value"] <= 1
    panels = drift_layout([], [], ["arith"], activation_shift=True)[
        "activation"
    ]  # the TensorBoard charts find the tags
    per_block, means = (chart[1][0] for chart in panels.values())
    assert re.fullmatch(per_block, "activation/cos_shift_caa/block1") and re.fullmatch(
        means, "activation/cos_total_shift_caa_mean"
    )
