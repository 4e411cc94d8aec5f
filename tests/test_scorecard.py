"""The scorecard's words (loclin.claims.scorecard) on constructed records whose intervals are known."""

from loclin.claims.scorecard import c4_rows, c6_rows, combine, scorecard
from loclin.reports.maps.c4 import c4_cells


def test_combined_words_need_every_cell_to_agree():
    assert combine({"a": "supported", "b": "supported"}) == "supported"
    assert combine({"a": "refuted", "b": "refuted"}) == "refuted"
    assert combine({"a": "supported", "b": "refuted", "c": "undecided"}) == "regime-dependent: supported in a"
    assert combine({"a": "supported", "b": "undecided"}) == "undecided"


def c4(lr, seed, p8, share=0.9):
    metrics = {
        "recovery.capture_at_T200.P8_updates": p8,
        "recovery.capture_at_T200.displacement_share_P8": share,
        "recovery.capture_at_T200.P8_offset_p95": 0.3,
        "recovery.capture_at_T200.P8_offset_mean": 0.2,
        "recovery.capture_at_T200.P8_replica": p8,
    }
    made_by = {"family": "synthetic", "threads": 1}
    return {
        "map": "c4",
        "sweep": "sgd",
        "cell": {"phases.2.lr": lr},
        "seed": seed,
        "metrics": metrics,
        "made_by": made_by,
    }


def test_c4_rows_say_regime_dependent_and_read_the_chosen_cell():
    # lr 0.1: P8 0.9 ± 0.01 over 3 seeds (supported); lr 1.0: 0.3 ± 0.01 (refuted)
    records = [c4(0.1, s, 0.9 + d) for s, d in ((0, -0.01), (1, 0.0), (2, 0.01))]
    records += [c4(1.0, s, 0.3 + d) for s, d in ((0, -0.01), (1, 0.0), (2, 0.01))]
    p8_row, special_row = c4_rows("c4_x", c4_cells(records), [200])
    assert p8_row[6] == "regime-dependent: supported in sgd: recover lr=0.1"
    assert p8_row[3].startswith("0.9 [") and "best of 2 cells: sgd: recover lr=0.1" in p8_row[3]
    assert p8_row[1] == "synthetic" and p8_row[7] == "[map c4_x](#map-c4_x)"
    assert special_row[3] == "best cell: short recovery" and special_row[6] == "refuted"  # displacement share 0.9
    late = [c4(0.1, s, 0.9 + d, share=0.3 + d) for s, d in ((0, -0.01), (1, 0.0), (2, 0.01))]
    assert c4_rows("c4_x", c4_cells(late), [200])[1][6] == "supported in sgd: recover lr=0.1"


def test_c6_rows_hold_the_peak_against_the_threshold_and_the_max_over_blocks_null():
    def point(name, value, low, high, null):
        metrics = {
            "steer.cos_delta_caa.max": {"value": value, "interval": [low, high]},
            "steer.shuffled_max_p95": {"value": null},
        }
        return {"map": "c6", "name": name, "model": "asset:m", "metrics": metrics}

    assert c6_rows("c6", [point("a", 0.7, 0.6, 0.8, 0.2)])[0][6] == "supported"
    assert c6_rows("c6", [point("a", 0.7, 0.6, 0.8, 0.65)])[0][6] == "undecided"  # not above its null
    assert c6_rows("c6", [point("a", 0.3, 0.2, 0.4, 0.1)])[0][6] == "refuted"
    rows = scorecard({"c6": [point("a", 0.3, 0.2, 0.4, 0.1)]})
    assert rows[1][1] == "m" and [r[0].split(":")[0] for r in rows[2:]] == ["C1", "C2", "C3", "C5", "C7"]
