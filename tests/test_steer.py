"""The steering experiment end to end on the tiny GPT-2, and one-line template errors."""

import json
import math

import pytest
from transformers import AutoTokenizer

import analyze
import train
from datamodules.contrast import ContrastItem, TemplateError, encode_contrasts
from loclin.config import ConfigError, load_config


def test_tiny_steer_reports_layers_baseline_flatness_and_curves(tiny_gpt2, contrast_assets, tmp_path):
    args = ["--config", "conf/tiny_steer.yaml", f"output_root={tmp_path}", f"steer.model={tiny_gpt2}", f"steer.data={contrast_assets}"]
    assert train.main(args) == 0
    summary = json.loads((tmp_path / "tiny_steer" / "version_0" / "summary.json").read_text())
    layers = summary["curves"]["steer.layers"]
    assert len(layers["cos_delta_caa"]) == len(layers["cos_s_caa"]) == 2  # one per block
    assert all(-1 <= c <= 1 for c in layers["cos_delta_caa"] + layers["cos_s_caa"])
    assert summary["metrics"]["steer.random_rms"]["value"] == pytest.approx(1 / math.sqrt(64), rel=0.1)
    assert set(summary["curves"]["steer.flatness"]) == {"0.0001", "0.001", "0.01"}
    curves = summary["curves"]["steer.curves"]
    at_zero = curves["alphas"].index(0.0)
    unsteered = {name: curves[name]["margin"][at_zero] for name in ("caa", "delta", "s", "random")}
    # α = 0 is the same model whatever the direction (up to float32 round-off: the directions'
    # rows run in different batches, and kernels may round differently by batch shape)
    assert max(unsteered.values()) - min(unsteered.values()) <= 1e-6 * abs(unsteered["caa"])
    assert summary["items"] == {"train": 12, "heldout": 8}
    out = tmp_path / "analysis"
    assert analyze.main([str(tmp_path / "tiny_steer" / "version_0"), "--out", str(out)]) == 0
    assert all((out / f"steer_{kind}_0.png").stat().st_size > 1000 for kind in ("layers", "flatness", "curves"))
    assert "0.58" in (out / "report.md").read_text()


def test_templates_that_merge_with_the_answer_are_one_line_errors(tiny_gpt2):
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    with pytest.raises(TemplateError, match="merge with the prompt's last token"):
        encode_contrasts(tokenizer, [ContrastItem("Is it? Answer: ", "Yes", "No")])  # trailing space
    with pytest.raises(TemplateError, match="no differing token"):
        encode_contrasts(tokenizer, [ContrastItem("Is it? Answer:", " Yes", " Yes")])
    batch = encode_contrasts(tokenizer, [ContrastItem("Is it? Answer:", " Yes", " No")])
    assert tokenizer.decode(batch["positive_token"]) == " Yes" and tokenizer.decode(batch["negative_token"]) == " No"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["steer.source=boolq"], "steer.source='boolq' must be coqa, statements or sycophancy"),
        (["steer.alphas=[-2.0,0.0,0.5,2.0]"], "needs a nonzero α within 0.25 of 0"),
        (["steer.etas=[0.0]"], "must be > 0"),
        (["steer.stepped=full"], "steer.stepped='full' must be all or lora"),
        (["steer.model=asset:nope"], "steer.model: unknown asset 'nope'"),
    ],
)
def test_steer_config_errors_are_one_line(overrides, fragment, tiny_gpt2, contrast_assets):
    with pytest.raises(ConfigError) as error:
        load_config("conf/tiny_steer.yaml", [f"steer.data={contrast_assets}", *overrides])
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_activation_shift_needs_a_lora_run():
    with pytest.raises(ConfigError, match="activation_shift needs kind: lora"):
        load_config("conf/tiny_synthetic.yaml", ["activation_shift.enabled=true"])


def test_one_step_on_a_fresh_lora_adapter(tiny_gpt2, contrast_assets, tmp_path):
    common = ["--config", "conf/tiny_steer.yaml", f"steer.model={tiny_gpt2}", f"steer.data={contrast_assets}"]
    assert train.main([*common, f"output_root={tmp_path / 'all'}"]) == 0
    assert train.main([*common, f"output_root={tmp_path / 'lora'}", "steer.stepped=lora", "steer.lora.target_modules=[c_attn]", "steer.lora.rank=2"]) == 0
    full, lora = (json.loads((tmp_path / name / "tiny_steer" / "version_0" / "summary.json").read_text()) for name in ("all", "lora"))
    assert lora["stepped"] == "lora"
    # a fresh adapter (B = 0) leaves the model's function alone: v and s are those of the base model
    assert lora["curves"]["steer.layers"]["cos_s_caa"] == pytest.approx(full["curves"]["steer.layers"]["cos_s_caa"], abs=1e-5)
    # the step itself differs: only B moves
    assert lora["curves"]["steer.layers"]["cos_delta_caa"] != pytest.approx(full["curves"]["steer.layers"]["cos_delta_caa"], abs=1e-3)
