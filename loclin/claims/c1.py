"""C1 decided: is there a strong local low-rank structure in the task gradients? Read from the C3
map's records (loclin.claims.c3: several seeds of one system, each its first phase's numbers).

A rolling top-k basis B_t of the last W gradients (docs/science.md 1 and 3), over seeds (95%
t-intervals):
- held-out capture cap(B_t, g_{t+1}) of the next gradient, not in the window, against a random
  k-subspace's k/D;
- top-k energy of the window against k/W, what k of W isotropic directions would hold.
*supported* when the held-out capture's lower bound is ≥ STRONG · k/D and the energy's lower bound is
> k/W; *refuted* when the held-out capture's upper bound is < STRONG · k/D; else *undecided*.
"""

from __future__ import annotations

import math

from loclin.claims.c3 import c3_systems, interval_text, series
from loclin.geometry.intervals import t_interval
from loclin.reports.tables import fmt

STRONG = 100  # "strong": two orders of magnitude above a random k-subspace


def c1_word(group: list[dict]) -> str:
    window, k = group[0].get("window") or 0, group[0].get("k") or 0
    chance = float(group[0]["metrics"].get("grad.random_capture", math.nan))
    _, low, high = t_interval(series(group, "grad.heldout_capture_h1"))
    _, energy_low, _ = t_interval(series(group, "grad.energy_topk"))
    if math.isnan(low) or math.isnan(chance) or not window or not k:
        return "undecided"
    if low >= STRONG * chance and energy_low > k / window:
        return "supported"
    return "refuted" if high < STRONG * chance else "undecided"


def c1_rows(name: str, records: list[dict]) -> list[list[str]]:
    """The scorecard's C1 row of each system in a C3 map that kept the spectrum's numbers."""
    rows = []
    for system, group in c3_systems(records).items():
        if "grad.heldout_capture_h1" not in group[0]["metrics"]:
            continue
        chance = float(group[0]["metrics"].get("grad.random_capture", math.nan))
        k, window = group[0].get("k") or math.nan, group[0].get("window") or math.nan
        rows.append(
            [
                f"C1: strong local low-rank gradient structure (held-out capture ≥ {STRONG}·k/D)",
                system,
                "qualitative",
                f"held-out capture {interval_text(series(group, 'grad.heldout_capture_h1'))}, "
                f"top-{k} energy {interval_text(series(group, 'grad.energy_topk'))}",
                f"seeds {','.join(str(r['seed']) for r in group)}",
                f"random k-subspace k/D = {fmt(chance)}; k/W = {fmt(k / window)}",
                c1_word(group),
                f"[map {name}](#map-{name})",
            ]
        )
    return rows
