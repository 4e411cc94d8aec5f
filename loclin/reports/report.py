"""A Markdown report from finished run directories (no re-training): the tables of loclin.reports.run_tables,
the readings of loclin.reports.readings and the plots drawn here."""

from __future__ import annotations

from pathlib import Path

from loclin.callbacks.keys import RANDOM_SEARCH_POINTS, RECOVERY_PREFIX, RECOVERY_TABLE
from loclin.protocols.registry import protocol_of_summary
from loclin.reports.readings import DRIFT_READING, verdict
from loclin.reports.run_tables import (
    columns_for,
    drift_table,
    headline_table,
    length_table,
    prefix_controls,
    prefix_table,
    recovery_table,
    run_label,
    task_table,
)
from loclin.reports.tables import (
    bound_reading,
    render_markdown,
    render_text,
)
from loclin.runs.rundir import RunDirError, read_summary


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
        from loclin.protocols.steer.report import build_steer_report

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
            from loclin.protocols.random_search.report import random_search_section

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
