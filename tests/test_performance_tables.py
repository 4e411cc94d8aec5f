"""The Performance tables rendered from benchmark records: ratios worked out by hand."""

import json
from pathlib import Path

import pytest

from loclin.reports.performance import (
    OVERHEAD_FILE,
    README_BEGIN,
    README_END,
    REFRESH_FILE,
    performance_sections,
    replace_block,
    write_record,
)


def refresh_record() -> dict:
    parts = {
        "refresh": 5.0,
        "two products alone": 4.0,
        "gram rows": 3.0,
        "basis from Gram": 1.5,
        "check (now)": 0.5,
        "torch.linalg.svd": 800.0,
        "torch.svd_lowrank": 200.0,
        "stride 1: one step": 3.0,
        "stride 1: form B": 6.0,
    }
    row = {"dim": 404736, "floor_ms": 2.0, "gb_per_s": 25.9, "ms": parts, "checks": {}}
    return {"window": 32, "k": 8, "stride": 10, "drift_stride": 10, "dims": [row]}


def overhead_record() -> dict:
    def variant(median, mean, hooks_median, hooks, fit_s):
        return {
            "fit_s": fit_s,
            "median_ms": median,
            "mean_ms": mean,
            "hooks_median_ms": hooks_median,
            "hooks_ms": hooks,
            "by_callback_ms": {"GradientWindow": 0.75 * hooks, "Drift": 0.25 * hooks} if hooks else {},
            "memory_mib": 100.0 if hooks else 0.0,
        }

    variants = {"off": variant(20.0, 25.0, 0.0, 0.0, 40.0), "on (default)": variant(21.0, 30.0, 0.4, 5.0, 50.0)}
    return {"config": "conf/synthetic.yaml", "steps": 1000, "dim": 404736, "variants": variants}


def table_row(lines: list[str], first_cell: str) -> list[str]:
    row = next(line for line in lines if line.startswith(f"| {first_cell} |"))
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_tables_give_each_time_as_a_ratio_to_the_floor_or_baseline_of_its_own_run(tmp_path):
    write_record(tmp_path / REFRESH_FILE, "refresh_floor", refresh_record())
    write_record(tmp_path / OVERHEAD_FILE, "callback_overhead", overhead_record())
    lines = performance_sections(tmp_path)
    refresh = table_row(lines, "404,736")
    # refresh 5.0 / floor 2.0, two products 4.0 / 2.0, …, svd 800 / 2.0; then refresh 5.0 / two products 4.0
    assert refresh[1:] == [
        "2.00 (25.9 GB/s)", "2.50×", "2.00×", "1.50×", "0.75×", "0.25×", "400.00×", "100.00×", "1.25×"
    ]  # fmt: skip
    streaming = [line for line in lines if line.startswith("| 404,736 |")][1]
    # one step 3.0 / 2.0; form B 6.0 / 2.0; per step (3.0 + 6.0 / 10) / 2.0
    assert streaming == "| 404,736 | 1.50× | 3.00× | 1.80× |"
    on = table_row(lines, "on (default)")
    # 21/20, 30/25, 1 + 0.4/20 (median hooks against off's median), 1 + 5/25 (mean against mean), fit 50/40
    assert on[1:] == ["21.00", "1.050", "30.00", "1.200", "0.40", "1.020", "5.00", "1.200", "1.250", "100.0"]
    assert "- on (default): GradientWindow 3.75 (75%), Drift 1.25 (25%)" in lines
    record = json.loads((tmp_path / REFRESH_FILE).read_text())
    assert record["benchmark"] == "refresh_floor" and record["command"].startswith("python ")


def test_a_missing_record_leaves_its_table_out():
    assert performance_sections(Path("/nonexistent")) == []


def test_the_readme_block_is_replaced_and_the_rest_kept():
    text = f"# title\n\n## Performance\n\n{README_BEGIN}\nold table\n{README_END}\n\n## Next\nkept\n"
    new = replace_block(text, ["| a |", "|---|", ""])
    assert new == f"# title\n\n## Performance\n\n{README_BEGIN}\n| a |\n|---|\n{README_END}\n\n## Next\nkept\n"
    assert replace_block(new, ["| a |", "|---|"]) == new  # rendering twice changes nothing
    with pytest.raises(ValueError, match="performance:begin"):
        replace_block("# no markers\n", ["x"])


def test_results_fills_the_readme_block_and_leaves_a_readme_without_one_alone(tmp_path, capsys):
    """``python -m loclin results`` writes the Performance section between the README's markers and
    into the page; a README without the markers is left byte for byte, with one line saying so."""
    import shutil

    from loclin.reports.results import main

    root = tmp_path / "results"
    shutil.copytree(Path(__file__).resolve().parents[1] / "docs" / "results" / "quadratic", root / "quadratic")
    write_record(root / "performance" / REFRESH_FILE, "refresh_floor", refresh_record())
    marked, plain = tmp_path / "marked.md", tmp_path / "plain.md"
    marked.write_text(f"# x\n{README_BEGIN}\n{README_END}\n")
    plain.write_text("# no markers\n")
    assert main(["--root", str(root), "--out", str(tmp_path / "page.md"), "--performance", str(marked)]) == 0
    assert "| 404,736 | 2.00 (25.9 GB/s) | 2.50× |" in marked.read_text()
    assert "## Performance" in (tmp_path / "page.md").read_text()
    assert main(["--root", str(root), "--out", str(tmp_path / "page.md"), "--performance", str(plain)]) == 0
    said = capsys.readouterr().out
    assert plain.read_text() == "# no markers\n" and "has no '<!-- performance:begin -->' block" in said
