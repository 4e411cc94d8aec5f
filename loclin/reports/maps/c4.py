"""The C4 map: cells of sweep points (one per setting, over parent seeds), their table of prefix
capture against its controls, and the verdict paragraph (where P8 reaches 0.77, which axis matters).
"""

from __future__ import annotations

import math

from loclin.claims.c4 import PAPER_P8, paired
from loclin.claims.c4_table import decision_text, p8_word, values
from loclin.geometry.intervals import t_interval
from loclin.reports.tables import fmt

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
