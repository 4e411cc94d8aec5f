"""The C4 map's deciders: one row per (cell, T) of the numbers that tell a special prefix from a
short recovery, their verdict words (loclin.claims.c4), the selection of the best cell on some
seeds and its confirmation on fresh ones, and the figures of those numbers.

A cell is a list of map records (one per parent seed) of ``loclin.reports.maps.records``; every key read
here is a summary metric ``recovery.capture_at_T{T}.*`` of the recover phase, its re-runs and its
replica (callbacks.recovery).
"""

from __future__ import annotations

import math
from pathlib import Path

from loclin.claims.c4 import PAPER_P8, describe, needed, paired, seeds_to_decide, threshold_verdict
from loclin.geometry.intervals import t_interval
from loclin.reports.tables import fmt

CHOOSE_SEEDS = (0, 1, 2)  # the best cell is chosen on these seeds …
CONFIRM_SEEDS = (3, 4)  # … and confirmed on these fresh ones


def at(t: int, name: str) -> str:
    return f"recovery.capture_at_T{t}.{name}"


def values(group: list[dict], key: str) -> list[float]:
    """One number per seed (nan where a run lacks it)."""
    return [float(r["metrics"].get(key, math.nan)) for r in group]


def interval_text(numbers: list[float]) -> str:
    mean, low, high = t_interval(numbers)
    if math.isnan(mean):
        return "–"
    return f"{fmt(mean)} (one seed)" if math.isnan(low) else f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def mean_text(numbers: list[float]) -> str:
    mean = t_interval(numbers)[0]
    return "–" if math.isnan(mean) else fmt(mean)


def p8_word(numbers: list[float]) -> str:
    """The P8 ≥ 0.77 verdict, with the seeds that would decide an undecided one."""
    word = threshold_verdict(numbers)
    if word != "undecided":
        return word
    n = seeds_to_decide(numbers)
    return f"undecided (n ≈ {n} would decide)" if n else "undecided"


def decided_lengths(cells: dict[str, list[dict]], lengths: list[int]) -> list[int]:
    """The T past the prefix (T > 8) at which some cell measured P8."""
    return [t for t in lengths if t > 8 and any(at(t, "P8_updates") in r["metrics"] for g in cells.values() for r in g)]


def reading(group: list[dict], t: int) -> str:
    return describe(
        values(group, at(t, "P8_updates")),
        values(group, at(t, "P8_offset_mean")),
        values(group, at(t, "P8_offset_p95")),
        values(group, at(t, "P8_replica")),
        values(group, at(t, "displacement_share_P8")),
    )


def need(group: list[dict], t: int) -> str:
    return needed(
        values(group, at(t, "acc")),
        values(group, at(t, "constrained_P8_updates_acc")),
        values(group, at(t, "outside_P8_updates_acc")),
        values(group, "recovery.theta_0.acc"),
    )


DECIDER_COLUMNS = [
    "cell",
    "T",
    "seeds",
    "P8 [95%]",
    "P8 ≥ 0.77",
    "offset p95",
    "P8 − offset p95 [95%]",
    "replica P8",
    "P8 − replica [95%]",
    "P8 − R8 [95%]",
    "S0",
    "acc plain / inside / outside",
    "path share",
    "displacement share",
    "cap(P8, θ_T − θ_8)",
    "steps to 50% / 90%",
    "reading",
    "P8 needed",
]


def decider_table(cells: dict[str, list[dict]], lengths: list[int]) -> list[list[str]]:
    """One row per (cell, T): P8 with its interval and verdict word, the nulls, paired differences
    with their own intervals, the ablations, the shares, steps_to_recover and the readings."""
    rows = [DECIDER_COLUMNS]
    for label, group in cells.items():
        for t in decided_lengths({label: group}, lengths):
            p8 = values(group, at(t, "P8_updates"))
            accuracies = [
                mean_text(values(group, at(t, name)))
                for name in ("acc", "constrained_P8_updates_acc", "outside_P8_updates_acc")
            ]
            steps = [mean_text(values(group, at(t, f"steps_to_{p}pct"))) for p in (50, 90)]
            rows.append(
                [
                    label,
                    str(t),
                    ",".join(str(r["seed"]) for r in group),
                    interval_text(p8),
                    p8_word(p8),
                    mean_text(values(group, at(t, "P8_offset_p95"))),
                    interval_text(paired(p8, values(group, at(t, "P8_offset_p95")))),
                    mean_text(values(group, at(t, "P8_replica"))),
                    interval_text(paired(p8, values(group, at(t, "P8_replica")))),
                    interval_text(paired(p8, values(group, at(t, "R8_random_positions")))),
                    mean_text(values(group, at(t, "S0_theta0_updates"))),
                    " / ".join(accuracies),
                    mean_text(values(group, at(t, "path_share_P8"))),
                    mean_text(values(group, at(t, "displacement_share_P8"))),
                    mean_text(values(group, at(t, "P8_after_prefix"))),
                    " / ".join(steps),
                    reading(group, t),
                    need(group, t),
                ]
            )
    return rows


def best_cell(cells: dict[str, list[dict]], t: int, seeds: tuple[int, ...]) -> str | None:
    """The cell with the highest mean P8 at T over ``seeds`` (cells with no such seed are out)."""
    means = {}
    for label, group in cells.items():
        chosen = [r for r in group if r["seed"] in seeds]
        mean = t_interval(values(chosen, at(t, "P8_updates")))[0] if chosen else math.nan
        if not math.isnan(mean):
            means[label] = mean
    return max(means, key=means.get) if means else None


def selection_text(cells: dict[str, list[dict]], lengths: list[int]) -> str:
    """Which cell seeds 0–2 chose at each T, and what fresh seeds 3–4 say of it: a maximum over many
    cells is selected on some seeds and tested on others, never reported as one planned test."""
    parts = []
    for t in decided_lengths(cells, lengths):
        label = best_cell(cells, t, CHOOSE_SEEDS)
        if label is None:
            continue
        group = cells[label]
        chose = values([r for r in group if r["seed"] in CHOOSE_SEEDS], at(t, "P8_updates"))
        fresh = values([r for r in group if r["seed"] in CONFIRM_SEEDS], at(t, "P8_updates"))
        confirm = (
            f"fresh seeds {','.join(map(str, CONFIRM_SEEDS))}: {interval_text(fresh)}, {p8_word(fresh)}"
            if any(not math.isnan(v) for v in fresh)
            else f"not yet confirmed (seeds {','.join(map(str, CONFIRM_SEEDS))} not run)"
        )
        parts.append(
            f"T = {t}: {label}, chosen on seeds {','.join(map(str, CHOOSE_SEEDS))} ({interval_text(chose)}); {confirm}"
        )
    if not parts:
        return ""
    return (
        f"The best cell for P8, chosen among {len(cells)} cells, then tested on seeds that did not choose it: "
        + "; ".join(parts)
        + "."
    )


def decision_text(cells: dict[str, list[dict]], lengths: list[int]) -> str:
    """Counts of each verdict word and reading per T, the cells where P8 is supported and the prefix
    special, and the selection (the paragraph under the deciders table)."""
    text = []
    for t in decided_lengths(cells, lengths):
        words: dict[str, list[str]] = {}
        readings: dict[str, list[str]] = {}
        needs: dict[str, list[str]] = {}
        for label, group in cells.items():
            if at(t, "P8_updates") not in group[0]["metrics"]:
                continue
            words.setdefault(threshold_verdict(values(group, at(t, "P8_updates"))), []).append(label)
            readings.setdefault(reading(group, t), []).append(label)
            needs.setdefault(need(group, t), []).append(label)
        both = [label for label in words.get("supported", []) if label in readings.get("special prefix", [])]
        counts = ", ".join(f"{word} {len(labels)}" for word, labels in sorted(words.items()))
        kinds = ", ".join(f"{word} {len(labels)}" for word, labels in sorted(readings.items()))
        needed_counts = ", ".join(f"{word} {len(labels)}" for word, labels in sorted(needs.items()))
        line = f"T = {t}: P8 ≥ {PAPER_P8} {counts}; reading {kinds}; P8 needed: {needed_counts}"
        if words.get("supported"):
            line += f"; supported in {'; '.join(words['supported'])}"
        line += f"; supported and special in {'; '.join(both)}" if both else "; supported and special nowhere"
        if t == decided_lengths(cells, lengths)[-1]:  # the whole recovery: every cell by name
            line += "; by cell: " + "; ".join(
                f"{word}: {', '.join(labels)}" for word, labels in sorted(readings.items())
            )
        text.append(line + ".")
    selection = selection_text(cells, lengths)
    if selection:
        text.append(selection)
    threads = sorted({str((r.get("made_by") or {}).get("threads")) for g in cells.values() for r in g})
    if text and threads != ["None"]:
        text.append(f"Runs made at CPU thread count(s): {', '.join(threads)} (numbers on a CPU depend on it).")
    return " ".join(text)


def decider_figures(cells: dict[str, list[dict]], lengths: list[int], out: Path) -> list[tuple[str, str]]:
    """P8 against steps_to_recover (a point per run), P8 against T with the offset null and the
    replica as bands (a panel per sweep), and cap(P_8, θ_T − θ_8) against T."""
    import matplotlib.pyplot as plt

    ts = decided_lengths(cells, lengths)
    if not ts:
        return []
    figures = []
    whole = ts[-1]
    fig, ax = plt.subplots(figsize=(6, 4))
    for sweep in sorted({g[0]["sweep"] for g in cells.values()}):
        xs, ys = [], []
        for group in (g for g in cells.values() if g[0]["sweep"] == sweep):
            xs += values(group, at(whole, "steps_to_90pct"))
            ys += values(group, at(whole, "P8_updates"))
        ax.scatter(xs, ys, s=12, label=sweep)
    ax.axhline(PAPER_P8, color="k", ls=":", lw=1, label=f"paper P8 = {PAPER_P8}")
    ax.axvline(8, color="grey", ls="--", lw=1, label="m = 8")
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"steps to 90% of the accuracy gain made by T = {whole}")
    ax.set_ylabel(f"cap(P_8, Δ_T), T = {whole}")
    ax.set_title("P8 against how fast the recovery was (a point per run)", fontsize=9)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    fig.savefig(out / "c4_p8_vs_steps_to_recover.png", dpi=120)
    plt.close(fig)
    figures.append(("c4_p8_vs_steps_to_recover.png", "P8 against the steps to 90% of the gain, one point per run"))
    for name, keys, ylabel, title, caption in (
        (
            "c4_p8_nulls_vs_T.png",
            (("P8_updates", "P8", "-"), ("P8_offset_p95", "offset p95", "--"), ("P8_replica", "replica P8", ":")),
            "cap(·, Δ_T)",
            "P8 (solid), offset p95 (dashed), replica (dotted)\n95% bands over seeds",
            "P8 against T with the offset-block null (p95) and the replica, 95% bands over seeds",
        ),
        (
            "c4_after_prefix_vs_T.png",
            (("P8_after_prefix", "cap(P8, θ_T − θ_8)", "-"),),
            "cap(P_8, θ_T − θ_8)",
            "cap(P_8, θ_T − θ_8) against T\n95% bands over seeds",
            "how much of the displacement made after the prefix lies in its span, against T",
        ),
    ):
        band_panels(cells, ts, keys, ylabel, title, out / name)
        figures.append((name, caption))
    return figures


def band_panels(cells, ts, keys, ylabel: str, title: str, path: Path) -> None:
    """One panel per sweep; per cell a colour, per key a line style, each with its 95% band."""
    import matplotlib.pyplot as plt

    sweeps = sorted({g[0]["sweep"] for g in cells.values()})
    fig, axes = panel_grid(len(sweeps), 0.6, 0.4)
    for ax, sweep in zip(axes.flat, sweeps):
        for i, (label, group) in enumerate((lb, g) for lb, g in cells.items() if g[0]["sweep"] == sweep):
            colour = f"C{i % 10}"
            for key, _, style in keys:
                stats = [t_interval(values(group, at(t, key))) for t in ts]
                if all(math.isnan(m) for m, _, _ in stats):
                    continue
                line_label = label.split(": ", 1)[-1] if key == keys[0][0] else None
                ax.plot(ts, [m for m, _, _ in stats], ls=style, color=colour, lw=1, marker="o", ms=2, label=line_label)
                lows, highs = [lo for _, lo, _ in stats], [hi for _, _, hi in stats]
                if not all(math.isnan(v) for v in lows):
                    ax.fill_between(ts, lows, highs, color=colour, alpha=0.12)
        length_axis(ax, sweep)
    for ax in list(axes.flat)[len(sweeps) :]:
        ax.axis("off")
    axes[0][0].set_ylabel(ylabel)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def panel_grid(panels: int, extra_width: float, extra_height: float = 0.0):
    """A grid of up to 3 columns of panels sharing the capture axis: (fig, axes as a 2-d array)."""
    import matplotlib.pyplot as plt

    columns = min(3, panels)
    rows = math.ceil(panels / columns)
    size = (3.6 * columns + extra_width, 2.9 * rows + extra_height)
    return plt.subplots(rows, columns, figsize=size, squeeze=False, sharey=True)


def length_axis(ax, title: str) -> None:
    """A capture-against-T panel: the paper's 0.77, a log T axis, [0, 1], its title and legend."""
    ax.axhline(PAPER_P8, color="k", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("recovery length T", fontsize=8)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)
