"""A run's numbers in words: the headline numbers by their short names, the reading of its geometry
(spectrum, held-out capture, drift against the ceiling) and of its recovery (the prefix against its
controls), as printed at a run's end and written into its report."""

from __future__ import annotations

from loclin.callbacks.keys import RECOVERY_PREFIX, RECOVERY_TABLE
from loclin.reports.run_tables import columns_for
from loclin.reports.tables import (
    fmt,
    fmt_value,
    value,
)

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
