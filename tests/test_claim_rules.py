"""The C2, C3 and C7 rules on hand-built records: every word against a t-interval computed with scipy, or
against the bounds written into the record by hand."""

import math

import numpy as np
from scipy import stats

from loclin.claims.c2 import c2_table, c2_word, s0_reading
from loclin.claims.c3 import c3_record, c3_table, drift_word, null_word
from loclin.claims.c7 import c7_word
from loclin.claims.scorecard import scorecard


def t_bounds(values):
    values = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return values.mean() - half, values.mean() + half


def seeds(ratio_at_100, frozen_at_100, at_w=(0.6,) * 5, at_2w=(0.4,) * 5):
    return [
        {
            "map": "c3",
            "name": f"toy_seed{i}",
            "system": "toy",
            "seed": i,
            "window": 40,
            "metrics": {
                "grad.overlap_ratio_lag40": at_w[i],
                "grad.overlap_ratio_lag80": at_2w[i],
                "grad.overlap_ratio_lag100": ratio_at_100[i],
                "frozen.grad.overlap_ratio_lag100": frozen_at_100[i],
                "grad.noise_ceiling": 0.6,
            },
        }
        for i in range(len(ratio_at_100))
    ]


DRIFTED = [0.30, 0.28, 0.33, 0.31, 0.29]
FLAT_NULL = [0.97, 1.02, 0.99, 1.03, 0.96]


def test_drift_is_supported_only_below_one_half_and_below_the_frozen_null():
    assert t_bounds(DRIFTED)[1] < 0.5 and t_bounds(np.subtract(DRIFTED, FLAT_NULL))[1] < 0
    assert drift_word(seeds(DRIFTED, FLAT_NULL), "grad", 100) == "supported"
    assert null_word(seeds(DRIFTED, FLAT_NULL), 100) == "holds"
    steady = [0.71, 0.69, 0.74, 0.70, 0.72]
    assert t_bounds(steady)[0] >= 0.5
    assert drift_word(seeds(steady, FLAT_NULL), "grad", 100) == "refuted"
    # the frozen stream reads as low as the training one: the ceiling, not the basis, moved
    low_null = [0.31, 0.27, 0.34, 0.30, 0.28]
    assert t_bounds(np.subtract(DRIFTED, low_null))[1] >= 0
    assert drift_word(seeds(DRIFTED, low_null), "grad", 100).startswith("undecided")
    assert null_word(seeds(DRIFTED, low_null), 100) == "fails"


def test_a_spread_that_cannot_decide_names_the_seeds_that_would():
    spread = [0.1, 0.7, 0.3, 0.6, 0.3]
    low, high = t_bounds(spread)
    assert low < 0.5 < high
    word = drift_word(seeds(spread, FLAT_NULL), "grad", 100)
    assert word.startswith("undecided (n ≈ ") and int(word.split("≈ ")[1].split()[0]) > 5


def test_the_table_reads_the_decay_from_w_to_2w_on_paired_differences():
    rows = c3_table(seeds(DRIFTED, FLAT_NULL, at_w=(0.6, 0.62, 0.58, 0.61, 0.59), at_2w=(0.4, 0.43, 0.38, 0.41, 0.4)))
    at_w = next(row for row in rows[1:] if row[2].startswith("40 "))
    assert "decays from W to 2W" in at_w[-1] and at_w[2] == "40 (1W)"
    flat = c3_table(seeds(DRIFTED, FLAT_NULL, at_w=(0.5, 0.4, 0.45, 0.42, 0.48), at_2w=(0.41, 0.47, 0.46, 0.44, 0.43)))
    assert "flat from W" in next(row for row in flat[1:] if row[2].startswith("40 "))[-1]


def test_a_run_record_keeps_its_first_phase_and_names_its_frozen_phase_frozen():
    summary = {
        "seed": 3,
        "geometry": {"window": 40},
        "phases": [{"name": "train", "optim": {"lr": 1e-3}}, {"name": "still", "optim": {"lr": 0.0}}],
        "metrics": {
            "grad.overlap_ratio_lag40": {"value": 0.6},
            "still.grad.overlap_ratio_lag40": {"value": 0.98},
            "grad.energy_topk": {"value": 0.9},
            "grad.participation_ratio": {"value": 3.0},  # not a number C1 or C3 reads
        },
    }
    record = c3_record("synthetic_seed3", summary)
    assert record["system"] == "synthetic" and record["seed"] == 3 and record["frozen_phase"] == "still"
    assert record["metrics"] == {
        "grad.overlap_ratio_lag40": 0.6,
        "frozen.grad.overlap_ratio_lag40": 0.98,
        "grad.energy_topk": 0.9,
    }


def steering(caa, ratio=None, delta=(0.5, 0.2, 0.8), difference=(-0.1, -0.3, 0.1), null=0.05, needed=2400.0):
    metrics = {
        "steer.at_peak.slope.caa": {"value": caa[0], "interval": list(caa[1:])},
        "steer.at_peak.slope.delta": {"value": delta[0], "interval": list(delta[1:])},
        "steer.at_peak.slope.delta_minus_caa": {"value": difference[0], "interval": list(difference[1:])},
        "steer.at_peak.slope.null_random_p95": {"value": null},
        "steer.at_peak.slope.null_shuffled_p95": {"value": null / 2},
        "steer.at_peak.slope.caa_items_needed": {"value": needed},
        "steer.at_peak.slope_ratio_delta_caa": (
            {"value": ratio[0], "interval": list(ratio[1:])} if ratio else {"value": "nan", "reason": "covers 0"}
        ),
    }
    return {"map": "c6", "name": "p", "model": "asset:m", "source": "bigbench", "metrics": metrics}


def test_c7_needs_caa_to_steer_first_then_a_ratio_within_a_factor_of_two():
    covers = c7_word(steering((0.1, -0.2, 0.4)), "at_peak.")
    assert covers == "undecided (v̂'s slope interval covers 0; n ≈ 2400 items would exclude 0)"
    in_band = c7_word(steering((0.04, 0.01, 0.07), ratio=(1.0, 0.8, 1.2)), "at_peak.")  # |0.04| < null p95 0.05
    assert in_band == "undecided (v̂ steers no more than the random and shuffled-label directions)"
    assert c7_word(steering((0.6, 0.4, 0.8), ratio=(1.0, 0.7, 1.5)), "at_peak.") == "supported"
    assert c7_word(steering((0.6, 0.4, 0.8), ratio=(0.2, 0.1, 0.3)), "at_peak.") == "refuted"
    assert c7_word(steering((0.6, 0.4, 0.8), ratio=(0.8, 0.3, 1.2)), "at_peak.") == "undecided"
    # δ̂ does not move the margin while paired below v̂: refuted even without a ratio interval
    no_ratio = steering(
        (0.6, 0.4, 0.8), ratio=(0.1, math.nan, math.nan), delta=(0.05, -0.1, 0.2), difference=(-0.5, -0.7, -0.3)
    )
    assert c7_word(no_ratio, "at_peak.") == "refuted"


def test_the_scorecard_gives_c3_and_c7_their_rows_and_keeps_a_placeholder_only_for_undecided_claims():
    steer = {**steering((0.6, 0.4, 0.8), ratio=(1.0, 0.7, 1.5)), "heldout_items": 800, "layers": {}}
    steer["metrics"]["steer.cos_delta_caa.max"] = {"value": 0.3, "interval": [0.2, 0.4]}
    steer["metrics"]["steer.shuffled_peak_p95"] = {"value": 0.25}
    rows = scorecard({"c3": seeds(DRIFTED, FLAT_NULL), "c7": [steer]})
    claims = [row[0].split(":")[0] for row in rows[1:]]
    assert claims.count("C3") == 1 and claims.count("C7") == 1 and claims.count("C6") == 1
    c3 = next(row for row in rows if row[0].startswith("C3"))
    assert c3[6] == "supported" and "seeds 0,1,2,3,4" in c3[4]
    c7 = next(row for row in rows if row[0].startswith("C7"))
    assert "peak: supported" in c7[6] and "800 held-out items" in c7[4]
    assert c7[1] == "m (bigbench) (its yes/no items stand in for BoolQ)"  # a stand-in says so
    c6 = next(row for row in rows if row[0].startswith("C6"))
    assert "max over blocks per draw p95 0.25" in c6[5]


def recovery(statics: list[float], s0: float) -> dict:
    names = (
        "S1_task_gradients",
        "S2_mean_gradient_plane",
        "S3_task_vector",
        "S4_rolling_end_of_training",
        "S5_hessian",
    )
    metrics = {f"recovery.capture.{n}": v for n, v in zip(names, statics)}
    return {"metrics": {**metrics, "recovery.capture.S0_theta0_updates": s0}}


def test_c2_takes_the_best_static_basis_per_seed_and_reads_s0_on_paired_differences():
    group = [recovery([0.01, 0.03, 0.02, 0.0, 0.05], 0.20), recovery([0.04, 0.01, 0.02, 0.0, 0.01], 0.25)]
    group += [recovery([0.02, 0.02, 0.06, 0.0, 0.01], 0.15)]
    best = [0.05, 0.04, 0.06]
    assert t_bounds(best)[1] < 0.5 and c2_word(group) == "supported"
    assert t_bounds(np.subtract([0.20, 0.25, 0.15], best))[0] >= 0 and s0_reading(group) == "S0 matches or beats them"
    strong = [recovery([0.7, 0.1, 0.1, 0.1, 0.1], 0.1), recovery([0.1, 0.75, 0.1, 0.1, 0.1], 0.12)]
    strong += [recovery([0.1, 0.1, 0.72, 0.1, 0.1], 0.09)]
    assert c2_word(strong) == "refuted" and s0_reading(strong) == "S0 below them"
    row = c2_table({"cell": group})[1]
    assert row[2].startswith("0.05 [") and row[-2:] == ["supported", "S0 matches or beats them"]


def test_c5_reads_p_improve_at_the_largest_d_on_its_clopper_pearson_interval():
    from scipy import stats as st

    from loclin.claims.c5 import c5_rows, c5_word, improve_interval

    row = {"dim": 400_000, "p_improve": 0.5, "samples": 1000, "pred_p_improve": 0.5, "es_cos": 0.05}
    low, high = improve_interval(row)
    assert (low, high) == (
        st.beta.ppf(0.025, 500, 501),  # Clopper–Pearson from the beta law, by hand
        st.beta.ppf(0.975, 501, 500),
    )
    small = {**row, "dim": 2_000, "es_cos": 0.5}
    assert c5_word([small, row]) == "supported"
    assert c5_word([small, {**row, "p_improve": 0.3}]) == "refuted"
    assert c5_word([small, {**row, "p_improve": 0.41, "samples": 100}]).startswith("undecided (n ≈ ")
    card = c5_rows("rs", {"curves": {"random_search.widths": [row, small]}})[0]
    assert card[6] == "supported" and "D 2,000 → 400,000 (2.3 orders)" in card[1]


def test_c5_of_a_run_at_one_d_reads_its_last_probe_point_at_the_smallest_sigma():
    """A LoRA adapter has one D: the rule is the same, on the last probe point's smallest σ,
    counted over the es.n perturbations (380 of 1,000 improve: [0.350, 0.411] by the beta law)."""
    from scipy import stats as st

    from loclin.claims.c5 import c5_rows

    def point(step, p_improve):
        fixed = [{"p_improve": p_improve, "pred_p_improve": 0.498}, {"p_improve": 0.1, "pred_p_improve": 0.2}]
        return {"dim": 460_800, "step": step, "fixed": fixed, "es": {"n": 1000, "cos": 0.05, "pred_cos": 0.046}}

    summary = {"family": "lora", "curves": {"random_search.points": [point(100, 0.38), point(40, 0.9)]}}
    card = c5_rows("rs_lora", summary)[0]
    low, high = st.beta.ppf(0.025, 380, 621), st.beta.ppf(0.975, 381, 620)
    assert card[6].startswith("undecided") and low < 0.4 < high  # the interval straddles the floor
    assert f"0.38 [{low:.3g}, {high:.3g}]" in card[3] and "one D = 460,800" in card[1] and "step 100" in card[4]
    summary["curves"]["random_search.points"][0] = point(100, 0.47)
    assert c5_rows("rs_lora", summary)[0][6] == "supported"
    assert c5_rows("none", {"curves": {}}) == []


def test_an_undecided_c5_names_the_perturbations_that_would_decide_it():
    """At P(improve) = 0.43 the normal approximation n = z² p(1 − p) / (p − 0.4)² gives 1,046; the exact
    (Clopper–Pearson) count is the first n whose interval clears 0.4, a little above it."""
    from scipy import stats as st

    from loclin.claims.c5 import c5_word, improve_interval, samples_to_decide

    n = samples_to_decide(0.43)
    normal = st.norm.ppf(0.975) ** 2 * 0.43 * 0.57 / 0.03**2
    assert 0.95 * normal < n < 1.2 * normal
    assert improve_interval({"p_improve": 0.43, "samples": n})[0] >= 0.4
    assert improve_interval({"p_improve": 0.43, "samples": n - 50})[0] < 0.4
    assert improve_interval({"p_improve": 0.37, "samples": samples_to_decide(0.37)})[1] < 0.4  # below: refuted
    assert samples_to_decide(0.4) is None
    row = {"dim": 460_800, "p_improve": 0.43, "samples": 200}
    assert c5_word([row]) == f"undecided (n ≈ {n:,} perturbations would decide)"


def test_a_stand_in_system_says_what_it_stands_in_for():
    from loclin.claims.scorecard import with_stand_in

    assert with_stand_in("C4", "smollm2-135m-instruct") == "smollm2-135m-instruct (stands in for GPT-2 / DistilGPT-2)"
    assert with_stand_in("C6", "smollm2-135m-instruct") == "smollm2-135m-instruct"  # C6 names no model
    assert "stands in for Qwen2.5-0.5B" in with_stand_in("C7", "qwen2.5-coder-0.5b-instruct (bigbench)")
    assert with_stand_in("C3", "synthetic") == "synthetic"


def test_c6_peaks_are_held_against_the_null_of_a_maximum_on_their_lower_bounds():
    from loclin.reports.maps.c6 import peak_against_null, peak_null

    def point(name, low, peak_p95=None, per_block_p95=0.2):
        metrics = {"steer.cos_delta_caa.max": {"value": low + 0.1, "interval": [low, low + 0.2]}}
        metrics["steer.shuffled_max_p95"] = {"value": per_block_p95}
        if peak_p95 is not None:
            metrics["steer.shuffled_peak_p95"] = {"value": peak_p95}
        return {"name": name, "metrics": metrics}

    records = [point("a", 0.35, peak_p95=0.3), point("b", 0.25, peak_p95=0.3), point("old", 0.25)]
    assert peak_null(records[0]) == (0.3, True) and peak_null(records[2]) == (0.2, False)
    text = peak_against_null(records)
    assert "in 2 of 3 points" in text and "a (0.35 > 0.3)" in text and "old (0.25 > 0.2, older null)" in text


def test_c1_needs_held_out_capture_two_orders_above_chance_and_energy_above_k_over_w():
    from loclin.claims.c1 import c1_rows, c1_word

    def group(captures, energies, chance=2e-5):
        return [
            {
                "system": "toy",
                "seed": i,
                "window": 40,
                "k": 8,
                "metrics": {"grad.heldout_capture_h1": c, "grad.energy_topk": e, "grad.random_capture": chance},
            }
            for i, (c, e) in enumerate(zip(captures, energies))
        ]

    strong = group([0.13, 0.12, 0.14, 0.13, 0.125], [0.6, 0.61, 0.59, 0.6, 0.62])
    assert t_bounds([0.13, 0.12, 0.14, 0.13, 0.125])[0] >= 100 * 2e-5 and c1_word(strong) == "supported"
    assert c1_word(group([1e-4, 2e-4, 1.5e-4], [0.3, 0.3, 0.3])) == "refuted"  # upper bound < 100·k/D = 2e-3
    flat = group([0.13, 0.12, 0.14], [0.19, 0.2, 0.21])  # energy no higher than k/W = 0.2
    assert c1_word(flat) == "undecided"
    assert c1_rows("m", strong)[0][6] == "supported"
