"""The scorecard at the top of docs/results.md: one row per claim and system, each verdict word
computed from interval bounds by a tested rule (loclin.claims.c4), never typed.

Rows come from the published map records (``docs/results/maps/<name>/cells.json``). A claim
that has no rule over its records yet gets its row all the same, saying so, so the table never
reads as if a claim had been tested when it has not.
"""

from __future__ import annotations

import math

from loclin.claims.c1 import c1_rows
from loclin.claims.c2 import c2_rows
from loclin.claims.c3 import c3_rows
from loclin.claims.c4 import PAPER_P8, combine, threshold_verdict
from loclin.claims.c4_table import best_cell, decided_lengths, interval_text, reading, values
from loclin.claims.c5 import c5_rows
from loclin.claims.c7 import c7_rows
from loclin.geometry.intervals import t_interval

PAPER_COS = 0.58  # arXiv 2606.10929, claim C6: cos(δ, v) of the one-step shift and CAA
COLUMNS = ["claim", "system", "paper", "loclin [95%]", "n", "null it is held against", "verdict", "section"]
NOT_YET = {
    "C1": "strong local low-rank task-gradient structure",
    "C2": "static bases miss the recovery direction",
    "C3": "the useful basis drifts within 100 steps",
    "C5": "random search works in high dimension",
    "C7": "the one-step shift steers about as well as CAA",
}


def with_stand_in(claim: str, system: str) -> str:
    """The system, saying what it stands in for where it is not the paper's own."""
    lowered, notes = system.lower(), []
    if claim in ("C1", "C2", "C3", "C4") and "smollm2" in lowered:
        notes.append("stands in for GPT-2 / DistilGPT-2")
    if "qwen2.5-coder" in lowered:
        notes.append("stands in for Qwen2.5-0.5B")
    elif claim == "C7" and ("smollm2" in lowered or "gemma" in lowered):
        notes.append("stands in for Qwen-0.5B")
    if "coqa" in lowered or "bigbench" in lowered:
        notes.append("its yes/no items stand in for BoolQ")
    return f"{system} ({'; '.join(notes)})" if notes else system


def system_of(records: list[dict], name: str) -> str:
    """The model a map was made on, from its records' made_by (the family where no model is named;
    the map's name for records published before they carried made_by)."""
    made = [r.get("made_by") or {} for r in records]
    models = sorted({str(m.get("model") or m.get("family") or f"map {name}").removeprefix("asset:") for m in made})
    return ", ".join(models)


def c4_rows(name: str, cells: dict[str, list[dict]], lengths: list[int]) -> list[list[str]]:
    """Two rows of a C4 map at its whole recovery length T: P8 ≥ 0.77 (the cells' words combined;
    the number of the cell seeds 0–2 choose), and the reading of that cell (special or not)."""
    ts = decided_lengths(cells, lengths)
    if not ts:
        return []
    t = ts[-1]
    key = f"recovery.capture_at_T{t}.P8_updates"
    words = {label: threshold_verdict(values(g, key)) for label, g in cells.items()}
    chosen = best_cell(cells, t, (0, 1, 2))
    group = cells[chosen] if chosen else []
    numbers = values(group, key)
    offsets = values(group, f"recovery.capture_at_T{t}.P8_offset_p95")
    chosen_reading = reading(group, t) if group else "undecided"
    special = {label: reading(g, t) for label, g in cells.items()}
    found = [label for label, word in special.items() if word == "special prefix"]
    decided = all(word != "undecided" for word in special.values())
    special_word = f"supported in {'; '.join(found)}" if found else ("refuted" if decided else "undecided")
    null = t_interval(offsets)[0]
    section = f"[map {name}](#map-{name})"
    seeds = ",".join(str(r["seed"]) for r in group)
    return [
        [
            f"C4: P8 ≥ {PAPER_P8} (T = {t})",
            system_of([r for g in cells.values() for r in g], name),
            f"{PAPER_P8}",
            f"{interval_text(numbers)}, best of {len(cells)} cells: {chosen}",
            f"seeds {seeds}",
            f"offset-block p95 {'–' if math.isnan(null) else f'{null:.3g}'}",
            combine(words),
            section,
        ],
        [
            f"C4: the prefix is special (T = {t})",
            system_of([r for g in cells.values() for r in g], name),
            "first updates capture Δ",
            f"best cell: {chosen_reading}",
            f"{len(cells)} cells",
            "offset blocks, replica, displacement share",
            special_word,
            section,
        ],
    ]


def c6_rows(name: str, records: list[dict]) -> list[list[str]]:
    """One row per model: the maximum over blocks of cos(δ, v) with its bootstrap interval, held
    against 0.58 and against the maximum over blocks of the shuffled-label null."""
    from loclin.reports.maps.c6 import peak_null

    rows = []
    for model in sorted({r["model"] for r in records}):
        points = [r for r in records if r["model"] == model]
        words, best = {}, None
        for r in points:
            entry = r["metrics"].get("steer.cos_delta_caa.max", {})
            low, high = (entry.get("interval") or [math.nan, math.nan])[:2]
            null, of_the_max = peak_null(r)
            above_null = not math.isnan(null) and low > null
            words[r["name"]] = (
                "supported" if low >= PAPER_COS and above_null else "refuted" if high < PAPER_COS else "undecided"
            )
            if best is None or entry.get("value", -1) > best[1].get("value", -1):
                best = (r, entry, null)
        r, entry, null = best
        kind = "max over blocks per draw" if peak_null(r)[1] else "largest per-block (an older record)"
        low, high = (entry.get("interval") or [math.nan, math.nan])[:2]
        rows.append(
            [
                f"C6: cos(δ, v) ≥ {PAPER_COS}",
                model.removeprefix("asset:"),
                f"{PAPER_COS}",
                f"{entry.get('value', math.nan):.3g} [{low:.3g}, {high:.3g}] ({r['name']})",
                f"{len(points)} point{'s' if len(points) != 1 else ''}",
                f"shuffled labels, {kind} p95 {null:.3g}",
                combine(words),
                f"[map {name}](#map-{name})",
            ]
        )
    return rows


def scorecard(maps: dict[str, list[dict]], runs: dict[str, dict] | None = None) -> list[list[str]]:
    """The table: the C4 rows of every map (``name`` → records; cells that recovered), its C6 rows,
    then a row for each claim that has no rule over its records yet."""
    from loclin.reports.maps.c4 import c4_cells, capture_lengths, recovered

    rows = [COLUMNS]
    for name, records in sorted(maps.items()):
        c4 = [r for r in records if r["map"] == "c4"]
        c6 = [r for r in records if r["map"] == "c6"]
        c3 = [r for r in records if r["map"] == "c3"]
        if c3:
            rows += c1_rows(name, c3) + c3_rows(name, c3)
        if c4:  # a cell whose recovery failed says nothing of how a recovery is explained, as in the verdict
            cells = {label: group for label, group in c4_cells(c4).items() if recovered(group)}
            rows += c2_rows(name, system_of(c4, name), cells) + c4_rows(name, cells, capture_lengths(c4))
        if c6:
            rows += c6_rows(name, c6) + c7_rows(name, c6)
    for name, summary in sorted((runs or {}).items()):
        rows += c5_rows(name, summary)
    for row in rows[1:]:
        row[1] = with_stand_in(row[0].split(":")[0], row[1])
    rows[1:] = sorted(rows[1:], key=lambda row: row[0].split(":")[0])  # by claim, C1 … C7; maps in name order
    decided = {row[0].split(":")[0] for row in rows[1:]}
    for claim, statement in NOT_YET.items():
        if claim in decided:
            continue
        rows.append([f"{claim}: {statement}", "–", "–", "–", "–", "–", "not decided by a rule yet", "below"])
    return rows
