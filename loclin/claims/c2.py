"""C2 decided: do the static bases taken at θ* miss the recovery direction, and does a basis taken at
θ_0 do better? Read from the C4 map's records (loclin.reports.maps.records), per cell over its seeds.

Every static basis S1–S5 (docs/science.md 6) is built at θ*, where the degraded task's gradient is
about 0; S0 is the top-k of the first recovery steps' preconditioned gradients at θ_0 (11). At
equal k, over seeds (95% t-intervals of within-run numbers):
- **best static** = max over S1–S5 of cap(S, Δ), taken per seed (so it favours the static bases);
- *supported* (they miss Δ) when its upper bound is < MISS, *refuted* when its lower bound is
  ≥ MISS, else *undecided*;
- **S0 − best static**, paired within seeds: "S0 matches or beats them" when its lower bound is ≥ 0,
  "S0 below them" when its upper bound is < 0.
"""

from __future__ import annotations

import math

from loclin.claims.c4 import combine, paired
from loclin.claims.c4_table import interval_text
from loclin.geometry.intervals import t_interval
from loclin.reports.tables import fmt

MISS = 0.5  # a basis that captures less than half of ‖Δ‖² misses the recovery direction
STATIC = (
    "S1_task_gradients",
    "S2_mean_gradient_plane",
    "S3_task_vector",
    "S4_rolling_end_of_training",
    "S5_hessian",
)
S0 = "S0_theta0_updates"


def capture(record: dict, name: str) -> float:
    return float(record["metrics"].get(f"recovery.capture.{name}", math.nan))


def best_static(record: dict) -> float:
    values = [capture(record, name) for name in STATIC if not math.isnan(capture(record, name))]
    return max(values) if values else math.nan


def c2_word(group: list[dict]) -> str:
    _, low, high = t_interval([best_static(r) for r in group])
    if not math.isnan(high) and high < MISS:
        return "supported"
    if not math.isnan(low) and low >= MISS:
        return "refuted"
    return "undecided"


def s0_reading(group: list[dict]) -> str:
    difference = paired([capture(r, S0) for r in group], [best_static(r) for r in group])
    _, low, high = t_interval(difference)
    if math.isnan(low):
        return "–"
    if low >= 0:
        return "S0 matches or beats them"
    return "S0 below them" if high < 0 else "no difference resolved"


def c2_table(cells: dict[str, list[dict]]) -> list[list[str]]:
    """Per recovered cell: best static at θ* [95%], S0 at θ_0, their paired difference, P8 and random."""
    rows = [["cell", "seeds", "best of S1–S5 at θ*", "S0 at θ_0", "S0 − best static", "P8", "S7 random", "C2", "S0"]]
    for label, group in cells.items():
        statics, s0 = [best_static(r) for r in group], [capture(r, S0) for r in group]
        rows.append(
            [
                label,
                str(len(group)),
                interval_text(statics),
                interval_text(s0),
                interval_text(paired(s0, statics)),
                interval_text([capture(r, "P8_updates") for r in group]),
                interval_text([capture(r, "S7_random") for r in group]),
                c2_word(group),
                s0_reading(group),
            ]
        )
    return rows


def c2_rows(name: str, system: str, cells: dict[str, list[dict]]) -> list[list[str]]:
    """The scorecard's C2 row of one map: the cells' words combined, and how often S0 matches or beats."""
    if not cells:
        return []
    words = {label: c2_word(group) for label, group in cells.items()}
    readings = [s0_reading(group) for group in cells.values()]
    statics = [best_static(r) for group in cells.values() for r in group]
    return [
        [
            f"C2: static bases at θ* miss the recovery direction (best of S1–S5 captures < {MISS})",
            system,
            "qualitative",
            f"best static, all cells: {fmt(min(statics))}–{fmt(max(statics))}",
            f"{len(cells)} cells",
            f"S0 (a basis at θ_0) matches or beats them in {readings.count('S0 matches or beats them')} of "
            f"{len(cells)} cells" + (f" ({readings.count('–')} with one seed: no interval)" if "–" in readings else ""),
            combine(words),
            f"[map {name}](#map-{name})",
        ]
    ]
