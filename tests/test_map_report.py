"""The regime-map report (loclin.reports.map_report) on hand-made records: its intervals against a hand
computation, and its verdicts on maps where the answer is known."""

import json

import analyze
from loclin.reports.map_report import map_sections
from loclin.reports.maps.c4 import c4_table, c4_verdict
from loclin.reports.maps.c6 import c6_verdict
from loclin.reports.maps.records import collect, merge_records

P8 = "recovery.capture.P8_updates"


def c4(sweep, lr, seed, p8, random8=0.5, at_t=None):
    metrics = {P8: p8, "recovery.capture.R8_random_positions": random8}
    for t, value in (at_t or {}).items():
        metrics[f"recovery.capture_at_T{t}.P8_updates"] = value
    return {"map": "c4", "sweep": sweep, "cell": {"phases.2.lr": lr}, "seed": seed, "metrics": metrics}


def test_c4_table_interval_is_the_hand_computed_t_interval():
    records = [c4("sgd", 0.1, 0, 0.2), c4("sgd", 0.1, 1, 0.4), c4("sgd", 0.1, 2, 0.3), c4("adam", 0.001, 0, 0.6)]
    rows = c4_table(records)
    # mean 0.3, sd 0.1, t_{0.975, 2} = 4.302653 (tables) → half-width 4.302653 · 0.1 / √3 = 0.248414
    assert rows[1][:3] == ["sgd: recover lr=0.1", "0,1,2", "0.3 [0.0516, 0.548]"]
    assert rows[2][2] == "0.6 (one seed)"


def test_c4_verdict_names_the_cell_that_passes_and_the_axis_that_matters():
    records = [
        c4("sgd", 0.1, s, 0.10 + d, random8=0.6, at_t={25: 0.9, 100: 0.10 + d}) for s, d in ((0, 0.0), (1, 0.01))
    ]
    records += [
        c4("sgd", 1.0, s, 0.12 + d, random8=0.6, at_t={25: 0.8, 100: 0.12 + d}) for s, d in ((0, 0.0), (1, 0.01))
    ]
    records += [
        c4("adam", 0.001, s, 0.80 + d, random8=0.3, at_t={25: 0.95, 100: 0.80 + d})
        for s, d in ((0, -0.005), (1, 0.0), (2, 0.005))
    ]
    verdict = c4_verdict(records)
    # adam: mean 0.8, s = 0.005, n = 3 → 0.8 ± 4.303 · 0.005 / √3 = [0.788, 0.812], above 0.77
    assert "P8 ≥ 0.77 on the 95% lower bound (supported) in: adam: recover lr=0.001 (0.8 [0.788, 0.812])" in verdict
    assert "Refuted (upper bound < 0.77) in 2 of 3 cells; undecided in 0." in verdict
    assert "≥ 0.77 in 3 at T = 25, 1 at T = 100 (of 3 cells" in verdict
    assert (
        "P8 − R8 (8 updates at random positions; paired within runs, 95% over seeds): above 0 in 1 of 3 cells, "
        "below 0 in 2 (sgd: recover lr=0.1; sgd: recover lr=1.0)" in verdict
    )
    assert "special" not in verdict.split("offset blocks below are the prefix's fair null.")[0]  # no word from means
    assert "explain a short recovery better than a long one" in verdict
    assert "undecided in 1: adam: recover lr=0.001: undecided" in c4_verdict([c4("adam", 0.001, 0, 0.9)])
    # the optimizer moves P8 by 0.80 − 0.125 = 0.675; the rate within sgd by 0.02; T by up to 0.9 − 0.1
    assert (
        verdict.index("the recovery length T ∈ [25, 100] (within a run) 0.8")
        < verdict.index("the optimizer (its best rate) 0.675")
        < verdict.index("the learning rate (within an optimizer) 0.02")
    )
    failed = {**c4("sgd", 3.0, 0, 0.0), "missing": True, "metrics": {}}
    diverged = {**c4("sgd", 3.0, 1, 0.0), "missing": True, "diverged": {"step": 512}, "metrics": {}}
    assert (
        "Points without numbers (diverged, failed or not yet run; see the sweep's logs/): sgd: recover lr=3.0 (seed 0, "
        "seed 1 diverged at step 512)." in c4_verdict([*records, failed, diverged])
    )
    assert len(c4_table([*records, failed])) == 4  # never averaged into a row
    below = c4_verdict([c4("sgd", 0.1, 0, 0.2), c4("sgd", 0.1, 1, 0.4)])
    assert below.startswith(
        "P8 ≥ 0.77 is supported in no cell that recovered. The highest is sgd: recover lr=0.1: 0.3 ["
    )
    # a run that fell below θ_0's accuracy passes 0.77 only by failing: named, never counted
    broken = c4("sgd", 0.4, 0, 0.99, at_t={25: 0.99, 100: 0.99})
    broken["metrics"].update({"recovery.theta_0.acc": 0.41, "recovery.theta_R.acc": 0.29})
    verdict = c4_verdict([*records[:4], broken])
    assert verdict.startswith(
        "P8 ≥ 0.77 is supported in no cell that recovered. The highest is sgd: recover lr=1.0: 0.125"
    )
    assert "left out of every count below: sgd: recover lr=0.4 (P8 0.99 (one seed))." in verdict
    assert (
        "≥ 0.77 in 2 at T = 25, 0 at T = 100 (of 2 cells" in verdict
        and "learning rate (within an optimizer) 0.02" in verdict
    )


def c6(name, model, source, peak_value, prompt_end, low, stepped="all", bos=False):
    layers = [0.1, peak_value, 0.2]
    entry = {"value": peak_value, "interval": [low, peak_value + 0.1]}
    return {
        "map": "c6",
        "name": name,
        "model": model,
        "source": source,
        "stepped": stepped,
        "bos": bos,
        "seed": 0,
        "metrics": {
            "steer.cos_delta_caa.max": entry,
            "steer.prompt_end.cos_delta_caa.max": {"value": prompt_end},
            "steer.cos_adam_caa.max": {"value": peak_value - 0.05},
        },
        "layers": {
            "cos_delta_caa": layers,
            "cos_delta_caa_interval": [[v - 0.1, v + 0.1] for v in layers[:1]]
            + [[low, peak_value + 0.1]]
            + [[0.1, 0.3]],
            "cos_delta_caa_prompt_end": [0.0, prompt_end, 0.0],
            "cos_adam_caa": layers,
        },
        "steered_layer": 1,
    }


def test_c6_verdict_separates_a_solid_pass_from_a_point_value_and_ranks_the_axes():
    base = c6("base", "m1", "coqa", 0.30, 0.25, 0.2)
    other_data = c6("statements", "m1", "statements", 0.62, 0.3, 0.59)
    other_model = c6("gemma", "m2", "coqa", 0.60, 0.1, 0.4)
    verdict = c6_verdict([base, other_data, other_model])
    assert "whole 95% interval in: statements (δ at t, block 1: 0.62, lower 0.59)" in verdict
    assert "gemma" not in verdict.split("What moves")[0]  # 0.60 passes only as a point value: not solid
    # data source moves the max by 0.32 (base vs statements), the model by 0.30, t vs t − 1 by ≤ 0.5
    assert (
        verdict.index("read position (t vs t − 1) 0.5") < verdict.index("data source 0.32") < verdict.index("model 0.3")
    )
    assert "point value: gemma" in c6_verdict([base, other_model])


def test_map_folder_round_trips_through_its_records(tmp_path):
    batch = {**c4("sgd_batch", 0.1, 0, 0.5), "cell": {"phases.2.batch_size": 1024}}
    records = [
        c4("sgd", 0.1, 0, 0.2, at_t={25: 0.8}),
        c4("sgd", 0.1, 1, 0.4, at_t={25: 0.7}),
        batch,
        c6("base", "m1", "coqa", 0.3, 0.2, 0.1),
    ]
    folder = tmp_path / "map"
    folder.mkdir()
    (folder / "cells.json").write_text(json.dumps(records))
    assert collect(folder) == records
    assert analyze.main([str(folder), "--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert (
        "## C4" in report
        and "## C6" in report
        and "**Verdict.**" in report
        and "sgd_batch: recover batch=1024" in report
    )
    assert all(
        (tmp_path / "out" / name).stat().st_size > 1000
        for name in ("c4_p8_vs_lr.png", "c4_p8_vs_T.png", "c4_other_axes.png", "c4_pm.png", "c6_layers.png")
    )
    parts, _ = map_sections(records, tmp_path / "again", "###", "maps/x/")
    assert (
        "![P8 (solid) and the random-position control (dashed) against the recover rate](maps/x/c4_p8_vs_lr.png)"
        in parts
    )


def test_a_map_folder_without_finished_points_is_one_line(tmp_path, capsys):
    (tmp_path / "sweepA").mkdir()
    (tmp_path / "sweepA" / "sweep.json").write_text(
        json.dumps({"points": [{"name": "p", "cell": {}, "seed": 0}], "grid": {}, "seeds": [0]})
    )
    assert analyze.main([str(tmp_path)]) == 2
    assert "has no finished point yet" in capsys.readouterr().err


def test_c6_verdict_names_the_best_read_of_any_position_against_its_null():
    base = c6("base", "m1", "coqa", 0.30, 0.25, 0.2)
    late = c6("late", "m2", "statements", 0.40, 0.57, 0.1)  # δ at t − 1 peaks at 0.57, block 1
    late["metrics"]["steer.prompt_end.cos_delta_caa.max"]["interval"] = [0.25, 0.7]
    late["layers"]["shuffled_p95"] = [0.2, 0.68, 0.2]
    verdict = c6_verdict([base, late])
    assert "reaches 0.58 at no block of any point. The highest: late, 0.4 [0.1, 0.5]" in verdict
    expected = (
        "the highest is late (δ at t − 1): 0.57 [0.25, 0.7], at block 1, not above that block's shuffled-label null"
    )
    assert expected in verdict
    late["layers"]["shuffled_p95"] = [0.2, 0.5, 0.2]
    assert "at block 1, above that block's shuffled-label null (95th percentile 0.5" in c6_verdict([base, late])


def test_c4_verdict_holds_p8_at_each_length_against_the_random_positions_before_it():
    records = [c4("sgd", 0.1, 0, 0.9, at_t={25: 0.8, 100: 0.9}), c4("adam", 0.001, 0, 0.4, at_t={25: 0.8, 100: 0.4})]
    records[0]["metrics"].update(
        {"recovery.capture_at_T25.R8_random_positions": 0.5, "recovery.capture_at_T100.R8_random_positions": 0.3}
    )
    records[1]["metrics"].update(
        {"recovery.capture_at_T25.R8_random_positions": 0.85, "recovery.capture_at_T100.R8_random_positions": 0.8}
    )
    verdict = c4_verdict(records)
    # 4 pairs; the prefix wins sgd's two; three pairs pass 0.77 (sgd 25 and 100, adam 25), two of them beat R8
    assert (
        "(measured in 4 (cell, T) pairs), the first 8 capture more in 2; "
        "of the 3 pairs past T = 8 with P8 ≥ 0.77, 2 beat" in verdict
    )
    assert "random positions before T" not in c4_verdict([c4("sgd", 0.1, 0, 0.9, at_t={25: 0.8})])  # not measured


def test_c6_verdict_says_whether_caa_and_delta_steer_at_the_peak_block():
    steering, flat = c6("steering", "m1", "coqa", 0.3, 0.2, 0.1), c6("flat", "m2", "coqa", 0.2, 0.1, 0.0)
    steering["metrics"]["steer.at_peak.slope.caa"] = {"value": 1.0, "interval": [0.4, 1.6]}
    steering["metrics"]["steer.at_peak.slope.delta"] = {"value": 0.8, "interval": [0.1, 1.5]}
    flat["metrics"]["steer.at_peak.slope.caa"] = {"value": 0.1, "interval": [-0.3, 0.5]}
    flat["metrics"]["steer.at_peak.slope.delta"] = {"value": -0.5, "interval": [-0.9, -0.1]}
    verdict = c6_verdict([steering, flat])
    assert "CAA's own vector moves the margin (slope interval excluding 0) in 1 of 2 points: steering" in verdict
    assert "δ does as well in 1: steering, and δ alone in flat." in verdict


def test_a_cell_recovered_only_when_it_won_back_half_of_what_the_degradation_took():
    cell = c4("sgd", 0.4, 0, 0.99)
    cell["metrics"].update(
        {"recovery.theta_0.acc": 0.41, "recovery.theta_star.acc": 0.75, "recovery.theta_R.acc": 0.52}
    )
    other = c4("adam", 0.001, 0, 0.3)
    assert "left out of every count below: sgd: recover lr=0.4 (P8 0.99 (one seed))" in c4_verdict([cell, other])
    cell["metrics"]["recovery.theta_R.acc"] = 0.70  # 0.29 of the 0.34 lost: recovered
    assert c4_verdict([cell, other]).startswith(
        "P8 ≥ 0.77 is supported in no cell that recovered. The highest is sgd: recover lr=0.4: 0.99 (one seed)"
    )


def test_merged_records_keep_published_points_and_take_newer_finished_ones(tmp_path, capsys):
    published = [c4("adam", 0.001, 0, 0.3), {**c4("adam", 0.003, 0, 0.0), "missing": True, "metrics": {}}]
    published.append(c4("sgd", 0.1, 0, 0.9))
    new = [c4("adam", 0.003, 0, 0.7), {**c4("sgd", 0.1, 0, 0.0), "missing": True, "metrics": {}}]
    new.append(c4("rank", 4, 0, 0.5))
    merged = merge_records(published, new)
    by_point = {(r["sweep"], r["cell"]["phases.2.lr"]): r for r in merged}
    assert len(merged) == 4
    assert by_point[("adam", 0.001)]["metrics"][P8] == 0.3  # only published: kept
    assert by_point[("adam", 0.003)]["metrics"][P8] == 0.7  # missing then, finished now: the new one
    assert by_point[("sgd", 0.1)]["metrics"][P8] == 0.9  # a missing point never hides a finished one
    records = tmp_path / "published.json"
    records.write_text(json.dumps(published))
    folder = tmp_path / "map"
    folder.mkdir()
    (folder / "cells.json").write_text(json.dumps(new))
    assert analyze.main([str(folder), "--out", str(tmp_path / "out"), "--merge", str(records)]) == 0
    assert len(json.loads((tmp_path / "out" / "cells.json").read_text())) == 4
    assert analyze.main([str(folder), "--merge", str(tmp_path / "absent.json")]) == 2
    assert "records file" in capsys.readouterr().err
    (tmp_path / "not_a_map").mkdir()
    assert analyze.main([str(tmp_path / "not_a_map"), "--merge", str(records)]) == 2
    assert "--merge applies to a map folder" in capsys.readouterr().err


def test_an_axis_launched_as_full_runs_and_as_forks_is_one_sweep(tmp_path):
    """``rank`` (full runs at ranks 4, 16) and ``rank+parent`` (rank 8, forked from the parent)."""
    for sweep, rank, p8 in (("rank", 4, 0.3), ("rank", 16, 0.35), ("rank+parent", 8, 0.4)):
        name = f"lm.lora.rank={rank}__seed0"
        run = tmp_path / sweep / "points" / name / "version_0"
        run.mkdir(parents=True)
        (run / "summary.json").write_text(json.dumps({"metrics": {P8: {"value": p8}}, "curves": {}}))
        manifest = tmp_path / sweep / "sweep.json"
        points = json.loads(manifest.read_text())["points"] if manifest.is_file() else []
        points.append({"name": name, "cell": {"lm.lora.rank": rank}, "seed": 0})
        manifest.write_text(json.dumps({"points": points, "grid": {"lm.lora.rank": []}, "seeds": [0]}))
    records = collect(tmp_path)
    assert {r["sweep"] for r in records} == {"rank"}
    assert sorted((r["cell"]["lm.lora.rank"], r["metrics"][P8]) for r in records) == [(4, 0.3), (8, 0.4), (16, 0.35)]


def fake_sweep(maps, name, config_overrides, p8):
    """A map folder holding one sweep of one finished point whose run directory has a real
    config.yaml (tiny_recovery with ``config_overrides``): what loclin.runs.identity reads."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from loclin.config import load_config

    repo = Path(__file__).resolve().parents[1]
    run = maps / name / "adam" / "points" / "phases.2.lr=0.001__seed0" / "version_0"
    run.mkdir(parents=True)
    cfg = load_config(repo / "conf" / "tiny_recovery.yaml", config_overrides)
    (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    summary = {"protocol": "recovery", "run_dir": str(run), "metrics": {P8: {"value": p8}}, "curves": {}}
    (run / "summary.json").write_text(json.dumps(summary))
    manifest = {"points": [{"name": run.parent.name, "cell": {"phases.2.lr": 0.001}, "seed": 0}], "grid": {}}
    (maps / name / "adam" / "sweep.json").write_text(json.dumps(manifest))


def test_a_map_published_twice_with_a_foreign_sweep_leaves_the_results_unchanged(tmp_path, capsys):
    from loclin.reports import publish

    root, page = tmp_path / "docs" / "results", tmp_path / "docs" / "results.md"
    fake_sweep(tmp_path / "maps", "c4_x", [], 0.8)
    assert publish.main([str(tmp_path / "maps"), "--root", str(root)]) == 0
    published = (root / "maps" / "c4_x" / "cells.json").read_text()
    record = json.loads(published)[0]
    assert len(record["digest"]) == 64 and record["made_by"]["family"] == "synthetic"
    first = page.read_text()
    assert "The highest is adam: recover lr=0.001: 0.8 (one seed)" in first
    assert publish.main([str(tmp_path / "maps"), "--root", str(root)]) == 0  # the same map again
    assert page.read_text() == first and (root / "maps" / "c4_x" / "cells.json").read_text() == published
    capsys.readouterr()
    # the same (sweep, cell, seed) made by another model: refused in one line, nothing written
    fake_sweep(tmp_path / "other", "c4_x", ["model.d_model=32"], 0.2)
    assert publish.main([str(tmp_path / "other"), "--root", str(root)]) == 2
    error = capsys.readouterr().err.strip()
    assert 'adam {"phases.2.lr": 0.001} 0 is published from another run' in error and len(error.splitlines()) == 1
    assert "nothing was published" in error
    assert page.read_text() == first and (root / "maps" / "c4_x" / "cells.json").read_text() == published
    # asked for, it is its own cell, and the verdict's change is printed before and after
    assert publish.main([str(tmp_path / "other"), "--root", str(root), "--separate"]) == 0
    out = capsys.readouterr().out
    assert "C4 verdict changes:" in out and "before: P8 ≥ 0.77" in out
    cells = json.loads((root / "maps" / "c4_x" / "cells.json").read_text())
    assert len(cells) == 2 and cells[1]["variant"] == cells[1]["digest"][:8]
    # a map re-made from scratch replaces its published records only when named, and says what it drops
    assert publish.main([str(tmp_path / "other"), "--root", str(root), "--replace", "c4_y"]) == 2
    assert "--replace c4_y: no such map" in capsys.readouterr().err
    assert publish.main([str(tmp_path / "other"), "--root", str(root), "--replace", "c4_x"]) == 0
    assert "c4_x: replaces 2 published records (made by" in capsys.readouterr().out
    cells = json.loads((root / "maps" / "c4_x" / "cells.json").read_text())
    assert len(cells) == 1 and cells[0]["metrics"][P8] == 0.2


def test_records_of_one_run_under_two_names_are_one_cell():
    twin = {**c4("rank", 8, 0, 0.5), "cell": {"lm.lora.rank": 8}, "digest": "d1"}
    records = [{**c4("adamw", 0.001, 0, 0.5), "digest": "d1"}, twin, {**c4("adamw", 0.003, 0, 0.4), "digest": "d2"}]
    assert len(c4_table(records)) == 3  # header and two cells: the twin is counted once
    assert "counted once: rank: rank=8 = adamw: recover lr=0.001." in c4_verdict(records)


def test_merge_and_results_over_broken_records_are_one_line(tmp_path, capsys):
    from loclin.reports import results

    folder = tmp_path / "map"
    folder.mkdir()
    (folder / "cells.json").write_text(json.dumps([c4("adam", 0.001, 0, 0.3)]))
    for text, fragment in (("[{", "is not valid JSON"), ('[{"a": 1}]', "is JSON but not a map's records")):
        (tmp_path / "bad.json").write_text(text)
        assert analyze.main([str(folder), "--merge", str(tmp_path / "bad.json"), "--out", str(tmp_path / "o")]) == 2
        error = capsys.readouterr().err.strip()
        assert fragment in error and len(error.splitlines()) == 1
    root = tmp_path / "root"
    (root / "run").mkdir(parents=True)
    (root / "run" / "summary.json").write_text('{"protocol": "tr')
    assert results.main(["--root", str(root), "--out", str(tmp_path / "page.md")]) == 2
    error = capsys.readouterr().err.strip()
    assert "summary.json: not valid JSON" in error and len(error.splitlines()) == 1
    assert not (tmp_path / "page.md").exists()


def test_no_map_figure_clips_its_title(tmp_path, monkeypatch):
    """Every title and suptitle of the map figures lies inside the canvas, by matplotlib's own
    tight bounding boxes, at the size the figures are saved."""
    from matplotlib.figure import Figure

    from loclin.claims.c4_table import decider_figures
    from loclin.reports.maps.c4 import c4_cells
    from loclin.reports.maps.c4_figures import c4_figures
    from loclin.reports.maps.c6 import c6_figures

    checked = []
    save = Figure.savefig

    def checked_save(fig, *args, **kwargs):
        renderer = fig.canvas.get_renderer()
        canvas = fig.bbox
        texts = [ax.title for ax in fig.axes if ax.get_title()] + ([fig._suptitle] if fig._suptitle else [])
        for text in texts:
            box = text.get_window_extent(renderer)
            assert box.x0 >= canvas.x0 - 1 and box.x1 <= canvas.x1 + 1 and box.y1 <= canvas.y1 + 1, text.get_text()
        checked.append(len(texts))
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", checked_save)
    records = [c4("sgd", 0.1, s, 0.2 + 0.1 * s, at_t={10: 0.99, 25: 0.8, 100: 0.3}) for s in range(2)]
    records += [c4("adam", 0.001, 0, 0.8, at_t={10: 1.0, 25: 0.9, 100: 0.5})]
    records += [{**c4("sgd", 3.0, 0, 0.0), "missing": True, "metrics": {}}]
    c4_figures(records, tmp_path)
    for record in records[:3]:  # the deciders' figures, with their nulls and shares
        for t in (10, 25, 100):
            record["metrics"].update(
                {
                    f"recovery.capture_at_T{t}.{name}": value
                    for name, value in (("P8_offset_p95", 0.5), ("P8_replica", 0.4), ("P8_after_prefix", 0.3))
                }
            )
        record["metrics"]["recovery.capture_at_T100.steps_to_90pct"] = 16
    assert [name for name, _ in decider_figures(c4_cells(records), [10, 25, 100], tmp_path)] == [
        "c4_p8_vs_steps_to_recover.png",
        "c4_p8_nulls_vs_T.png",
        "c4_after_prefix_vs_T.png",
    ]
    c6_figures([c6("base", "m1", "coqa", 0.3, 0.2, 0.1), c6("other", "m2", "coqa", 0.4, 0.2, 0.1)], tmp_path)
    assert len(checked) >= 7 and sum(checked) >= 7
