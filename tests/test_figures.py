"""The drift figure shows what a reader needs: log axes reaching below the random baseline k/D, no
line from lag 0 to the first lag, labelled bands; and analyze.py writes PDF and SVG beside each PNG."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from loclin.callbacks.figures import drift_curve_figure  # noqa: E402

from loclin.reports.report import build_report  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_the_drift_curve_is_on_log_axes_below_the_baseline_with_lag_zero_alone():
    curve = {
        "lags": [0, 10, 20, 50, 100],
        "overlap": [1.0, 0.6, 0.4, 0.2, 0.1],
        "overlap_std": [0.0, 0.05, 0.05, 0.04, 0.03],
        "stale_capture": [0.5, 0.3, 0.2, 0.1, 0.05],
    }
    baseline = 2e-5
    figure = drift_curve_figure({"run": curve}, baseline)
    overlap_axes, capture_axes = figure.axes[:2]
    for ax in (overlap_axes, capture_axes):
        assert ax.get_yscale() == "log" and ax.get_ylim()[0] < baseline
    joined = [line for line in capture_axes.lines if line.get_linestyle() != "None" and len(line.get_xdata()) > 2]
    assert all(0 not in list(line.get_xdata()) for line in joined) and joined
    alone = [line for line in capture_axes.lines if line.get_linestyle() == "None"]
    assert [list(line.get_xdata()) for line in alone] == [[0]]
    labels = [text.get_text() for text in overlap_axes.get_legend().get_texts()]
    assert "run: ± std over pairs" in labels and "half overlap (0.5)" in labels and "random k/D = 2e-05" in labels


def test_analyze_writes_pdf_and_svg_beside_every_png_and_report_names_the_png(tmp_path):
    summary = REPO / "docs" / "results" / "quadratic"
    build_report([summary], tmp_path)
    pngs = sorted(tmp_path.glob("*.png"))
    assert pngs
    for png in pngs:
        assert png.with_suffix(".pdf").stat().st_size > 0 and png.with_suffix(".svg").stat().st_size > 0
    report = (tmp_path / "report.md").read_text()
    assert all(png.name in report for png in pngs) and ".pdf)" not in report
    assert json.loads((summary / "summary.json").read_text())  # the record it drew from


def test_the_prefix_figure_draws_the_controls_and_names_each_bases_rank():
    from loclin.callbacks.figures import prefix_capture_figure

    series = {"run": {"m": [1, 2, 4, 8], "updates": [0.1, 0.2, 0.4, 0.8]}}
    controls = {"R_m: m at random positions": {1: 0.05, 8: 0.6}, "L_m: the last m": {8: 0.1}}
    fig = prefix_capture_figure(series, {"S1_task_gradients": (0.01, 8), "S6_go_back": (0.04, 1)}, 1e-3, controls)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "R_m: m at random positions" in labels and "L_m: the last m" in labels
    assert "S1_task_gradients (k = 8): 0.010" in labels and "S6_go_back (k = 1): 0.040" in labels
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert list(lines["R_m: m at random positions"].get_ydata()) == [0.05, 0.6]
