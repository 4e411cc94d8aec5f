"""Steering slopes, their null band, the paired difference and the power (loclin.protocols.steer.slopes),
against numpy's least squares, scipy's normal law and a hand-built sign flip."""

import math

import numpy as np
import pytest
import torch
from loclin.geometry.intervals import detectable_effect, items_to_detect
from loclin.geometry.steering import slope_at_zero
from scipy import stats

from loclin.protocols.steer.slopes import DIRECTIONS, null_directions, slope_metrics


def test_the_slope_at_zero_is_numpys_polyfit_for_every_row_and_item():
    rng = np.random.default_rng(0)
    alphas = [-0.25, -0.1, 0.0, 0.1, 0.25]
    values = rng.normal(size=(3, len(alphas), 7))
    got = slope_at_zero(alphas, torch.tensor(values)).numpy()
    for r in range(3):
        for i in range(7):
            assert got[r, i] == pytest.approx(np.polyfit(alphas, values[r, :, i], 1)[0], rel=1e-12)


def test_the_detectable_slope_is_detected_with_80_percent_power_and_items_to_detect_inverts_it():
    rng = np.random.default_rng(1)
    slopes = rng.normal(0.1, 2.0, size=400)
    effect = detectable_effect(slopes.tolist())
    se = slopes.std(ddof=1) / math.sqrt(len(slopes))
    z = stats.norm.ppf(0.975)
    power = stats.norm.cdf(effect / se - z) + stats.norm.cdf(-effect / se - z)  # two-sided test at 5%
    assert power == pytest.approx(0.8, abs=1e-3)
    assert effect == pytest.approx(2.8016 * se, rel=1e-3)
    n = items_to_detect(slopes.tolist())
    # at n items of the same spread, the detectable slope is the measured mean (n is the first such)
    at_n = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * slopes.std(ddof=1) / math.sqrt(n)
    before = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * slopes.std(ddof=1) / math.sqrt(n - 1)
    assert at_n <= abs(slopes.mean()) < before


def test_null_directions_are_sign_flipped_means_and_gaussian_directions():
    differences = torch.randn(9, 5, dtype=torch.float64)
    nulls = null_directions(differences, 20, seed=3)
    assert nulls["random"].shape == nulls["shuffled"].shape == (20, 5)
    generator = torch.Generator().manual_seed(3 + 7)  # the same draw by hand: signs first
    signs = torch.randint(0, 2, (20, 9), generator=generator, dtype=torch.float64) * 2 - 1
    by_hand = torch.stack([(s[:, None] * differences).mean(0) for s in signs])
    torch.testing.assert_close(nulls["shuffled"], by_hand)
    assert len({tuple(row.tolist()) for row in nulls["random"]}) == 20


def curves(caa: np.ndarray, delta: np.ndarray) -> dict:
    slopes = {name: np.zeros_like(caa).tolist() for name in DIRECTIONS}
    slopes.update(caa=caa.tolist(), delta=delta.tolist())
    rng = np.random.default_rng(5)
    nulls = {kind: rng.normal(0, 0.01, size=(20, len(caa))).tolist() for kind in ("random", "shuffled")}
    return {"item_slopes": slopes, "null_item_slopes": nulls}


def test_a_paired_difference_resolves_what_two_separate_intervals_cannot():
    rng = np.random.default_rng(2)
    shared = rng.normal(0, 1.0, size=200)  # items differ a lot; δ̂ and v̂ move each item alike
    caa, delta = shared + 0.05, shared + 0.05 + 0.1 + rng.normal(0, 0.05, size=200)
    metrics = slope_metrics(curves(caa, delta), 3, "", draws=400, seed=0)
    low, high = metrics["steer.slope.delta_minus_caa"]["interval"]
    assert low > 0  # paired: the +0.1 is resolved
    caa_interval, delta_interval = metrics["steer.slope.caa"]["interval"], metrics["steer.slope.delta"]["interval"]
    assert delta_interval[0] < caa_interval[1]  # unpaired: the two intervals overlap
    assert metrics["steer.slope.delta_minus_caa"]["value"] == pytest.approx(float((delta - caa).mean()))
    # v̂'s slope interval covers 0, so no ratio is given, and the reason is
    assert math.isnan(metrics["steer.slope_ratio_delta_caa"]["value"])
    assert "covers 0" in metrics["steer.slope_ratio_delta_caa"]["reason"]


def test_the_ratio_is_given_where_caas_interval_excludes_zero_and_the_null_band_is_the_directions_slopes():
    rng = np.random.default_rng(4)
    caa = rng.normal(1.0, 0.5, size=300)
    delta = 0.5 * caa + rng.normal(0, 0.1, size=300)
    made = curves(caa, delta)
    metrics = slope_metrics(made, 3, "at_peak.", draws=400, seed=0)
    ratio = metrics["steer.at_peak.slope_ratio_delta_caa"]
    assert ratio["value"] == pytest.approx(delta.mean() / caa.mean())
    assert ratio["interval"][0] < 0.5 < ratio["interval"][1]
    per_direction = np.array(made["null_item_slopes"]["random"]).mean(1)
    entry = metrics["steer.at_peak.slope.null_random_p95"]
    assert entry["value"] == pytest.approx(np.quantile(np.abs(per_direction), 0.95))
    assert entry["band"] == pytest.approx([per_direction.min(), per_direction.max()])
    needed = metrics["steer.at_peak.slope.caa_items_needed"]["value"]
    assert needed == items_to_detect(caa.tolist()) and needed < 300  # 300 items already detect it


def test_a_null_direction_has_the_slope_it_has_when_steered_over_every_alpha(tiny_gpt2):
    from loclin.datamodules.contrast import ContrastItem, encode_contrasts
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from loclin.protocols.steer.slopes import steering_curves

    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2).eval()
    items = [ContrastItem(f"Is {a} more than {b}? Answer:", " Yes", " No") for a, b in [(3, 1), (2, 5), (7, 4)]]
    batch = encode_contrasts(tokenizer, items)
    d = model.config.n_embd
    first, second = torch.randn(2, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    alphas = [-2.0, -0.25, 0.0, 0.25, 2.0]  # the fit's points are those of the nulls: −0.25, 0, 0.25
    made = steering_curves(model, batch, {"caa": first}, 1, alphas, 2, nulls={"random": torch.stack([second, first])})
    as_null = np.array(made["null_item_slopes"]["random"][1])
    as_direction = np.array(made["item_slopes"]["caa"])
    np.testing.assert_allclose(as_null, as_direction, rtol=1e-4, atol=1e-6 * np.abs(as_direction).max())
    assert not np.allclose(made["null_item_slopes"]["random"][0], as_direction)


def test_bigbench_rows_become_contrast_items_with_the_gold_answer_first(tmp_path):
    import json

    from loclin.datamodules.contrast import ContrastItem, load_items

    rows = [
        {"id": "strategyqa/0", "task": "strategyqa", "question": "Can fish fly?", "answer": "no"},
        {"id": "navigate/3", "task": "navigate", "question": "Take 1 step. Turn around.", "answer": "yes"},
    ]
    (tmp_path / "yes_no.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    items = load_items("bigbench", tmp_path, "{question}\nAnswer:", " Yes", " No")
    assert items == [
        ContrastItem("Can fish fly?\nAnswer:", " No", " Yes"),
        ContrastItem("Take 1 step. Turn around.\nAnswer:", " Yes", " No"),
    ]
