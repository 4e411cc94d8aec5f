"""The C4 map's figures: prefix capture against m per sweep with its controls, faceted by optimizer,
with 95% bands, failed cells listed beside the plot; and P8 against the recovery length T.
"""

from __future__ import annotations

import math
from pathlib import Path

from loclin.claims.c4 import PAPER_P8
from loclin.claims.c4_table import length_axis, panel_grid
from loclin.reports.maps.c4 import OPTIMIZER_SWEEPS, OUTSIDE, c4_cells, capture_lengths, cell_stat, missing_points


def error_bars(stats: list[tuple[float, float, float]]) -> list[list[float]]:
    """matplotlib's yerr from (mean, low, high) rows; no bar where there is no interval (one seed)."""
    return [
        [0 if math.isnan(lo) else m - lo for m, lo, _ in stats],
        [0 if math.isnan(hi) else hi - m for m, _, hi in stats],
    ]


def save_capture_figure(fig, ax, out: Path, name: str, title: str, legend: dict) -> None:
    """The paper's 0.77 line, a [0, 1] capture axis, the title and legend; written and closed."""
    import matplotlib.pyplot as plt

    ax.axhline(PAPER_P8, color="k", ls=":", label=f"paper P8 = {PAPER_P8}")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(**legend)
    fig.tight_layout()
    fig.savefig(out / name, dpi=120)
    plt.close(fig)


def c4_figures(records: list[dict], out: Path) -> list[tuple[str, str]]:
    import matplotlib.pyplot as plt

    cells = c4_cells(records)
    figures = []
    optimizer_cells = [
        (label, g) for label, g in cells.items() if g[0]["sweep"] in OPTIMIZER_SWEEPS and "phases.2.lr" in g[0]["cell"]
    ]
    if optimizer_cells:
        fig, ax = plt.subplots(figsize=(7, 4))
        for sweep in OPTIMIZER_SWEEPS:
            group = sorted(
                ((g[0]["cell"]["phases.2.lr"], g) for _, g in optimizer_cells if g[0]["sweep"] == sweep),
                key=lambda item: item[0],
            )
            if not group:
                continue
            lrs = [lr for lr, _ in group]
            stats = [cell_stat(g, "recovery.capture.P8_updates") for _, g in group]
            line = ax.errorbar(
                lrs, [m for m, _, _ in stats], yerr=error_bars(stats), marker="o", capsize=3, label=f"{sweep}: P8"
            )
            controls = [cell_stat(g, "recovery.capture.R8_random_positions")[0] for _, g in group]
            ax.plot(
                lrs,
                controls,
                ls="--",
                marker="x",
                color=line[0].get_color(),
                alpha=0.7,
                label=f"{sweep}: 8 random positions",
            )
        ax.set_xscale("log")
        ax.set_xlabel("recover learning rate")
        ax.set_ylabel("capture of Δ = θ_R − θ_0")
        save_capture_figure(
            fig,
            ax,
            out,
            "c4_p8_vs_lr.png",
            "P8 against the recover optimizer and rate\n(mean, 95% t-interval over parent seeds)",
            OUTSIDE,
        )
        figures.append(
            ("c4_p8_vs_lr.png", "P8 (solid) and the random-position control (dashed) against the recover rate")
        )
    plotted = {label for label, _ in optimizer_cells}
    others = [(label, g) for label, g in cells.items() if label not in plotted]
    if others:
        fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(others) + 2), 4))
        stats = [cell_stat(g, "recovery.capture.P8_updates") for _, g in others]
        xs = list(range(len(others)))
        ax.bar(
            xs,
            [m for m, _, _ in stats],
            yerr=error_bars(stats),
            capsize=3,
            color="tab:blue",
            alpha=0.7,
            label="P8 (first 8 updates)",
        )
        ax.scatter(
            xs,
            [cell_stat(g, "recovery.capture.R8_random_positions")[0] for _, g in others],
            marker="x",
            color="tab:orange",
            zorder=3,
            label="8 random positions",
        )
        ax.scatter(
            xs,
            [cell_stat(g, "recovery.capture.L8_last_updates")[0] for _, g in others],
            marker="_",
            s=200,
            color="tab:green",
            zorder=3,
            label="last 8",
        )
        ax.set_xticks(xs, [label for label, _ in others], rotation=35, ha="right", fontsize=7)
        ax.set_ylabel("capture of Δ = θ_R − θ_0")
        save_capture_figure(
            fig,
            ax,
            out,
            "c4_other_axes.png",
            "P8 and its controls on the other axes\n(mean, 95% t-interval over parent seeds)",
            {"fontsize": 7},
        )
        figures.append(("c4_other_axes.png", "P8 and its controls per cell of the other axes"))
    ms = sorted(
        {
            int(k[len("recovery.capture.P") : -len("_updates")])
            for r in records
            for k in r["metrics"]
            if k.startswith("recovery.capture.P") and k.endswith("_updates")
        }
    )
    if ms:
        fig, ax = plt.subplots(figsize=(7, 4))
        for label, group in cells.items():
            (line,) = ax.plot(
                ms, [cell_stat(group, f"recovery.capture.P{m}_updates")[0] for m in ms], marker="o", lw=1, label=label
            )
            controls = [m for m in ms if f"recovery.capture.R{m}_random_positions" in group[0]["metrics"]]
            ax.plot(
                controls,
                [cell_stat(group, f"recovery.capture.R{m}_random_positions")[0] for m in controls],
                ls="--",
                lw=0.8,
                color=line.get_color(),
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("m (first m updates)")
        ax.set_ylabel("cap(P_m, Δ)")
        save_capture_figure(
            fig,
            ax,
            out,
            "c4_pm.png",
            "P_m against m per cell (dashed: m updates at random positions)",
            {**OUTSIDE, "fontsize": 6},
        )
        figures.append(("c4_pm.png", "P_m for every m, with the random-position control"))
    lengths = capture_lengths(records)
    if lengths:
        figures.append(p8_against_length_figure(records, cells, lengths, out))
    return figures


def p8_against_length_figure(records: list[dict], cells: dict, lengths: list[int], out: Path) -> tuple[str, str]:
    """cap(P_8, θ_T − θ_0) against T, one panel per sweep (an optimizer, or another axis), each cell
    a line with its 95% t-interval over seeds as a band and the random-position control dashed;
    cells without numbers are listed beside the panels, not drawn."""
    import matplotlib.pyplot as plt

    measured = {
        label: g
        for label, g in cells.items()
        if any(f"recovery.capture_at_T{t}.P8_updates" in r["metrics"] for r in g for t in lengths)
    }
    cells = measured
    sweeps = sorted({g[0]["sweep"] for g in cells.values()})
    fig, axes = panel_grid(len(sweeps), 2.2)
    for ax, sweep in zip(axes.flat, sweeps):
        for label, group in ((label, g) for label, g in cells.items() if g[0]["sweep"] == sweep):
            stats = [cell_stat(group, f"recovery.capture_at_T{t}.P8_updates") for t in lengths]
            short = label.split(": ", 1)[-1]
            (line,) = ax.plot(lengths, [m for m, _, _ in stats], marker="o", ms=3, lw=1, label=short)
            lows, highs = [lo for _, lo, _ in stats], [hi for _, _, hi in stats]
            if not all(math.isnan(v) for v in lows):
                ax.fill_between(lengths, lows, highs, color=line.get_color(), alpha=0.15)
            controls = [t for t in lengths if f"recovery.capture_at_T{t}.R8_random_positions" in group[0]["metrics"]]
            ys = [cell_stat(group, f"recovery.capture_at_T{t}.R8_random_positions")[0] for t in controls]
            ax.plot(controls, ys, ls="--", lw=0.8, color=line.get_color())
        length_axis(ax, sweep)
    for ax in list(axes.flat)[len(sweeps) :]:
        ax.axis("off")
    axes[0][0].set_ylabel("cap(P_8, θ_T − θ_0)")
    missing = missing_points(records)
    if missing:
        listed = "\n".join(f"{label}: {', '.join(points)}" for label, points in missing.items())
        fig.text(0.84, 0.5, f"not drawn (no numbers):\n{listed}", fontsize=7, ha="left", va="center")
    fig.suptitle("P8 against the recovery length (band: 95% over seeds; dashed: 8 at random positions)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.82 if missing else 1, 1))
    fig.savefig(out / "c4_p8_vs_T.png", dpi=120)
    plt.close(fig)
    return ("c4_p8_vs_T.png", "P8 of the displacement after T steps, from the same runs, one panel per sweep")
