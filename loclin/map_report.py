"""Regime maps (issue 14): the C4 prefix-capture map and the C6 steering map, each reduced to
compact per-point records that a table, figures and a verdict paragraph are drawn from.

    python analyze.py runs/maps/c4_lora        # a folder of sweeps (docs/maps/c4_*.sh)
    python analyze.py runs/maps/c6_steering    # a folder of steering runs (docs/maps/c6_steering.sh)

The records (``cells.json``, a few kB a point) are what docs/results keeps of a map, so the
results page redraws the same tables and figures without the run directories.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from loclin.claims.c2 import c2_table
from loclin.claims.c3 import c3_figures, c3_record, c3_table, c3_verdict, is_drift_run
from loclin.claims.c4 import PAPER_P8, paired
from loclin.claims.c4_table import (
    decider_figures,
    decider_table,
    decision_text,
    length_axis,
    p8_word,
    panel_grid,
    values,
)
from loclin.claims.c7 import c7_table, has_power_records
from loclin.geometry.intervals import t_interval
from loclin.protocols import protocol_of_summary
from loclin.rundir import RunDirError
from loclin.tables import fmt, render_markdown, render_text

CELLS_FILE = "cells.json"
OPTIMIZER_SWEEPS = ("sgd", "sgd_momentum", "adam", "adamw")
AXIS_NAMES = {
    "phases.2.lr": "recover lr",
    "phases.2.optim.warmup_steps": "recover warm-up",
    "phases.2.batch_size": "recover batch",
    "phases.1.lr": "D1 lr",
    "recovery.noise_scale": "D3 ρ",
    "lm.lora.rank": "rank",
    "phases.1.steps": "D1 steps",
    "recovery.degradation": "degradation",
}
OUTSIDE = {"fontsize": 7, "loc": "center left", "bbox_to_anchor": (1, 0.5)}  # a legend beside the axes
C4_COLUMNS = {
    "P8 [95%]": "recovery.capture.P8_updates",
    "R8 random positions": "recovery.capture.R8_random_positions",
    "L8 last": "recovery.capture.L8_last_updates",
    "P8 at T=10": "recovery.capture_at_T10.P8_updates",
    "P8 at T=25": "recovery.capture_at_T25.P8_updates",
    "P8 at T=50": "recovery.capture_at_T50.P8_updates",
    "S6 go-back capture": "recovery.capture.S6_go_back",
    "S0 capture (θ_0 steps)": "recovery.capture.S0_theta0_updates",
    "acc θ_0": "recovery.theta_0.acc",
    "acc θ_R": "recovery.theta_R.acc",
    "‖Δ‖ / ‖θ*−θ_0‖": "recovery.delta_over_go_back",
}


def is_map(folder: Path) -> bool:
    """A folder of sweeps (C4) or of steering runs (C6), or a folder holding their records."""
    from loclin.sweep import MANIFEST

    if (folder / CELLS_FILE).is_file():
        return True
    return not (folder / MANIFEST).is_file() and (
        any(folder.glob(f"*/{MANIFEST}")) or any(folder.glob("*/*/version_*/summary.json"))
    )


def c4_record(sweep: str, point: dict, summary: dict) -> dict:
    norms = summary.get("curves", {}).get("recovery.norms", {})
    metrics = {
        k: v["value"]
        for k, v in summary["metrics"].items()
        if k.startswith("recovery.") and isinstance(v.get("value"), (int, float))
    }
    if norms.get("go_back"):
        metrics.setdefault("recovery.delta_over_go_back", norms["delta"] / norms["go_back"])
        metrics.setdefault("recovery.delta_norm", norms["delta"])
        metrics.setdefault("recovery.go_back_norm", norms["go_back"])
    record = {"map": "c4", "sweep": sweep, "cell": point["cell"], "seed": point["seed"], "metrics": metrics}
    return {**record, **identity_of(summary.get("run_dir"), summary.get("torch_threads"))}


def identity_of(run_dir: str | Path | None, threads: int | None = None) -> dict:
    """The record's digest and made_by (loclin.identity), where its run directory is at hand."""
    from loclin.identity import run_identity

    return run_identity(run_dir, threads) if run_dir and Path(run_dir).is_dir() else {}


def c6_record(name: str, summary: dict) -> dict:
    keep = (
        "cos_delta_caa",
        "cos_delta_caa_interval",
        "cos_delta_caa_prompt_end",
        "cos_adam_caa",
        "shuffled_p95",
        "random_p95",
    )
    layers = summary["curves"]["steer.layers"]
    return {
        "map": "c6",
        "name": name,
        "model": summary["model"],
        "source": summary["source"],
        "stepped": summary["stepped"],
        "bos": bool(summary.get("special_prefix")),
        "seed": summary["seed"],
        "heldout_items": summary.get("items", {}).get("heldout"),
        "metrics": {
            k: {"value": v["value"], **{key: v[key] for key in ("interval", "band", "reason") if key in v}}
            for k, v in summary["metrics"].items()
        },
        "layers": {k: layers[k] for k in keep if k in layers},
        "steered_layer": summary["curves"]["steer.curves"]["layer"],
        **identity_of(summary.get("run_dir")),
    }


def collect(folder: Path) -> list[dict]:
    """The records of a map folder: every finished point of every sweep in it (C4), or every
    steering run under it (C6); a folder holding ``cells.json`` gives those."""
    if (folder / CELLS_FILE).is_file():
        return read_records(folder / CELLS_FILE, "map")
    from loclin.sweep import MANIFEST
    from loclin.sweep_report import point_summaries

    records = []
    for manifest_file in sorted(folder.glob(f"*/{MANIFEST}")):
        # "rank+parent" joins "rank": one axis whose points were launched two ways (full runs, forks)
        sweep = manifest_file.parent.name.split("+")[0]
        for point, summary in point_summaries(manifest_file.parent, json.loads(manifest_file.read_text())):
            if summary is not None and summary.get("diverged"):
                records.append(
                    {
                        "map": "c4",
                        "sweep": sweep,
                        "cell": point["cell"],
                        "seed": point["seed"],
                        "missing": True,
                        "diverged": summary["diverged"],
                        "metrics": {},
                        **identity_of(summary.get("run_dir")),
                    }
                )
            elif summary is not None:
                records.append(c4_record(sweep, point, summary))
            else:  # failed (e.g. diverged) or not run yet: named in the verdict, never averaged
                records.append(
                    {
                        "map": "c4",
                        "sweep": sweep,
                        "cell": point["cell"],
                        "seed": point["seed"],
                        "missing": True,
                        "metrics": {},
                    }
                )
    for summary_file in sorted(folder.glob("*/*/version_*/summary.json")):
        summary = json.loads(summary_file.read_text())
        if protocol_of_summary(summary) == "steer":
            records.append(c6_record(summary_file.parents[2].name, summary))
        elif is_drift_run(summary):  # a C3 seed: its folder names the system and seed
            records.append({**c3_record(summary_file.parents[2].name, summary), **identity_of(summary.get("run_dir"))})
    if not any(not r.get("missing") for r in records):
        raise RunDirError(f"map '{folder}' has no finished point yet")
    return records


def record_key(record: dict) -> tuple:
    """What one record is a measurement of: a C4 point (sweep, cell, seed) or a C6 run (its name)."""
    if record["map"] in ("c3", "c6"):
        return (record["map"], record["name"])
    return ("c4", record["sweep"], json.dumps(record["cell"], sort_keys=True), record["seed"])


def merge_records(earlier: list[dict], new: list[dict], separate: bool = False) -> list[dict]:
    """``earlier`` (a published cells.json) with ``new`` (this folder's records). A new record
    replaces the earlier one of the same point only when both were made by the same thing (equal
    digests, loclin.identity), and a missing point never replaces a finished one; points only in
    ``earlier`` are kept. A point of the same name made by something else (another model, parent,
    config or loclin version) is a RunDirError naming the difference, or with ``separate`` a cell
    of its own (its label carries the digest). The order: earlier's, then new points."""
    merged = {record_key(r): r for r in earlier}
    for record in new:
        key = record_key(record)
        old = merged.get(key)
        if old is not None and old.get("digest") != record.get("digest"):
            if not separate:
                from loclin.identity import difference

                point = " ".join(map(str, key[1:]))
                raise RunDirError(
                    f"--merge: {point} is published from another run ({difference(old, record)}); nothing was "
                    "written: publish it as its own cell with --separate, or into another map"
                )
            record = {**record, "variant": (record.get("digest") or "no-digest")[:8]}
            key = (*key, record["variant"])
            old = merged.get(key)
        if not (record.get("missing") and old is not None and not old.get("missing")):
            merged[key] = record
    return list(merged.values())


def same_runs(records: list[dict]) -> dict[str, str]:
    """Cells whose every record was made by the same thing as an earlier cell's (equal digests):
    label -> the earlier label. One measurement listed under two names is one cell, counted once."""
    first: dict[str, str] = {}
    labels: dict[str, list[str]] = {}
    for record in records:
        if not record.get("missing"):
            labels.setdefault(cell_label(record), []).append(record.get("digest"))
    twins = {}
    for label, digests in labels.items():
        if None in digests:
            continue
        key = ",".join(sorted(digests))
        if key in first:
            twins[label] = first[key]
        else:
            first[key] = label
    return twins


def cell_label(record: dict) -> str:
    values = ", ".join(f"{AXIS_NAMES.get(k, k)}={v}" for k, v in record["cell"].items())
    label = f"{record['sweep']}: {values}" if values else record["sweep"]
    return f"{label} [made by {record['variant']}]" if record.get("variant") else label


def c4_cells(records: list[dict]) -> dict[str, list[dict]]:
    """Finished points by cell (points without a summary are left out: :func:`missing_points`; a
    cell that repeats another's runs is left out too: :func:`same_runs`)."""
    twins = same_runs(records)
    cells: dict[str, list[dict]] = {}
    for record in records:
        if not record.get("missing") and cell_label(record) not in twins:
            cells.setdefault(cell_label(record), []).append(record)
    return cells


def missing_points(records: list[dict]) -> dict[str, list[str]]:
    """Cells with points that have no numbers: a run that diverged (its summary says where), failed
    or has not run; each point as "seed s" with the reason when it is known."""
    missing: dict[str, list[str]] = {}
    for record in records:
        if record.get("missing"):
            why = f" diverged at step {record['diverged']['step']}" if record.get("diverged") else ""
            missing.setdefault(cell_label(record), []).append(f"seed {record['seed']}{why}")
    return missing


def cell_stat(group: list[dict], key: str) -> tuple[float, float, float]:
    return t_interval([r["metrics"].get(key, math.nan) for r in group])


def fmt_stat(stat: tuple[float, float, float]) -> str:
    mean, low, high = stat
    if math.isnan(mean):
        return "–"
    return f"{fmt(mean)} (one seed)" if math.isnan(low) else f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def c4_table(records: list[dict]) -> list[list[str]]:
    """One row per cell: mean [95% t-interval over parent seeds] of each column."""
    rows = [["cell", "seeds", *C4_COLUMNS]]
    for label, group in c4_cells(records).items():
        seeds = ",".join(str(r["seed"]) for r in group)
        rows.append([label, seeds, *(fmt_stat(cell_stat(group, key)) for key in C4_COLUMNS.values())])
    return rows


def spread(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return max(finite) - min(finite) if len(finite) > 1 else math.nan


def capture_lengths(records: list[dict]) -> list[int]:
    """The T of ``recovery.capture_at_T{T}.P8_updates`` present in the records."""
    keys = {
        k for r in records for k in r["metrics"] if k.startswith("recovery.capture_at_T") and k.endswith(".P8_updates")
    }
    return sorted(int(k[len("recovery.capture_at_T") : -len(".P8_updates")]) for k in keys)


def length_controls(cells: dict[str, list[dict]], lengths: list[int]) -> list[str]:
    """P8 of θ_T − θ_0 against 8 updates at random positions before T, for the (cell, T) pairs
    whose runs measured that control (recovery.capture_at_T{T}.R8_random_positions)."""
    pairs = []
    for group in cells.values():
        for t in lengths:
            if f"recovery.capture_at_T{t}.R8_random_positions" in group[0]["metrics"]:
                prefix = cell_stat(group, f"recovery.capture_at_T{t}.P8_updates")[0]
                pairs.append((prefix, cell_stat(group, f"recovery.capture_at_T{t}.R8_random_positions")[0], t))
    if not pairs:
        return []
    passing = [(p, r) for p, r, t in pairs if p >= PAPER_P8 and t > 8]
    return [
        f"Against 8 updates at random positions before T (measured in {len(pairs)} (cell, T) pairs), the first 8 "
        f"capture more in {sum(p > r for p, r, _ in pairs)}; of the {len(passing)} pairs past T = 8 with P8 ≥ "
        f"{PAPER_P8}, {sum(p > r for p, r in passing)} beat that control."
    ]


def recovered(group: list[dict]) -> bool:
    """A cell recovered when its mean accuracy at θ_R exceeds θ_0's by more than 0.05 and by at
    least half of what the degradation took (θ*'s accuracy − θ_0's, where θ* was measured)."""
    start, end = cell_stat(group, "recovery.theta_0.acc")[0], cell_stat(group, "recovery.theta_R.acc")[0]
    lost = cell_stat(group, "recovery.theta_star.acc")[0] - start
    return not end - start <= max(0.05, 0.5 * lost if not math.isnan(lost) else 0.0)


def c4_verdict(records: list[dict]) -> str:
    """Where P8 ≥ 0.77, if anywhere; the controls; and which axis moves P8 most (the range of the
    cell means along it)."""
    p8 = "recovery.capture.P8_updates"
    all_cells = c4_cells(records)
    failed = [label for label, g in all_cells.items() if not recovered(g)]
    # a run that did not recover says nothing about how a recovery is explained: named, never counted
    cells = {label: g for label, g in all_cells.items() if label not in failed}
    means = {label: cell_stat(group, p8) for label, group in all_cells.items()}
    ranked = sorted(
        ((label, means[label]) for label in cells),
        key=lambda item: -item[1][0] if not math.isnan(item[1][0]) else math.inf,
    )
    words = {label: p8_word(values(cells[label], p8)) for label, _ in ranked}
    supported = [label for label, _ in ranked if words[label] == "supported"]
    refuted = [label for label, _ in ranked if words[label] == "refuted"]
    text = []
    if supported:
        text.append(
            f"P8 ≥ {PAPER_P8} on the 95% lower bound (supported) in: "
            + "; ".join(f"{label} ({fmt_stat(means[label])})" for label in supported)
            + "."
        )
    elif ranked:
        best, stat = ranked[0]
        text.append(f"P8 ≥ {PAPER_P8} is supported in no cell that recovered. The highest is {best}: {fmt_stat(stat)}.")
    undecided = [label for label, _ in ranked if label not in supported and label not in refuted]
    if ranked:
        listed = f": {'; '.join(f'{label}: {words[label]}' for label in undecided)}." if undecided else "."
        text.append(
            f"Refuted (upper bound < {PAPER_P8}) in {len(refuted)} of {len(ranked)} cells; undecided in "
            f"{len(undecided)}{listed}"
        )
    if failed:
        text.append(
            "Cells whose recovery did not raise the accuracy over θ_0's by more than 0.05 and by half of what the "
            "degradation took (a failed recovery, or a degradation that did not hurt), left out of every count below: "
            f"{'; '.join(f'{label} (P8 {fmt_stat(means[label])})' for label in failed)}."
        )
    lengths = capture_lengths(records)
    if lengths:
        counts = [
            f"{sum(cell_stat(g, f'recovery.capture_at_T{t}.P8_updates')[0] >= PAPER_P8 for g in cells.values())} at T "
            f"= {t}"
            for t in lengths
        ]
        passing = {
            t: sum(cell_stat(g, f"recovery.capture_at_T{t}.P8_updates")[0] >= PAPER_P8 for g in cells.values())
            for t in lengths
        }
        reading = ""
        if passing[max(lengths)] < max(passing.values()):
            reading = ": the first 8 updates explain a short recovery better than a long one"
        text.append(
            f"Against the length of the recovery, from the same runs: cap(P_8, θ_T − θ_0) ≥ {PAPER_P8} in "
            f"{', '.join(counts)} "
            f"(of {len(cells)} cells; near T = 8 it is 1 by construction){reading}."
        )
        text += length_controls(cells, lengths)
    twins = same_runs(records)
    if twins:
        text.append(
            "Cells that repeat another cell's runs (the same digest: the same config from the same parent), counted "
            "once: " + "; ".join(f"{label} = {first}" for label, first in twins.items()) + "."
        )
    missing = missing_points(records)
    if missing:
        text.append(
            "Points without numbers (diverged, failed or not yet run; see the sweep's logs/): "
            + "; ".join(f"{label} ({', '.join(points)})" for label, points in missing.items())
            + "."
        )
    r8 = "recovery.capture.R8_random_positions"
    margins = {label: t_interval(paired(values(g, p8), values(g, r8))) for label, g in cells.items()}
    measured = {label: m for label, m in margins.items() if not math.isnan(m[0])}
    if measured:
        above = [label for label, (_, low, _) in measured.items() if not math.isnan(low) and low > 0]
        below = [label for label, (_, _, high) in measured.items() if not math.isnan(high) and high < 0]
        text.append(
            f"P8 − R8 (8 updates at random positions; paired within runs, 95% over seeds): above 0 in {len(above)} of "
            f"{len(measured)} cells, below 0 in {len(below)}"
            + (f" ({'; '.join(below)})" if below else "")
            + ". R8 follows how the optimizer's step sizes change over the run; the offset blocks below are the "
            "prefix's fair null."
        )
    decided = decision_text(cells, lengths)
    if decided:
        text.append(decided)
    effects = {}
    by_sweep: dict[str, list[float]] = {}
    for label, group in cells.items():
        by_sweep.setdefault(group[0]["sweep"], []).append(means[label][0])
    optimizers = [s for s in OPTIMIZER_SWEEPS if s in by_sweep]
    if optimizers:
        effects["the learning rate (within an optimizer)"] = max(
            (spread(by_sweep[s]) for s in optimizers if len(by_sweep[s]) > 1), default=math.nan
        )
        effects["the optimizer (its best rate)"] = spread([max(by_sweep[s]) for s in optimizers])
    for sweep, cell_means in by_sweep.items():
        if sweep not in OPTIMIZER_SWEEPS:
            effects[f"{sweep} (its cells)"] = spread(cell_means)
    long_enough = [t for t in lengths if t >= 3 * 8]  # at T ≈ m the prefix is nearly all of Δ_T, whatever the regime
    if len(long_enough) > 1:
        effects[f"the recovery length T ∈ {long_enough} (within a run)"] = max(
            spread([r["metrics"].get(f"recovery.capture_at_T{t}.P8_updates", math.nan) for t in long_enough])
            for group in cells.values()
            for r in group
        )
    effects = {k: v for k, v in effects.items() if not math.isnan(v)}
    if effects:
        order = sorted(effects.items(), key=lambda item: -item[1])
        text.append(
            "What moves P8 most (range of cell means): "
            + "; ".join(f"{name} {fmt(value)}" for name, value in order)
            + "."
        )
    return " ".join(text)


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


C6_COLUMNS = [
    "point",
    "model",
    "source",
    "step on",
    "BOS",
    "max cos(δ, v) [95%]",
    "at block",
    "block's 95%",
    "max cos(δ at t−1, v) [95%]",
    "max cos(Adam δ, v)",
    "shuffled null of the max over blocks, p95",
    "δ̂ : v̂ at the peak block [95%]",
]


def c6_entry(record: dict, name: str) -> str:
    from loclin.tables import fmt_entry

    return fmt_entry(record["metrics"].get(name))


def c6_table(records: list[dict]) -> list[list[str]]:
    rows = [C6_COLUMNS]
    for r in records:
        layers = r["layers"]
        peak = max(range(len(layers["cos_delta_caa"])), key=lambda i: layers["cos_delta_caa"][i])
        interval = layers.get("cos_delta_caa_interval", [[math.nan, math.nan]] * len(layers["cos_delta_caa"]))[peak]
        rows.append(
            [
                r["name"],
                Path(r["model"]).name.replace("asset:", ""),
                r["source"],
                r["stepped"],
                "yes" if r["bos"] else "no",
                c6_entry(r, "steer.cos_delta_caa.max"),
                str(peak),
                f"[{fmt(interval[0])}, {fmt(interval[1])}]",
                c6_entry(r, "steer.prompt_end.cos_delta_caa.max"),
                c6_entry(r, "steer.cos_adam_caa.max"),
                peak_null_text(r),
                c6_entry(r, "steer.at_peak.slope_ratio_delta_caa"),
            ]
        )
    return rows


C6_AXES = ("model", "source", "stepped", "bos")


def peak_null(record: dict) -> tuple[float, bool]:
    """The null a maximum over blocks is held against: the p95 of the shuffled-label draws' own maximum
    over blocks (True), or for records made before it was kept, the largest per-block p95 (False)."""
    metrics = record["metrics"]
    if "steer.shuffled_peak_p95" in metrics:
        return metrics["steer.shuffled_peak_p95"]["value"], True
    return metrics.get("steer.shuffled_max_p95", {}).get("value", math.nan), False


def peak_against_null(records: list[dict]) -> str:
    """Which points' maximum over blocks clears the null of a maximum (its lower bound above the p95)."""
    cleared, compared = [], 0
    for r in records:
        entry = r["metrics"].get("steer.cos_delta_caa.max", {})
        null, of_the_max = peak_null(r)
        if "interval" not in entry or math.isnan(null):
            continue
        compared += 1
        if entry["interval"][0] > null:
            cleared.append(
                f"{r['name']} ({fmt(entry['interval'][0])} > {fmt(null)}{'' if of_the_max else ', older null'})"
            )
    if not compared:
        return "No point has both a bootstrap interval of its peak and a shuffled-label null."
    listed = f": {'; '.join(cleared)}" if cleared else ""
    return (
        f"Held against the shuffled-label null of a maximum over blocks (p95 of each draw's own maximum), the peak's "
        f"lower bound clears it in {len(cleared)} of {compared} points{listed}."
    )


def peak_null_text(record: dict) -> str:
    value, of_the_max = peak_null(record)
    return fmt(value) if of_the_max else f"{fmt(value)} (largest per-block p95: an older record)"


def c6_verdict(records: list[dict], target: float = 0.58) -> str:
    """Where a block's cos(δ, v) has its whole 95% interval at or above 0.58, if anywhere; which
    axis moves the max over blocks most, over pairs of points that differ in that axis alone and
    within runs for the read position and the step rule; and how δ steers there."""
    text = []
    hits = []
    for r in records:
        for position, key in (("t", "cos_delta_caa"), ("t − 1", "cos_delta_caa_prompt_end")):
            values = r["layers"].get(key, [])
            intervals = r["layers"].get("cos_delta_caa_interval") if key == "cos_delta_caa" else None
            for block, value in enumerate(values):
                low = intervals[block][0] if intervals else math.nan
                if value >= target:
                    hits.append((r["name"], position, block, value, low))
    solid = [h for h in hits if h[4] >= target]
    if solid:
        text.append(
            f"cos(δ, v) ≥ {target} with its whole 95% interval in: "
            + "; ".join(f"{n} (δ at {p}, block {b}: {fmt(v)}, lower {fmt(lo)})" for n, p, b, v, lo in solid)
            + "."
        )
    elif hits:
        text.append(
            f"cos(δ, v) passes {target} only as a point value: "
            + "; ".join(f"{n} (δ at {p}, block {b}: {fmt(v)})" for n, p, b, v, _ in hits)
            + "."
        )
    else:
        best = max(records, key=lambda r: r["metrics"]["steer.cos_delta_caa.max"]["value"])
        text.append(
            f"cos(δ, v) reaches {target} at no block of any point. The highest: {best['name']}, "
            f"{c6_entry(best, 'steer.cos_delta_caa.max')}."
        )
    text.append(best_over_reads(records))
    text.append(peak_against_null(records))
    effects: dict[str, list[float]] = {}
    for i, a in enumerate(records):
        for b in records[i + 1 :]:
            differ = [axis for axis in C6_AXES if a[axis] != b[axis]]
            if len(differ) == 1:
                effects.setdefault(differ[0], []).append(
                    abs(
                        a["metrics"]["steer.cos_delta_caa.max"]["value"]
                        - b["metrics"]["steer.cos_delta_caa.max"]["value"]
                    )
                )
    for r in records:
        if "steer.prompt_end.cos_delta_caa.max" in r["metrics"]:
            effects.setdefault("read position (t vs t − 1)", []).append(
                abs(
                    r["metrics"]["steer.cos_delta_caa.max"]["value"]
                    - r["metrics"]["steer.prompt_end.cos_delta_caa.max"]["value"]
                )
            )
        effects.setdefault("step rule (SGD vs Adam's first step)", []).append(
            abs(r["metrics"]["steer.cos_delta_caa.max"]["value"] - r["metrics"]["steer.cos_adam_caa.max"]["value"])
        )
    names = {"model": "model", "source": "data source", "stepped": "all weights vs LoRA", "bos": "BOS on/off"}
    order = sorted(((names.get(k, k), max(v)) for k, v in effects.items()), key=lambda item: -item[1])
    text.append(
        "What moves the max over blocks most (largest change along one axis): "
        + "; ".join(f"{n} {fmt(v)}" for n, v in order)
        + "."
    )
    best = max(records, key=lambda r: r["metrics"]["steer.cos_delta_caa.max"]["value"])
    if "steer.at_peak.slope_ratio_delta_caa" in best["metrics"]:
        text.append(
            f"Steering at {best['name']}'s peak block: slope δ̂ : v̂ = "
            f"{c6_entry(best, 'steer.at_peak.slope_ratio_delta_caa')}, "
            f"v̂ {c6_entry(best, 'steer.at_peak.slope.caa')}, δ̂ {c6_entry(best, 'steer.at_peak.slope.delta')}, "
            f"random {c6_entry(best, 'steer.at_peak.slope.random')}, shuffled-label v^π "
            f"{c6_entry(best, 'steer.at_peak.slope.shuffled')}."
        )
    text += steering_reading(records)
    return " ".join(text)


def steers(record: dict, direction: str) -> bool | None:
    """Whether steering along ``direction`` at the peak block moves the margin: its slope's 95%
    interval excludes 0 (None where the run has no interval)."""
    entry = record["metrics"].get(f"steer.at_peak.slope.{direction}", {})
    if "interval" not in entry:
        return None
    low, high = entry["interval"]
    return low > 0 or high < 0


def steering_reading(records: list[dict]) -> list[str]:
    """At each point's peak block: does CAA's own vector steer, and does δ (slope intervals)?"""
    measured = [r for r in records if steers(r, "caa") is not None]
    if not measured:
        return []
    caa = [r["name"] for r in measured if steers(r, "caa")]
    both = [r["name"] for r in measured if steers(r, "caa") and steers(r, "delta")]
    delta_only = [r["name"] for r in measured if steers(r, "delta") and not steers(r, "caa")]
    text = (
        f"At the peak block, CAA's own vector moves the margin (slope interval excluding 0) in {len(caa)} of "
        f"{len(measured)} points{': ' + ', '.join(caa) if caa else ''}; δ does as well in {len(both)}"
        f"{': ' + ', '.join(both) if both else ''}"
    )
    if delta_only:
        text += f", and δ alone in {', '.join(delta_only)}"
    return [text + ". Where v̂ itself does not steer, δ̂ : v̂ says nothing."]


READS = {  # the max over blocks of each read position and step rule a steering run measures
    "steer.cos_delta_caa.max": ("δ at t", "cos_delta_caa"),
    "steer.prompt_end.cos_delta_caa.max": ("δ at t − 1", "cos_delta_caa_prompt_end"),
    "steer.cos_adam_caa.max": ("Adam's first step, δ at t", "cos_adam_caa"),
}


def best_over_reads(records: list[dict]) -> str:
    """The highest cos(δ, v) over every point, read position and step rule, with its interval
    and, at its block, the shuffled-label null's 95th percentile (a cosine below that is what
    labels flipped at random give)."""
    found = [(r["metrics"][key]["value"], r, key) for r in records for key in READS if key in r["metrics"]]
    value, record, key = max(found, key=lambda item: item[0])
    label, curve = READS[key]
    text = f"Over every read position and step rule, the highest is {record['name']} ({label}): {c6_entry(record, key)}"
    per_block, null = record["layers"].get(curve), record["layers"].get("shuffled_p95")
    if per_block and null:
        block = max(range(len(per_block)), key=per_block.__getitem__)
        beats = "above" if per_block[block] > null[block] else "not above"
        text += (
            f", at block {block}, {beats} that block's shuffled-label null (95th percentile {fmt(null[block])}, δ at t)"
        )
    return text + "."


def c6_figures(records: list[dict], out: Path, target: float = 0.58) -> list[tuple[str, str]]:
    import matplotlib.pyplot as plt

    columns = min(4, len(records))
    rows = math.ceil(len(records) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.6 * rows), squeeze=False, sharey=True)
    for ax, r in zip(axes.flat, records):
        layers = r["layers"]
        x = list(range(len(layers["cos_delta_caa"])))
        ax.fill_between(
            x, [-p for p in layers["shuffled_p95"]], layers["shuffled_p95"], color="tab:purple", alpha=0.12
        ) if "shuffled_p95" in layers else None
        (line,) = ax.plot(x, layers["cos_delta_caa"], marker="o", ms=3, label="δ at t")
        if "cos_delta_caa_interval" in layers:
            low, high = zip(*layers["cos_delta_caa_interval"])
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.25)
        if "cos_delta_caa_prompt_end" in layers:
            ax.plot(x, layers["cos_delta_caa_prompt_end"], marker="v", ms=3, label="δ at t − 1")
        ax.plot(x, layers["cos_adam_caa"], ls="--", lw=1, label="Adam δ at t")
        ax.axhline(target, color="k", ls=":", lw=1)
        ax.set_title(r["name"], fontsize=8)
        ax.set_xlabel("block", fontsize=7)
    for ax in list(axes.flat)[len(records) :]:
        ax.axis("off")
    axes[0][0].set_ylabel("cos(δ_ℓ, v_ℓ)")
    axes[0][0].legend(fontsize=6)
    fig.suptitle(
        f"C6: one-step shift against CAA per block (band: 95% bootstrap; purple: shuffled-label p95; dotted: {target})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(out / "c6_layers.png", dpi=110)
    plt.close(fig)
    return [("c6_layers.png", "cos(δ_ℓ, v_ℓ) per block for every point of the map")]


def map_sections(records: list[dict], out: Path, heading: str = "##", link: str = "") -> tuple[list[str], str]:
    """Markdown parts (tables, verdict, figures written into ``out`` and linked as ``link`` +
    name) and the plain-text tables."""
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    c4 = [r for r in records if r["map"] == "c4"]
    c6 = [r for r in records if r["map"] == "c6"]
    text = []
    if c4:
        table = c4_table(c4)
        parts += [
            f"{heading} C4: prefix capture of the recovery displacement",
            "",
            render_markdown(table),
            "",
            f"**Verdict.** {c4_verdict(c4)}",
            "",
        ]
        parts += [item for name, caption in c4_figures(c4, out) for item in (f"![{caption}]({link}{name})", "")]
        text.append(render_text(table))
        cells, lengths = c4_cells(c4), capture_lengths(c4)
        static = c2_table({label: group for label, group in cells.items() if recovered(group)})
        if len(static) > 1:
            parts += [
                f"{heading}# C2: static bases at θ* against a basis at θ_0",
                "",
                "Per recovered cell over its seeds [95% t-interval]: the best of S1–S5 (built at θ*, taken per "
                "seed), S0 (the first recovery steps' preconditioned gradients at θ_0), their paired difference, "
                "P8 and a random basis, all at equal k (loclin.claims.c2).",
                "",
                render_markdown(static),
                "",
            ]
            text.append(render_text(static))
        deciders = decider_table(cells, lengths)
        if len(deciders) > 1:
            parts += [
                f"{heading}# C4 decided: a special prefix or a short recovery",
                "",
                "Per cell and recovery length T (mean over seeds, [95% t-interval] where there are two or more; "
                "differences are paired within runs). Readings and words come from the rules of loclin.claims.c4 "
                "(docs/c4_decided.md).",
                "",
                render_markdown(deciders),
                "",
            ]
            parts += [
                item
                for name, caption in decider_figures(cells, lengths, out)
                for item in (f"![{caption}]({link}{name})", "")
            ]
            text.append(render_text(deciders))
    if c6:
        table = c6_table(c6)
        parts += [
            f"{heading} C6: the one-step activation shift against CAA",
            "",
            render_markdown(table),
            "",
            f"**Verdict.** {c6_verdict(c6)}",
            "",
        ]
        parts += [item for name, caption in c6_figures(c6, out) for item in (f"![{caption}]({link}{name})", "")]
        text.append(render_text(table))
    if c6 and has_power_records(c6):
        table = c7_table(c6)
        parts += [
            f"{heading} C7: does δ̂ steer as well as v̂? Slopes with their nulls and power",
            "",
            "Slopes d margin / dα at α = 0 over the held-out items [95% bootstrap], the null band of 20 random and "
            "20 shuffled-label directions, the paired difference, the smallest slope the items detect at 80% power, "
            "and the ratio only where v̂'s own slope interval excludes 0 (loclin.claims.c7).",
            "",
            render_markdown(table),
            "",
        ]
        text.append(render_text(table))
    c3 = [r for r in records if r["map"] == "c3"]
    if c3:
        table = c3_table(c3)
        parts += [
            f"{heading} C3: drift of the useful basis against the noise ceiling",
            "",
            "r(L): overlap of half-window bases L steps apart ÷ the noise ceiling (mean over seeds [95% t-interval]); "
            "frozen θ: the same run's phase at lr 0 on fresh batches, which cannot drift (loclin.claims.c3).",
            "",
            render_markdown(table),
            "",
            f"**Verdict.** {c3_verdict(c3)}",
            "",
        ]
        parts += [item for name, caption in c3_figures(c3, out) for item in (f"![{caption}]({link}{name})", "")]
        text.append(render_text(table))
    return parts, "\n\n".join(text)


def read_records(path: Path, what: str = "--merge") -> list[dict]:
    """A cells.json: a list of map records, or RunDirError in one line (``what`` names the use)."""
    if not path.is_file():
        raise RunDirError(f"{what}: records file '{path}' not found")
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RunDirError(f"{what}: '{path}' is not valid JSON ({error})") from None
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and r.get("map") in ("c3", "c4", "c6") and isinstance(r.get("metrics"), dict)
        for r in records
    ):
        raise RunDirError(
            f"{what}: '{path}' is JSON but not a map's records (a list of c3/c4/c6 records, as cells.json)"
        )
    return records


def map_verdicts(records: list[dict]) -> dict[str, str]:
    """The verdict paragraph of each claim a map's records hold."""
    verdicts = {}
    c4 = [r for r in records if r["map"] == "c4"]
    c6 = [r for r in records if r["map"] == "c6"]
    if any(not r.get("missing") for r in c4):
        verdicts["C4"] = c4_verdict(c4)
    if c6:
        verdicts["C6"] = c6_verdict(c6)
    c3 = [r for r in records if r["map"] == "c3"]
    if c3:
        verdicts["C3"] = c3_verdict(c3)
    return verdicts


def verdict_changes(before: list[dict], after: list[dict]) -> list[str]:
    """Lines saying how merging changed a published verdict (none where it did not)."""
    old, new = map_verdicts(before), map_verdicts(after)
    return [
        f"[loclin] {claim} verdict changes:\n  before: {old.get(claim, '(none)')}\n  after:  {new.get(claim, '(none)')}"
        for claim in sorted(set(old) | set(new))
        if old.get(claim) != new.get(claim)
    ]


def build_map_report(folder: Path, out: Path, merge: Path | None = None, separate: bool = False) -> str:
    """The map's tables, verdict and figures into ``out``; ``merge``: an earlier cells.json whose
    points this folder does not hold (runs made on another machine) are kept (merge_records). A
    change to the earlier records' verdict is printed, before and after."""
    records = collect(folder)
    if merge is not None:
        earlier = read_records(merge)
        records = merge_records(earlier, records, separate)
        for line in verdict_changes(earlier, records):
            print(line)
    parts, text = map_sections(records, out)
    (out / CELLS_FILE).write_text(json.dumps(records, indent=1))
    (out / "report.md").write_text("\n".join([f"# loclin map report: `{folder}`", "", *parts]))
    return text
