"""Table cells: bounds say so, and a mean over seeds says how many of its values were bounds."""

import numpy as np
import pytest
from scipy import stats

from loclin.reports.run_tables import seed_cell
from loclin.reports.tables import fmt_value


def run(value: float, bound: str = "") -> dict:
    entry = {"value": value, "definition": "half-life"}
    return {"metrics": {"grad.half_life": {**entry, "bound": bound} if bound else entry}}


def test_a_bound_is_written_as_one_and_a_missing_metric_as_a_dash():
    assert fmt_value(run(17.5), "grad.half_life") == "17.5"
    assert fmt_value(run(10.0, "at_most"), "grad.half_life") == "≤ 10"
    assert fmt_value(run(400.0, "at_least"), "grad.half_life") == "≥ 400"
    assert fmt_value(run(1.0), "grad.overlap_lag100") == "–"
    assert fmt_value(run(float("inf"), "at_least"), "grad.half_life") == "inf"  # says so itself, no "≥ inf"


def test_the_seed_mean_carries_its_t_interval_and_counts_its_bounds():
    runs = [run(20.0), run(30.0, "at_least"), run(40.0)]
    low, high = stats.t.interval(0.95, df=2, loc=30.0, scale=stats.sem([20.0, 30.0, 40.0]))
    assert np.isclose(low, 30 - 24.84, atol=0.01)  # by hand: t(0.975, 2) = 4.303, sem = 5.774
    assert seed_cell(runs, "grad.half_life") == f"30 [{low:.3g}, {high:.3g}] (1 of 3 bounds)"
    assert seed_cell(runs[::2], "grad.half_life").endswith("]")


@pytest.mark.parametrize("bound", ["at_most", "at_least"])
def test_every_seed_a_bound_is_counted(bound):
    assert seed_cell([run(10.0, bound), run(10.0, bound)], "grad.half_life").endswith("(2 of 2 bounds)")


def test_a_bound_in_a_table_comes_with_its_reading():
    from loclin.reports.tables import BOUND_READING, bound_reading, fmt_value

    summary = {"metrics": {"grad.half_life": {"value": 10.0, "bound": "at_most"}, "x": {"value": 0.5}}}
    rows = [["run", "half-life", "x"], ["a", fmt_value(summary, "grad.half_life"), fmt_value(summary, "x")]]
    assert rows[1][1] == "≤ 10" and bound_reading(rows) == BOUND_READING
    assert "is a bound, not a fast drift" in BOUND_READING
    assert bound_reading([rows[0], ["a", "12.5", "0.5"]]) == ""


def test_a_summary_reads_back_its_non_finite_numbers_as_floats(tmp_path):
    import math

    from loclin.runs.rundir import read_summary, write_json

    written = {"protocol": "x", "metrics": {"a": {"value": math.nan}}, "curves": {"p": [{"s": [math.inf, -math.inf]}]}}
    write_json(tmp_path / "summary.json", {**written, "name": "infinity"})
    assert '"nan"' in (tmp_path / "summary.json").read_text()  # JSON has no nan: a string on disk
    summary = read_summary(tmp_path)
    assert math.isnan(summary["metrics"]["a"]["value"]) and summary["curves"]["p"][0]["s"] == [math.inf, -math.inf]
    assert summary["name"] == "infinity"
