"""C7 decided: does the one-step shift δ̂ steer about as well as CAA's v̂? Read from steering runs'
records (loclin.reports.maps.records ``c6`` records, which carry the slopes of loclin.protocols.steer.slopes) at the
middle block (``steer.slope.…``) and at the block where cos(δ, v) peaks (``steer.at_peak.slope.…``).

The rule, on bootstrap intervals over held-out items:
- v̂ must steer first: its slope interval excludes 0 and |slope(v̂)| exceeds the null band (the 95th
  percentile of |slope| over the random and the shuffled-label directions). Where it does not, C7
  cannot be read at that block: *undecided*, with the items at which v̂'s measured slope would be
  detected (80% power); where v̂'s slope excludes 0 but not the null band, more items cannot help.
- Then *supported* when the interval of slope(δ̂) / slope(v̂) lies within RATIO_BAND ("about as
  well": within a factor of 2), *refuted* when it lies wholly outside it (or δ̂'s slope interval
  covers 0 while the paired slope(δ̂) − slope(v̂) is below 0), else *undecided*.
"""

from __future__ import annotations

import math

from loclin.reports.tables import fmt

RATIO_BAND = (0.5, 2.0)
BLOCKS = (("", "middle"), ("at_peak.", "peak"))


def entry(record: dict, tag: str, name: str) -> dict:
    return record["metrics"].get(f"steer.{tag}slope.{name}", {})


def bounds(item: dict) -> tuple[float, float]:
    low, high = (item.get("interval") or [math.nan, math.nan])[:2]
    return float(low), float(high)


def null_p95(record: dict, tag: str) -> float:
    values = [entry(record, tag, f"null_{kind}_p95").get("value", math.nan) for kind in ("random", "shuffled")]
    finite = [v for v in values if not math.isnan(v)]
    return max(finite) if finite else math.nan


def caa_steers(record: dict, tag: str) -> bool:
    caa = entry(record, tag, "caa")
    low, high = bounds(caa)
    null = null_p95(record, tag)
    excludes_zero = low > 0 or high < 0
    return excludes_zero and (math.isnan(null) or abs(caa.get("value", 0.0)) > null)


def c7_word(record: dict, tag: str) -> str:
    """The C7 verdict at one block of one run (the module's rule)."""
    if not entry(record, tag, "caa"):
        return "not measured"
    if not caa_steers(record, tag):
        low, high = bounds(entry(record, tag, "caa"))
        if low > 0 or high < 0:
            return "undecided (v̂ steers no more than the random and shuffled-label directions)"
        needed = entry(record, tag, "caa_items_needed").get("value", math.nan)
        shown = f"; n ≈ {int(needed)} items would exclude 0" if needed == needed else ""
        return f"undecided (v̂'s slope interval covers 0{shown})"
    ratio = record["metrics"].get(f"steer.{tag}slope_ratio_delta_caa", {})
    low, high = bounds(ratio)
    if not math.isnan(low):
        if RATIO_BAND[0] <= low and high <= RATIO_BAND[1]:
            return "supported"
        if high < RATIO_BAND[0] or low > RATIO_BAND[1]:
            return "refuted"
    delta_low, delta_high = bounds(entry(record, tag, "delta"))
    difference_high = bounds(entry(record, tag, "delta_minus_caa"))[1]
    if delta_low <= 0 <= delta_high and difference_high < 0:
        return "refuted"
    return "undecided"


def interval_text(item: dict) -> str:
    if not item:
        return "–"
    low, high = bounds(item)
    value = item.get("value", math.nan)
    if isinstance(value, str) or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{fmt(value)} [{fmt(low)}, {fmt(high)}]" if not math.isnan(low) else fmt(value)


def has_power_records(records: list[dict]) -> bool:
    return any(f"steer.{tag}slope.delta_minus_caa" in r["metrics"] for r in records for tag, _ in BLOCKS)


def c7_table(records: list[dict]) -> list[list[str]]:
    """Per run and block: the slopes [95%], the null band, the paired difference, the detectable slope,
    the ratio (or why there is none) and the verdict word."""
    rows = [
        [
            "point",
            "block",
            "items",
            "slope v̂ [95%]",
            "slope δ̂ [95%]",
            "null p95 |slope| (random / shuffled)",
            "δ̂ − v̂ paired [95%]",
            "detectable slope (80%)",
            "δ̂ : v̂ [95%]",
            "C7",
        ]
    ]
    for record in records:
        for tag, block in BLOCKS:
            if f"steer.{tag}slope.delta_minus_caa" not in record["metrics"]:
                continue
            ratio = record["metrics"].get(f"steer.{tag}slope_ratio_delta_caa", {})
            nulls = " / ".join(
                fmt(entry(record, tag, f"null_{k}_p95").get("value", math.nan)) for k in ("random", "shuffled")
            )
            layer = (
                record.get("steered_layer") if tag == "" else record["metrics"].get("steer.peak_layer", {}).get("value")
            )
            rows.append(
                [
                    record["name"],
                    f"{block} ({layer})",
                    str(record.get("heldout_items", "–")),
                    interval_text(entry(record, tag, "caa")),
                    interval_text(entry(record, tag, "delta")),
                    nulls,
                    interval_text(entry(record, tag, "delta_minus_caa")),
                    fmt(entry(record, tag, "caa_detectable").get("value", math.nan)),
                    interval_text(ratio) if "interval" in ratio else ratio.get("reason", "–"),
                    c7_word(record, tag),
                ]
            )
    return rows


def c7_rows(name: str, records: list[dict]) -> list[list[str]]:
    """The scorecard's C7 rows: one per run with the power measurements, its peak block's reading."""
    rows = []
    for record in records:
        tag = "at_peak."
        if f"steer.{tag}slope.delta_minus_caa" not in record["metrics"]:
            continue
        ratio = record["metrics"].get(f"steer.{tag}slope_ratio_delta_caa", {})
        shown = interval_text(ratio) if "interval" in ratio else "no ratio: v̂'s slope interval covers 0"
        words = {block: c7_word(record, t) for t, block in BLOCKS}
        rows.append(
            [
                f"C7: δ̂ steers about as well as v̂ (slope ratio in [{RATIO_BAND[0]}, {RATIO_BAND[1]}])",
                f"{record['model'].removeprefix('asset:')} ({record['source']})",
                "qualitative",
                f"δ̂ : v̂ {shown}; v̂ {interval_text(entry(record, tag, 'caa'))}",
                f"{record.get('heldout_items', '–')} held-out items",
                f"20 + 20 null directions, |slope| p95 {fmt(null_p95(record, tag))}",
                "; ".join(f"{block}: {word}" for block, word in words.items()),
                f"[map {name}](#map-{name})",
            ]
        )
    return rows
