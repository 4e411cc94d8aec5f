"""Tables, plots and a Markdown report from finished run directories (no re-training)."""

from __future__ import annotations

import math
from pathlib import Path

from loclin.callbacks.keys import RANDOM_SEARCH_POINTS, RECOVERY_PREFIX, RECOVERY_TABLE
from loclin.protocols import protocol_of_summary
from loclin.rundir import RunDirError, read_summary
from loclin.tables import (
    bound_count,
    bound_reading,
    fmt,
    fmt_entry,
    fmt_value,
    render_markdown,
    render_text,
    value,
)

RECOVERY_COLUMNS = [
    ("cap_P8", "recovery.capture.P8_updates", "capture of Δ by the first 8 recovery updates"),
    ("cap_S1", "recovery.capture.S1_task_gradients", "capture of Δ by the task's gradient basis at θ*"),
    ("cap_S5", "recovery.capture.S5_hessian", "capture of Δ by the top-k Hessian eigenvectors at θ*"),
    (
        "cap_R8",
        "recovery.capture.R8_random_positions",
        "control: 8 updates at random positions of the recovery (mean of draws)",
    ),
    ("cap_L8", "recovery.capture.L8_last_updates", "control: the last 8 recovery updates"),
    ("rec_ov100", "recover.grad.overlap_lag100", "gradient-basis overlap at lag 100 during recovery"),
    ("rec_half_life", "recover.grad.half_life", "half-life of the gradient basis during recovery"),
]

COLUMNS = [
    ("energy_k", "grad.energy_topk", "top-k energy of the gradient window"),
    ("heldout_h1", "grad.heldout_capture_h1", "held-out capture of the next gradient"),
    ("upd_energy_k", "update.energy_topk", "top-k energy of the update window"),
    ("ov_lag100", "grad.overlap_lag100", "overlap of full-window gradient bases 100 steps apart"),
    ("half_life", "grad.half_life", "lag where that full-window overlap halves (steps)"),
    ("ceiling", "grad.noise_ceiling", "noise ceiling: overlap of the bases of a window's even and odd halves"),
    (
        "ratio_lag100",
        "grad.overlap_ratio_lag100",
        "disjoint half-window overlap at lag 100 ÷ ceiling (the honest drift figure)",
    ),
    (
        "half_life_ceil",
        "grad.half_life_ratio",
        "lag where overlap ÷ ceiling halves, disjoint lags only (≤: already below)",
    ),
    (
        "plateau_ceil",
        "grad.plateau_ratio",
        "plateau ÷ ceiling: the part of the basis that persists at the largest lags",
    ),
    ("task_heldout", "pertask.heldout_capture_mean", "held-out capture by per-task bases"),
    ("task_cross_ov", "pertask.cross_task_overlap_mean", "overlap between tasks' bases"),
]


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run directories named directly, or every run (a folder with summary.json) below a path."""
    runs: list[Path] = []
    for path in map(Path, paths):
        if (path / "summary.json").is_file():
            runs.append(path)
        elif path.is_dir():
            found = sorted(p.parent for p in path.rglob("summary.json"))
            if not found:
                raise RunDirError(f"'{path}' holds no finished run (no summary.json below it)")
            runs.extend(found)
        else:
            raise RunDirError(f"run directory '{path}' not found")
    return runs


def run_label(summary: dict) -> str:
    return "/".join(Path(summary["run_dir"]).parts[-2:])


def columns_for(summaries: list[dict]) -> list[tuple[str, str, str]]:
    has_recovery = any(RECOVERY_TABLE in s["curves"] for s in summaries)
    return COLUMNS + (RECOVERY_COLUMNS if has_recovery else [])


def mean_interval(values: list[float]) -> str:
    """ "mean [low, high]": the 95% t-interval over seeds (geometry.intervals.t_interval)."""
    from loclin.geometry.intervals import t_interval

    mean, low, high = t_interval(values)
    if math.isnan(mean):
        return "–"
    if math.isnan(low):
        return f"{fmt(mean)} (one value)"
    return f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def seed_cell(runs: list[dict], name: str) -> str:
    """The mean [95% t-interval] of one metric over seeds, saying how many seeds gave only a bound
    (then the mean is of the bounds, not of crossings)."""
    cell = mean_interval([value(r, name) for r in runs])
    bounded = bound_count(runs, name)
    return cell + (f" ({bounded} of {len(runs)} bounds)" if bounded else "")


def prefix_controls(metrics: dict) -> dict[str, dict[int, float]]:
    """The prefix's controls in a summary, by m: R_m (m updates at random positions) and L_m (the last m)."""
    controls: dict[str, dict[int, float]] = {}
    for name, entry in metrics.items():
        for kind, label in (("_random_positions", "R_m: m at random positions"), ("_last_updates", "L_m: the last m")):
            head = "recovery.capture."
            if name.startswith(head) and name.endswith(kind) and name[len(head) + 1 : -len(kind)].isdigit():
                controls.setdefault(label, {})[int(name[len(head) + 1 : -len(kind)])] = float(entry["value"])
    return controls


def headline_table(summaries: list[dict]) -> list[list[str]]:
    """One row per run, then one "mean [95% t-interval]" row per experiment run with several
    seeds; a run that is its experiment's only seed is marked as such."""
    columns = columns_for(summaries)
    header = ["run", "seed", "steps", "D", "k/D", *(c[0] for c in columns), "acc_mean", "acc_min"]
    rows = [header]
    groups: dict[str, list[dict]] = {}
    for s in summaries:
        groups.setdefault(s["experiment"], []).append(s)
    for s in summaries:
        single = len({r["seed"] for r in groups[s["experiment"]]}) == 1
        accs = {n.split(".")[1]: value(s, n) for n in s["metrics"] if n.startswith("task.") and n.endswith(".acc")}
        worst = min(accs, key=accs.get) if accs else None
        rows.append(
            [
                run_label(s) + (" (single seed)" if single else ""),
                str(s["seed"]),
                str(s["steps"]),
                str(s["geometry"].get("dim", "–")),
                fmt(s["geometry"].get("random_baseline_k_over_D", float("nan"))),
                *(fmt_value(s, c[1]) for c in columns),
                fmt(sum(accs.values()) / len(accs)) if accs else "–",
                f"{fmt(accs[worst])} ({worst})" if worst else "–",
            ]
        )
    for experiment, runs in groups.items():
        if len({r["seed"] for r in runs}) > 1:
            seeds = ",".join(str(r["seed"]) for r in runs)
            rows.append(
                [
                    f"{experiment} (mean [95% t-interval], {len(runs)} seeds)",
                    seeds,
                    "",
                    "",
                    "",
                    *(seed_cell(runs, c[1]) for c in columns),
                    "",
                    "",
                ]
            )
    return rows


def recovery_table(summary: dict) -> list[list[str]]:
    """Capture of Δ and the function-space check for every static and prefix basis."""
    table = summary["curves"][RECOVERY_TABLE]
    dim = summary["geometry"].get("dim", float("nan"))
    rows = [["basis", "k", "cap(B, Δ)", "k/D", "T loss at θ_0 + P_B Δ", "T acc at θ_0 + P_B Δ"]]
    for name, row in table.items():
        if "capture" in row:
            rows.append(
                [
                    name,
                    str(row["k"]),
                    fmt(row["capture"]),
                    fmt(row["k"] / dim),
                    fmt(row.get("loss", float("nan"))),
                    fmt(row.get("acc", float("nan"))),
                ]
            )
    for point in ("theta_star", "theta_0", "theta_R"):
        if point in table:
            rows.append([point, "", "", "", fmt(table[point]["loss"]), fmt(table[point]["acc"])])
    curve = summary["curves"].get(RECOVERY_PREFIX, {})
    for m, captured in zip(curve.get("m", []), curve.get("effective_updates", [])):
        rows.append(
            [f"P{m}_updates, effective (α/r)BA", str(m), fmt(captured), fmt(m / curve["effective_dim"]), "", ""]
        )
    return rows


def prefix_table(summary: dict) -> list[list[str]]:
    """Per m: cap(P_m, Δ), its numerical determination (smallest relative pivot), the exact
    Krylov capture where known (quadratic), and the controls: m updates at random positions
    (mean ± std over draws, range) and the last m updates. The prefix is special only if it
    beats its controls."""
    curve = summary["curves"].get(RECOVERY_PREFIX, {})
    if not curve.get("m"):
        return []
    controls = curve.get("controls") or {}
    header = ["m", "cap(P_m, Δ)", "smallest relative pivot", "determined"]
    header += ["exact Krylov K_m"] if "krylov_exact" in curve else []
    header += ["random positions: mean ± std [min, max]", "last m"] if controls else []
    header += ["effective (α/r)BA", "effective pivot"] if "effective_updates" in curve else []
    rows = [header]
    for i, m in enumerate(curve["m"]):
        pivot = curve.get("min_pivot_updates", [float("nan")] * len(curve["m"]))[i]
        row = [
            str(m),
            fmt(curve["updates"][i]),
            f"{pivot:.1e}",
            "yes" if curve.get("determined_updates", [True] * len(curve["m"]))[i] else "**no: round-off**",
        ]
        if "krylov_exact" in curve:
            row.append(fmt(curve["krylov_exact"][i]))
        if controls:
            if m in controls["m"]:
                j = controls["m"].index(m)
                draws = controls["random"][j]
                mean = sum(draws) / len(draws)
                std = (sum((d - mean) ** 2 for d in draws) / max(1, len(draws) - 1)) ** 0.5
                row += [
                    f"{fmt(mean)} ± {fmt(std)} [{fmt(min(draws))}, {fmt(max(draws))}] ({len(draws)} draws)",
                    fmt(controls["last"][j]),
                ]
            else:
                row += ["", ""]
        if "effective_updates" in curve:
            row += [
                fmt(curve["effective_updates"][i]),
                f"{curve['min_pivot_effective_updates'][i]:.1e}" if "min_pivot_effective_updates" in curve else "",
            ]
        rows.append(row)
    return rows


def length_table(summary: dict) -> list[list[str]]:
    """Capture against recovery length: cap(P_m, Δ_T) and the two controls at each T (8 updates at
    random positions before T, mean over draws, and the last 8), with T's held-out accuracy at θ_T
    (how far the recovery had got)."""
    rows_in = summary["curves"].get(RECOVERY_PREFIX, {}).get("by_length", [])
    if not rows_in:
        return []
    ms = sorted({m for row in rows_in for m in row["m"]})
    rows = [
        [
            "T",
            "T acc at θ_T",
            "‖Δ_T‖",
            *(f"cap(P{m}, Δ_T)" for m in ms),
            "8 at random positions before T",
            "last 8 before T",
        ]
    ]
    for row in rows_in:
        by_m = dict(zip(row["m"], row["prefix"]))
        last8 = dict(zip(row["m"], row["last"])).get(8, float("nan"))
        random8 = dict(zip(row["m"], row.get("random", []))).get(8) or [float("nan")]
        cells = [fmt(by_m.get(m, float("nan"))) for m in ms]
        rows.append(
            [
                str(row["T"]),
                fmt(row["acc"]),
                fmt(row["delta_norm"]),
                *cells,
                fmt(sum(random8) / len(random8)),
                fmt(last8),
            ]
        )
    return rows


def drift_table(summary: dict, phase: str = "") -> list[list[str]]:
    """The honest drift figures per source: disjoint half-window overlap at each lag L >= W,
    its ratio to the noise ceiling, the ratio's half-life and the plateau."""
    rows = [
        [
            "source",
            "noise ceiling (mean ± std)",
            "lag",
            "half-window overlap",
            "÷ ceiling",
            "full-window overlap (reference)",
        ]
    ]
    for source in ("grad", "update"):
        curve = summary["curves"].get(f"{phase}{source}.drift", {})
        if not curve.get("half_lags"):
            continue
        full = dict(zip(curve["lags"], curve["overlap"]))
        for i, lag in enumerate(curve["half_lags"]):
            ceiling = f"{fmt(curve['noise_ceiling'])} ± {fmt(curve['noise_ceiling_std'])}" if i == 0 else ""
            rows.append(
                [
                    source if i == 0 else "",
                    ceiling,
                    str(lag),
                    fmt(curve["half_overlap"][i]),
                    fmt(curve["ratio"][i]),
                    fmt(full.get(lag, float("nan"))),
                ]
            )
        metrics = summary["metrics"]
        rows.append(["", "", "half-life ÷ ceiling", fmt_entry(metrics.get(f"{phase}{source}.half_life_ratio")), "", ""])
        rows.append(
            [
                "",
                "",
                "plateau (÷ ceiling)",
                fmt_entry(metrics.get(f"{phase}{source}.plateau")),
                fmt_entry(metrics.get(f"{phase}{source}.plateau_ratio")),
                "",
            ]
        )
    return rows if len(rows) > 1 else []


def task_table(summary: dict) -> list[list[str]]:
    rows = [["task", "held-out acc", "chance", "exact match", "loss", "per-task held-out capture", "k/D"]]
    tasks = sorted({n.split(".")[1] for n in summary["metrics"] if n.startswith("task.")})
    for task in tasks:
        acc = summary["metrics"][f"task.{task}.acc"]
        capture = summary["metrics"].get(f"pertask.{task}.heldout_capture", {})
        rows.append(
            [
                task,
                fmt(acc["value"]),
                fmt(acc.get("baseline", float("nan"))),
                fmt(value(summary, f"task.{task}.exact")),
                fmt(value(summary, f"task.{task}.loss")),
                fmt(float(capture.get("value", "nan"))),
                fmt(float(capture.get("baseline", "nan"))),
            ]
        )
    return rows


FIGURE_FORMATS = ("png", "pdf", "svg")  # PNG for report.md; PDF and SVG beside it, for a paper


def write_plots(summaries: list[dict], out: Path, formats: tuple[str, ...] = FIGURE_FORMATS) -> list[tuple[str, str]]:
    """Write each figure in ``formats`` (the PNG first, named in report.md); returns (caption, PNG
    file name) pairs for the report."""
    from loclin.callbacks.figures import (
        drift_curve_figure,
        drift_heatmap_figure,
        heldout_figure,
        matrix_figure,
        prefix_capture_figure,
        spectrum_figure,
    )

    written: list[tuple[str, str]] = []

    def save(figure, name: str, caption: str) -> None:
        import matplotlib.pyplot as plt

        figure.savefig(out / name, dpi=150)
        for extension in formats:
            if extension != "png":
                figure.savefig(out / Path(name).with_suffix(f".{extension}"))
        plt.close(figure)  # clf() alone keeps the figure registered with pyplot
        written.append((caption, name))

    k = summaries[0]["geometry"]["k"]
    baseline = summaries[0]["geometry"].get("random_baseline_k_over_D", float("nan"))
    for source in ("grad", "update"):
        spectra = {
            f"{run_label(s)} {source}": s["curves"][f"{source}.spectrum"]["mean_energy_fraction"]
            for s in summaries
            if f"{source}.spectrum" in s["curves"]
        }
        if spectra:
            save(
                spectrum_figure(spectra, k, title=f"{source} window spectrum (mean over refreshes)"),
                f"spectrum_{source}.png",
                f"Singular spectrum of the {source} window",
            )
        heldout = {
            run_label(s): (s["curves"][f"{source}.heldout"]["h"], s["curves"][f"{source}.heldout"]["capture"])
            for s in summaries
            if s["curves"].get(f"{source}.heldout", {}).get("h")
        }
        if heldout:
            save(
                heldout_figure(heldout, baseline),
                f"heldout_capture_{source}.png",
                f"Held-out capture of future {source} vectors against steps ahead",
            )
        for phase in ("", "recover."):
            drift = {
                run_label(s): s["curves"][f"{phase}{source}.drift"]
                for s in summaries
                if f"{phase}{source}.drift" in s["curves"]
            }
            if drift:
                name = f"drift_curve_{phase.replace('.', '_')}{source}.png"
                during = " during recovery" if phase else ""
                save(
                    drift_curve_figure(drift, baseline),
                    name,
                    f"Drift of the {source} basis{during} against lag, with the k/D baseline",
                )
    prefix = {run_label(s): s["curves"][RECOVERY_PREFIX] for s in summaries if RECOVERY_PREFIX in s["curves"]}
    if prefix:
        first = next(s for s in summaries if RECOVERY_TABLE in s["curves"])
        table = first["curves"][RECOVERY_TABLE]
        statics = {n: (r["capture"], r.get("k")) for n, r in table.items() if n.startswith("S") and "capture" in r}
        save(
            prefix_capture_figure(
                prefix, statics, first["geometry"]["random_baseline_k_over_D"], prefix_controls(first["metrics"])
            ),
            "prefix_capture.png",
            "Capture of the recovery displacement by prefix bases P_m against m, static bases (first run) as lines",
        )
    for i, s in enumerate(summaries):
        for source in ("grad", "update"):
            heat = s["curves"].get(f"{source}.heatmap")
            if heat and heat["s"]:
                lags = heat.get("lags") or s["curves"][f"{source}.drift"]["lags"][1:]
                save(
                    drift_heatmap_figure(
                        heat["s"], heat["t"], heat["overlap"], lags, title=f"{run_label(s)} {source} basis overlap"
                    ),
                    f"drift_heatmap_{source}_{i}.png",
                    f"Overlap between {source} bases at steps s and t ({run_label(s)})",
                )
        pertask = s["curves"].get("pertask")
        if pertask:
            save(
                matrix_figure(pertask["overlap_matrix"], pertask["tasks"], "overlap of per-task bases"),
                f"pertask_overlap_{i}.png",
                f"Overlap between tasks' gradient bases ({run_label(s)})",
            )
    return written


def nonfinite_lines(summaries: list[dict]) -> list[str]:
    """One Markdown line per run whose measurements skipped non-finite gradients, updates or probes
    (a summary's ``counts`` are those skips)."""
    lines = []
    for s in summaries:
        counts = {name: n for name, n in s.get("counts", {}).items() if n}
        if counts:
            listed = ", ".join(f"{n} {name}" for name, n in counts.items())
            lines.append(f"- `{run_label(s)}`: {listed} (of {s.get('steps', '?')} steps)")
    return lines


def build_report(run_paths: list[str | Path], out: Path, formats: tuple[str, ...] = FIGURE_FORMATS) -> str:
    """Read runs, write plots (in ``formats``) and report.md into ``out``; return the text table."""
    runs = find_runs(run_paths)
    summaries = [read_summary(r) for r in runs]
    out.mkdir(parents=True, exist_ok=True)
    steer = [protocol_of_summary(s) == "steer" for s in summaries]
    if any(steer):
        if not all(steer):
            raise RunDirError("steering runs and training runs have different reports; analyze them separately")
        from loclin.steer_report import build_steer_report

        return build_steer_report(summaries, runs, out, run_label)
    diverged = [
        f"- `{run_label(s)}` diverged in phase '{s['diverged']['phase']}' at run step {s['diverged']['step']}: "
        f"{s['diverged']['message']}"
        for s in summaries
        if s.get("diverged")
    ]
    summaries = [s for s in summaries if not s.get("diverged")]
    if not summaries:
        (out / "report.md").write_text("\n".join(["# loclin report", "", "## Diverged runs", "", *diverged, ""]))
        return "\n".join(line[2:] for line in diverged)
    skipped = nonfinite_lines(summaries)
    table = headline_table(summaries)
    plots = write_plots(summaries, out, formats)
    legend = "\n".join(f"- `{short}`: {long} (`{name}`)" for short, name, long in columns_for(summaries))
    parts = [
        "# loclin report",
        "",
        f"Runs: {', '.join(f'`{r}`' for r in runs)}",
        "",
        "## Headline numbers",
        "",
        render_markdown(table),
        "",
        *([bound_reading(table), ""] if bound_reading(table) else []),
        "Capture is energy capture ‖Bᵀv‖²/‖v‖²; its random baseline is k/D. Columns:",
        legend,
        "",
    ]
    if diverged:
        parts += ["## Diverged runs (left out of every table)", "", *diverged, ""]
    if skipped:
        parts += ["## Non-finite vectors (skipped by every measurement)", "", *skipped, ""]
    for s in summaries:
        parts += [f"## Tasks: {run_label(s)}", "", render_markdown(task_table(s)), ""]
        parts += drift_and_recovery_sections(s, "##", f": {run_label(s)}")
    for index, s in enumerate(summaries):
        if RANDOM_SEARCH_POINTS in s["curves"]:
            from loclin.random_search_report import random_search_section

            parts += random_search_section(s, run_label(s), out, index)
    parts += ["## Plots", ""]
    parts += [f"### {caption}\n\n![{caption}]({name})\n" for caption, name in plots]
    (out / "report.md").write_text("\n".join(parts))
    return "\n".join([render_text(table), *(["non-finite vectors skipped:", *skipped] if skipped else [])])


def drift_and_recovery_sections(summary: dict, level: str, suffix: str = "") -> list[str]:
    """Markdown: drift against the noise ceiling (training and recovery), then the recovery
    tables (bases, prefix determination and controls, capture against length) and the verdict."""
    parts: list[str] = []
    for phase, during in (("", ""), ("recover.", " during recovery")):
        drift = drift_table(summary, phase)
        if drift:
            parts += [
                f"{level} Drift against the noise ceiling{during}{suffix}",
                "",
                render_markdown(drift),
                "",
                DRIFT_READING,
                "",
            ]
    if RECOVERY_TABLE in summary["curves"]:
        parts += [f"{level} Recovery{suffix}", "", render_markdown(recovery_table(summary)), ""]
        for title, table in (
            ("Prefix bases: determination and controls", prefix_table(summary)),
            ("Capture against recovery length", length_table(summary)),
        ):
            if table:
                parts += [f"{level}# {title}", "", render_markdown(table), ""]
        parts += [verdict(summary), ""]
    return parts


DRIFT_READING = (
    "Read drift here, not in the full-window overlap: below lag W the full windows share vectors, and even a "
    "stationary stream gives two W/2-sample bases an overlap below 1, the noise ceiling. A ratio near 1 means no "
    "drift beyond sampling noise; the plateau is the part of the basis that persists."
)


def control_sentence(summary: dict, m: int = 8) -> str:
    """Is the prefix special? P_m against m updates at random positions and the last m."""
    metrics = summary["metrics"]
    prefix = metrics.get(f"recovery.capture.P{m}_updates")
    random = metrics.get(f"recovery.capture.R{m}_random_positions")
    last = metrics.get(f"recovery.capture.L{m}_last_updates")
    if prefix is None or random is None or last is None:
        return ""
    p, r, lst = prefix["value"], random["value"], last["value"]
    spread = random.get("spread", {})
    beats = p > spread.get("max", r) and p > lst
    judged = (
        "the prefix is special: it beats every random draw and the last updates"
        if beats
        else "the prefix is not special here: some other set of updates of this trajectory does as well"
    )
    std, most, draws = spread.get("std", float("nan")), spread.get("max", float("nan")), spread.get("draws", "?")
    return (
        f"Controls at m = {m}: the first {m} updates capture {fmt(p)}, {m} at random positions {fmt(r)} ± "
        f"{fmt(std)} (max {fmt(most)}, {draws} draws), the last {m} {fmt(lst)}; {judged}."
    )


def headline_numbers(summary: dict) -> dict[str, float]:
    """The headline table's numbers of one run by their short names (``energy_k``, ``ov_lag100``,
    …, ``acc_mean``), the ones it holds."""
    numbers = {short: value(summary, name) for short, name, _ in columns_for([summary]) if name in summary["metrics"]}
    numbers.update({name: value(summary, name) for name in summary["metrics"] if name.startswith("random_search.")})
    accs = [value(summary, n) for n in summary["metrics"] if n.startswith("task.") and n.endswith(".acc")]
    if accs:
        numbers["acc_mean"] = sum(accs) / len(accs)
    return numbers


def drift_lag(summary: dict, source: str = "grad", wanted: int = 100) -> int | None:
    """Lag 100 when the run measured it (docs/science.md 4 reads drift there), else its largest lag."""
    lags = summary["curves"].get(f"{source}.drift", {}).get("lags", [])[1:]
    return wanted if wanted in lags else (max(lags) if lags else None)


def geometry_reading(summary: dict) -> list[str]:
    """C1 and C3 in a sentence each, every number beside the null that could fake it: top-k energy
    and held-out capture against k/D; drift at lag 100 (or the largest lag) as the full-window
    overlap, then as disjoint half-window overlap ÷ the noise ceiling, where < 0.5 reads as drift
    beyond sampling noise."""
    metrics, lines = summary["metrics"], []
    baseline = summary["geometry"].get("random_baseline_k_over_D", float("nan"))
    k = summary["geometry"].get("k", "k")
    if "grad.energy_topk" in metrics:
        line = f"**Low rank (C1).** The top-{k} directions hold {fmt(value(summary, 'grad.energy_topk'))} of the "
        line += "gradient window's energy"
        if "grad.heldout_capture_h1" in metrics:
            held = value(summary, "grad.heldout_capture_h1")
            times = f" ({fmt(held / baseline)}× k/D = {fmt(baseline)})" if baseline > 0 else ""
            line += f"; they capture {fmt(held)} of the next, unseen gradient{times}"
        lines.append(line + ".")
    lag = drift_lag(summary)
    if lag is not None and f"grad.overlap_lag{lag}" in metrics:
        line = (
            f"**Drift (C3).** Bases {lag} steps apart overlap {fmt(value(summary, f'grad.overlap_lag{lag}'))} "
            f"(half-life {fmt_value(summary, 'grad.half_life')} steps; random {fmt(baseline)})"
        )
        if f"grad.overlap_ratio_lag{lag}" in metrics:
            ratio = value(summary, f"grad.overlap_ratio_lag{lag}")
            share = "more" if ratio < 0.5 else "less"
            line += (
                f". Against the noise ceiling (two half-windows of one window overlap "
                f"{fmt(value(summary, 'grad.noise_ceiling'))}), disjoint windows {lag} steps apart reach {fmt(ratio)} "
                f"of it: {share} than half of the basis drifts beyond sampling noise within {lag} steps"
            )
        lines.append(line + ".")
    return lines


def run_verdict(summary: dict) -> str:
    """What one run's numbers support, in Markdown: the geometry reading, the recovery verdict when
    the run had one, and whether the numbers carry an interval."""
    parts = geometry_reading(summary)
    if RECOVERY_TABLE in summary.get("curves", {}):
        recovery = verdict(summary)
        parts += [f"**Recovery (C2, C4).** {recovery}"] if recovery else []
    if parts:
        parts.append(
            f"One run, seed {summary.get('seed')}: no interval. Seeds give one: `analyze.py` reports the mean "
            "and 95% t-interval over runs of the same experiment."
        )
    return "\n\n".join(parts)


def verdict(summary: dict) -> str:
    """The fixed-task-plane reading the numbers support (docs/science.md 6, 7), in one paragraph.

    Rejected: the best static basis learned before recovery (S1–S5) captures < 0.3 of Δ and
    the prefix P_k at equal k captures at least 3× as much; "strongly" when P_k also captures
    more than half of Δ. The function-space check is reported as the share of T's accuracy
    recovered, (acc(θ_0 + P_B Δ) − acc(θ_0)) / (acc(θ_R) − acc(θ_0)).
    """
    table = summary["curves"][RECOVERY_TABLE]
    learned = {n: r["capture"] for n, r in table.items() if n[:2] in ("S1", "S2", "S3", "S4", "S5")}
    if not learned:
        return ""
    best_name = max(learned, key=learned.get)
    k = table[best_name]["k"]
    prefix_name = f"P{k}_updates"
    if prefix_name not in table:
        return (
            f"No prefix basis of the static bases' k = {k} was measured (add {k} to recovery.prefix_ms): "
            "no verdict at equal k."
        )
    prefix = table[prefix_name]["capture"]
    ratio = prefix / learned[best_name] if learned[best_name] > 0 else float("inf")
    lines = [
        f"Best static basis learned before recovery: {best_name}, capturing {fmt(learned[best_name])} of Δ; "
        f"the first {k} recovery updates capture {fmt(prefix)} ({fmt(ratio)}× as much) at equal k = {k}."
    ]
    if {"theta_0", "theta_R"} <= table.keys() and "acc" in table.get(best_name, {}):
        span = table["theta_R"]["acc"] - table["theta_0"]["acc"]
        if abs(span) > 1e-9:
            share = {
                n: (table[n]["acc"] - table["theta_0"]["acc"]) / span for n in (best_name, prefix_name) if n in table
            }
            lines.append(
                "Share of the target's accuracy recovered by θ_0 + P_B Δ: "
                + ", ".join(f"{n} {fmt(v)}" for n, v in share.items())
                + "."
            )
    constrained = [n for n in table if n.startswith("constrained_")]
    for name in constrained:
        lines.append(
            f"Re-running the recovery inside θ_0 + span({name[12:]}) reaches accuracy {fmt(table[name]['acc'])} "
            f"(unconstrained θ_R: {fmt(table.get('theta_R', {}).get('acc', float('nan')))})."
        )
    if learned[best_name] < 0.3 and ratio >= 3:
        strength = "strongly " if prefix > 0.5 else ""
        lines.append(
            f"The fixed-task-plane hypothesis is {strength}rejected here: no static basis holds the recovery "
            f"direction, a short trajectory prefix holds {fmt(ratio)}× more of it."
        )
    elif prefix > learned[best_name]:
        lines.append(
            "Prefix bases beat every static basis, but by less than the 3× margin this report calls a rejection."
        )
    else:
        lines.append(
            "A static basis captures as much as the prefix: the fixed-task-plane hypothesis is not rejected by this "
            "run."
        )
    curve = summary["curves"].get(RECOVERY_PREFIX, {})
    if 8 in curve.get("m", []) and curve.get("effective_updates"):
        i = curve["m"].index(8)
        lines.append(
            "Against the paper's LoRA figure (C4: the first 8 recovery updates capture 0.77 of Δ): this run's P8 "
            "captures "
            f"{fmt(curve['updates'][i])} in raw A‖B space and {fmt(curve['effective_updates'][i])} in effective weight "
            "space."
        )
    lines.append(control_sentence(summary))
    curve = summary["curves"].get(RECOVERY_PREFIX, {})
    undetermined = [m for m, ok in zip(curve.get("m", []), curve.get("determined_updates", [])) if not ok]
    if undetermined:
        lines.append(
            f"P_m for m in {undetermined} is not numerically determined (smallest relative pivot below 1e-8): those "
            "captures are round-off, not geometry."
        )
    if "krylov_exact" in curve and 8 in curve["m"]:
        i = curve["m"].index(8)
        lines.append(
            f"Against the exact Krylov space: cap(K_8, Δ) = {fmt(curve['krylov_exact'][i])}, the update prefix "
            f"{fmt(curve['updates'][i])}."
        )
    if summary["metrics"].get("recovery.degradation_hurt", {}).get("value", 1.0) == 0.0:
        lines.append("Caution: the degradation did not hurt the target task (see recovery.degradation_hurt).")
    return " ".join(line for line in lines if line)
