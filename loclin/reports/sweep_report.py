"""analyze.py for a sweep directory: one row per grid cell, mean [95% t-interval] over seeds of
each summary key, and a line plot (one grid axis) or heatmap (two) of any key."""

from __future__ import annotations

import json
import math
from pathlib import Path

from loclin.geometry.intervals import t_interval
from loclin.reports.tables import fmt, render_markdown, render_text, value
from loclin.runs.grid import MANIFEST, latest_version
from loclin.runs.rundir import SUMMARY_FILE, RunDirError

DEFAULT_KEYS = (
    "recovery.capture.P8_updates",
    "recovery.capture.R8_random_positions",
    "recovery.capture.L8_last_updates",
    "recovery.theta_R.acc",
    "grad.overlap_ratio_lag100",
)


def point_summaries(sweep_dir: Path, manifest: dict) -> list[tuple[dict, dict | None]]:
    """(point, its summary or None when it has not finished)."""
    found = []
    for point in manifest["points"]:
        latest = latest_version(sweep_dir / "points" / point["name"])
        summary = latest / SUMMARY_FILE if latest is not None else None
        found.append((point, json.loads(summary.read_text()) if summary is not None and summary.is_file() else None))
    return found


def cell_table(manifest: dict, found: list, keys: list[str]) -> tuple[list[list[str]], dict]:
    axes = list(manifest["grid"])
    cells: dict[tuple, list[dict]] = {}
    diverged: dict[tuple, list[str]] = {}
    for point, summary in found:
        cell = tuple(json.dumps(point["cell"][axis]) for axis in axes)
        cells.setdefault(cell, [])
        if summary is not None and summary.get("diverged"):  # named, never averaged
            diverged.setdefault(cell, []).append(f"seed {point['seed']} at step {summary['diverged'].get('step')}")
        elif summary is not None:
            cells[cell].append(summary)
    rows = [[*axes, "seeds done", *keys]]
    stats = {}
    for cell, summaries in cells.items():
        done = f"{len(summaries)} ({','.join(str(s['seed']) for s in summaries)})" if summaries else "0"
        if cell in diverged:
            done += f" (diverged: {', '.join(diverged[cell])})"
        row = [*map(str, map(json.loads, cell)), done]
        for key in keys:
            mean, low, high = t_interval([value(s, key) for s in summaries])
            stats[(cell, key)] = (mean, low, high)
            if math.isnan(mean):
                row.append("–")
            elif math.isnan(low):
                row.append(f"{fmt(mean)} (one seed)")
            else:
                row.append(f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]")
        rows.append(row)
    return rows, stats


def sweep_figure(manifest: dict, stats: dict, key: str):
    import matplotlib.pyplot as plt

    axes = list(manifest["grid"])
    labels = {axis: [json.dumps(v) for v in manifest["grid"][axis]] for axis in axes}
    if len(axes) == 2:
        import numpy as np

        a, b = axes
        grid = np.full((len(labels[a]), len(labels[b])), np.nan)
        for i, x in enumerate(labels[a]):
            for j, y in enumerate(labels[b]):
                grid[i, j] = stats.get(((x, y), key), (math.nan,))[0]
        fig, ax = plt.subplots(figsize=(1.2 * len(labels[b]) + 3, 0.6 * len(labels[a]) + 2.5))
        image = ax.imshow(grid, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(labels[b])), labels[b], rotation=30)
        ax.set_yticks(range(len(labels[a])), labels[a])
        ax.set_xlabel(b)
        ax.set_ylabel(a)
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                if not math.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", color="w", fontsize=8)
        fig.colorbar(image, ax=ax, label=f"{key} (mean over seeds)")
    else:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        axis = axes[0] if axes else "(one cell)"
        ticks = labels[axis] if axes else [""]
        xs = list(range(len(ticks)))
        means, lows, highs = [], [], []
        for x in ticks:
            mean, low, high = stats.get(((x,) if axes else (), key), (math.nan, math.nan, math.nan))
            means.append(mean)
            lows.append(mean - low if not math.isnan(low) else 0)
            highs.append(high - mean if not math.isnan(high) else 0)
        ax.errorbar(xs, means, yerr=[lows, highs], marker="o", capsize=3, label="mean, 95% t-interval over seeds")
        ax.set_xticks(xs, ticks, rotation=30)
        ax.set_xlabel(axis)
        ax.set_ylabel(key)
        ax.legend(fontsize=7)
    ax.set_title(key)
    fig.tight_layout()
    return fig


def build_sweep_report(sweep_dir: Path, out: Path, keys: list[str] | None = None) -> str:
    manifest_file = sweep_dir / MANIFEST
    try:
        manifest = json.loads(manifest_file.read_text())
    except (OSError, ValueError) as error:
        raise RunDirError(f"'{manifest_file}' is not a readable sweep manifest ({error})") from None
    found = point_summaries(sweep_dir, manifest)
    if not any(summary for _, summary in found):
        raise RunDirError(f"sweep '{sweep_dir}' has no finished point yet")
    present = set().union(*(s["metrics"] for _, s in found if s))
    keys = keys or [k for k in DEFAULT_KEYS if k in present]
    missing = [k for k in keys if k not in present]
    if missing:
        raise RunDirError(f"no finished point has the key(s) {missing}")
    rows, stats = cell_table(manifest, found, keys)
    out.mkdir(parents=True, exist_ok=True)
    import matplotlib.pyplot as plt

    parts = [
        "# loclin sweep report",
        "",
        f"Sweep: `{sweep_dir}`; grid {manifest['grid']}; seeds {manifest['seeds']}",
        "",
        render_markdown(rows),
        "",
    ]
    diverged = [point["name"] for point, summary in found if summary is not None and summary.get("diverged")]
    if diverged:
        parts += [f"Diverged points (named, never averaged): {', '.join(diverged)}.", ""]
    for i, key in enumerate(keys):
        figure = sweep_figure(manifest, stats, key)
        name = f"sweep_{i}.png"
        figure.savefig(out / name, dpi=150)
        plt.close(figure)
        parts += [f"### {key}", "", f"![{key}]({name})", ""]
    (out / "report.md").write_text("\n".join(parts))
    return render_text(rows)
