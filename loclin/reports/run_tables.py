"""The tables of finished runs: the headline table over runs (seed means with t-intervals), and one
run's recovery, prefix-basis, capture-against-length, drift and per-task tables."""

from __future__ import annotations

import math
from pathlib import Path

from loclin.callbacks.keys import RECOVERY_PREFIX, RECOVERY_TABLE
from loclin.reports.tables import (
    bound_count,
    fmt,
    fmt_entry,
    fmt_value,
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
