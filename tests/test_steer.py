"""The steering experiment end to end on the tiny GPT-2, and one-line template errors."""

import json
import math

import pytest
from loclin.datamodules.contrast import ContrastItem, TemplateError, encode_contrasts
from transformers import AutoTokenizer

import analyze
import train
from loclin.config import ConfigError, load_config


@pytest.mark.slow
def test_tiny_steer_reports_layers_baseline_flatness_and_curves(tiny_gpt2, contrast_assets, tmp_path):
    args = [
        "--config",
        "conf/tiny_steer.yaml",
        f"output_root={tmp_path}",
        f"steer.model={tiny_gpt2}",
        f"steer.data={contrast_assets}",
    ]
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
    for name in (
        "steer.cos_delta_caa.max",
        "steer.cos_delta_caa.mean",
        "steer.slope.delta",
        "steer.slope.delta_minus_caa",
    ):
        low, high = summary["metrics"][name]["interval"]  # 95% bootstrap over items
        assert low <= summary["metrics"][name]["value"] <= high, name
    ratio, caa = summary["metrics"]["steer.slope_ratio_delta_caa"], summary["metrics"]["steer.slope.caa"]
    covers_zero = caa["interval"][0] <= 0 <= caa["interval"][1]
    assert ("covers 0" in ratio.get("reason", "")) == covers_zero and ("interval" in ratio) != covers_zero
    for kind in ("random", "shuffled"):  # 20 null directions of each kind: their |slope|'s p95 and range
        band = summary["metrics"][f"steer.slope.null_{kind}_p95"]
        assert band["band"][0] <= band["band"][1] and band["value"] <= max(map(abs, band["band"])) + 1e-12
    assert summary["metrics"]["steer.slope.caa_detectable"]["value"] > 0
    # the null of a maximum over blocks dominates each block's null, draw by draw, so its p95 does too
    peak_null = summary["metrics"]["steer.shuffled_peak_p95"]["value"]
    assert peak_null >= summary["metrics"]["steer.shuffled_max_p95"]["value"] - 1e-12
    assert len(layers["shuffled_peak"]) == 100
    assert len(layers["cos_delta_caa_interval"]) == 2 and len(layers["shuffled_p95"]) == 2
    # δ read at t − 1 too (its own intervals), and steering at the block where cos(δ, v) peaks
    assert (
        len(layers["cos_delta_caa_prompt_end"]) == 2 and layers["cos_delta_caa_prompt_end"] != layers["cos_delta_caa"]
    )
    low, high = summary["metrics"]["steer.prompt_end.cos_delta_caa.max"]["interval"]
    assert low <= summary["metrics"]["steer.prompt_end.cos_delta_caa.max"]["value"] <= high
    peak = summary["metrics"]["steer.peak_layer"]["value"]
    assert layers["cos_delta_caa"][peak] == max(layers["cos_delta_caa"])
    assert (
        summary["curves"]["steer.curves_at_peak"]["layer"] == peak
        and "steer.at_peak.slope_ratio_delta_caa" in summary["metrics"]
    )
    assert set(summary["curves"]["steer.curves"]["item_slopes"]) == {"caa", "delta", "s", "random", "shuffled"}
    assert 0 < summary["metrics"]["steer.shuffled_p95"]["value"] <= 1
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
        (["steer.source=boolq"], "steer.source='boolq' must be one of ['coqa', 'statements', 'sycophancy',"),
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
    with pytest.raises(ConfigError, match="activation_shift needs family: lora"):
        load_config("conf/tiny_synthetic.yaml", ["activation_shift.enabled=true"])


@pytest.mark.slow
def test_one_step_on_a_fresh_lora_adapter(tiny_gpt2, contrast_assets, tmp_path):
    common = ["--config", "conf/tiny_steer.yaml", f"steer.model={tiny_gpt2}", f"steer.data={contrast_assets}"]
    assert train.main([*common, f"output_root={tmp_path / 'all'}"]) == 0
    assert (
        train.main(
            [
                *common,
                f"output_root={tmp_path / 'lora'}",
                "steer.stepped=lora",
                "steer.lora.target_modules=[c_attn]",
                "steer.lora.rank=2",
            ]
        )
        == 0
    )
    full, lora = (
        json.loads((tmp_path / name / "tiny_steer" / "version_0" / "summary.json").read_text())
        for name in ("all", "lora")
    )
    assert lora["stepped"] == "lora"
    # a fresh adapter (B = 0) leaves the model's function alone: v and s are those of the base model
    assert lora["curves"]["steer.layers"]["cos_s_caa"] == pytest.approx(
        full["curves"]["steer.layers"]["cos_s_caa"], abs=1e-5
    )
    # the step itself differs: only B moves
    assert lora["curves"]["steer.layers"]["cos_delta_caa"] != pytest.approx(
        full["curves"]["steer.layers"]["cos_delta_caa"], abs=1e-3
    )


def test_a_bos_prepending_tokenizer_keeps_its_bos_and_the_answer_position(tiny_gpt2):
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2, add_bos_token=True)  # Llama-style: BOS first
    items = [ContrastItem("Is it? Answer:", " Yes", " No"), ContrastItem("Is the sky green? Answer:", " No", " Yes")]
    batch = encode_contrasts(tokenizer, items)
    plain = encode_contrasts(tokenizer, items, special_tokens=False)
    bos = tokenizer.bos_token_id
    assert batch["positive"][:, 0].tolist() == [bos, bos] and plain["positive"][0, 0] != bos
    assert (batch["answer_pos"] == plain["answer_pos"] + 1).all()
    for row, item in enumerate(items):
        t = int(batch["answer_pos"][row])
        assert t == len(tokenizer(item.prompt, add_special_tokens=False)["input_ids"]) + 1
        assert tokenizer.decode(batch["positive"][row, t]) == item.positive
        assert tokenizer.decode(batch["negative"][row, t]) == item.negative


def test_caa_vectors_equal_a_plain_mean_difference_on_a_bos_prepending_tokenizer(tmp_path, text_assets):
    import torch
    from omegaconf import OmegaConf
    from transformers import AutoModelForCausalLM

    from loclin.protocols.steer.runner import measure_directions
    from loclin.tiny_models import save_tiny_gpt2

    folder = save_tiny_gpt2(tmp_path / "tiny3", text_assets["tokenizer"], n_layer=3)
    tokenizer = AutoTokenizer.from_pretrained(folder, add_bos_token=True)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    items = [
        ContrastItem(f"Is {a} more than {b}? Answer:", " Yes" if a > b else " No", " No" if a > b else " Yes")
        for a, b in [(3, 1), (2, 5), (7, 4), (1, 9), (6, 6)]
    ]
    cfg = OmegaConf.create({"steer": {"batch_size": 2, "etas": [1e-3], "adam_eta": 1e-3}})
    caa = measure_directions(model, encode_contrasts(tokenizer, items), cfg)["caa"]
    # independent: the tokenizer's own convention on the whole text, HF's hidden states
    differences = []
    with torch.no_grad():
        for item in items:
            pos = tokenizer(item.prompt + item.positive)["input_ids"]
            neg = tokenizer(item.prompt + item.negative)["input_ids"]
            assert pos[0] == tokenizer.bos_token_id
            t = next(i for i, (a, b) in enumerate(zip(pos, neg)) if a != b)
            h_pos = model(torch.tensor([pos]), output_hidden_states=True).hidden_states
            h_neg = model(torch.tensor([neg]), output_hidden_states=True).hidden_states
            differences.append(
                torch.stack([h_pos[i + 1][0, t] - h_neg[i + 1][0, t] for i in range(2)])
            )  # the last is after ln_f
    reference = torch.stack(differences).double().mean(0)
    torch.testing.assert_close(caa[:2], reference, rtol=1e-5, atol=1e-6)
