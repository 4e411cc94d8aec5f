"""The C6 steering map: per point, the peak of cos(δ, v) over blocks with its interval, held against the
shuffled-label null of a maximum over blocks; the verdict paragraph (where 0.58 is reached, which axis
moves the peak most, how δ steers there) and the per-block figure.
"""

from __future__ import annotations

import math
from pathlib import Path

from loclin.reports.tables import fmt

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
    from loclin.reports.tables import fmt_entry

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
