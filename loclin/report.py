"""Tables, plots and a Markdown report from finished run directories (no re-training)."""

from __future__ import annotations

import math
from pathlib import Path

from loclin.rundir import RunDirError, read_summary

COLUMNS = [
    ("energy_k", "grad.energy_topk", "top-k energy of the gradient window"),
    ("heldout_h1", "grad.heldout_capture_h1", "held-out capture of the next gradient"),
    ("upd_energy_k", "update.energy_topk", "top-k energy of the update window"),
    ("ov_lag100", "grad.overlap_lag100", "overlap of gradient bases 100 steps apart"),
    ("half_life", "grad.half_life", "lag where that overlap halves (steps)"),
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


def value(summary: dict, name: str) -> float:
    entry = summary["metrics"].get(name)
    if entry is None:
        return float("nan")
    v = entry["value"]
    return float(v)  # "inf" and "nan" are stored as strings and parse back


def fmt(x: float) -> str:
    if math.isnan(x):
        return "–"
    if math.isinf(x):
        return "inf"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def run_label(summary: dict) -> str:
    return "/".join(Path(summary["run_dir"]).parts[-2:])


def headline_table(summaries: list[dict]) -> list[list[str]]:
    header = ["run", "seed", "steps", "D", "k/D", *(c[0] for c in COLUMNS), "acc_mean", "acc_min"]
    rows = [header]
    for s in summaries:
        accs = {n.split(".")[1]: value(s, n) for n in s["metrics"] if n.startswith("task.") and n.endswith(".acc")}
        worst = min(accs, key=accs.get) if accs else None
        rows.append(
            [
                run_label(s),
                str(s["seed"]),
                str(s["steps"]),
                str(s["geometry"].get("dim", "–")),
                fmt(s["geometry"].get("random_baseline_k_over_D", float("nan"))),
                *(fmt(value(s, c[1])) for c in COLUMNS),
                fmt(sum(accs.values()) / len(accs)) if accs else "–",
                f"{fmt(accs[worst])} ({worst})" if worst else "–",
            ]
        )
    return rows


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
                fmt(acc["baseline"]),
                fmt(value(summary, f"task.{task}.exact")),
                fmt(value(summary, f"task.{task}.loss")),
                fmt(float(capture.get("value", "nan"))),
                fmt(float(capture.get("baseline", "nan"))),
            ]
        )
    return rows


def render_text(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def write_plots(summaries: list[dict], out: Path) -> list[tuple[str, str]]:
    """Write PNGs; returns (caption, file name) pairs for the report."""
    from loclin.plots import (
        drift_curve_figure,
        drift_heatmap_figure,
        heldout_figure,
        matrix_figure,
        spectrum_figure,
    )

    written: list[tuple[str, str]] = []

    def save(figure, name: str, caption: str) -> None:
        figure.savefig(out / name, dpi=120)
        figure.clf()
        written.append((caption, name))

    k = summaries[0]["geometry"]["k"]
    baseline = summaries[0]["geometry"].get("random_baseline_k_over_D", float("nan"))
    for source in ("grad", "update"):
        spectra = {f"{run_label(s)} {source}": s["curves"][f"{source}.spectrum"]["mean_energy_fraction"] for s in summaries if f"{source}.spectrum" in s["curves"]}
        if spectra:
            save(spectrum_figure(spectra, k, title=f"{source} window spectrum (mean over refreshes)"), f"spectrum_{source}.png", f"Singular spectrum of the {source} window")
        heldout = {run_label(s): (s["curves"][f"{source}.heldout"]["h"], s["curves"][f"{source}.heldout"]["capture"]) for s in summaries if s["curves"].get(f"{source}.heldout", {}).get("h")}
        if heldout:
            save(heldout_figure(heldout, baseline), f"heldout_capture_{source}.png", f"Held-out capture of future {source} vectors against steps ahead")
        drift = {run_label(s): s["curves"][f"{source}.drift"] for s in summaries if f"{source}.drift" in s["curves"]}
        if drift:
            save(drift_curve_figure(drift, baseline), f"drift_curve_{source}.png", f"Drift of the {source} basis against lag, with the k/D baseline")
    for i, s in enumerate(summaries):
        for source in ("grad", "update"):
            heat = s["curves"].get(f"{source}.heatmap")
            if heat and heat["s"]:
                lags = heat.get("lags") or s["curves"][f"{source}.drift"]["lags"][1:]
                save(drift_heatmap_figure(heat["s"], heat["t"], heat["overlap"], lags, title=f"{run_label(s)} {source} basis overlap"), f"drift_heatmap_{source}_{i}.png", f"Overlap between {source} bases at steps s and t ({run_label(s)})")
        pertask = s["curves"].get("pertask")
        if pertask:
            save(matrix_figure(pertask["overlap_matrix"], pertask["tasks"], "overlap of per-task bases"), f"pertask_overlap_{i}.png", f"Overlap between tasks' gradient bases ({run_label(s)})")
    return written


def build_report(run_paths: list[str | Path], out: Path) -> str:
    """Read runs, write plots and report.md into ``out``; return the text table."""
    runs = find_runs(run_paths)
    summaries = [read_summary(r) for r in runs]
    out.mkdir(parents=True, exist_ok=True)
    table = headline_table(summaries)
    plots = write_plots(summaries, out)
    legend = "\n".join(f"- `{short}`: {long} (`{name}`)" for short, name, long in COLUMNS)
    parts = [
        "# loclin report",
        "",
        f"Runs: {', '.join(f'`{r}`' for r in runs)}",
        "",
        "## Headline numbers",
        "",
        render_markdown(table),
        "",
        "Capture is energy capture ‖Bᵀv‖²/‖v‖²; its random baseline is k/D. Columns:",
        legend,
        "",
    ]
    for s in summaries:
        parts += [f"## Tasks: {run_label(s)}", "", render_markdown(task_table(s)), ""]
    parts += ["## Plots", ""]
    parts += [f"### {caption}\n\n![{caption}]({name})\n" for caption, name in plots]
    (out / "report.md").write_text("\n".join(parts))
    return render_text(table)
