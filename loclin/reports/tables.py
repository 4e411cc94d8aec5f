"""Formatting of loclin's tables: numbers, metric entries with their intervals, and rows as
aligned text or Markdown. The leaf every report imports (it imports no report)."""

from __future__ import annotations

import math


def value(summary: dict, name: str) -> float:
    entry = summary["metrics"].get(name)
    if entry is None:
        return float("nan")
    return float(entry["value"])  # "inf" and "nan" are stored as strings and parse back


BOUND_PREFIX = {"at_most": "≤ ", "at_least": "≥ "}


def fmt_value(summary: dict, name: str) -> str:
    """A run's metric as a table cell: its value, "≤ 50" / "≥ 400" when it is a bound, "–" when absent."""
    entry = summary["metrics"].get(name)
    return "–" if entry is None else bound_prefix(entry) + fmt(float(entry["value"]))


def bound_prefix(entry: dict) -> str:
    """ "≤ " / "≥ " for a one-sided value ("" for an infinite one, which says so itself)."""
    return "" if math.isinf(float(entry["value"])) else BOUND_PREFIX.get(entry.get("bound", ""), "")


BOUND_READING = (
    "A half-life written ≤ L is a bound, not a fast drift: the overlap was already below half at L, the smallest "
    "lag measured, so the half-life is somewhere in (0, L]. ≥ L: the overlap stayed above half at every lag up to L."
)


def bound_reading(rows: list[list[str]]) -> str:
    """The reading of a table's bounds, where a cell of ``rows`` holds one ("" otherwise)."""
    cells = [cell for row in rows[1:] for cell in row]
    return BOUND_READING if any(cell.startswith(("≤ ", "≥ ")) or " ≤ " in cell for cell in cells) else ""


def bound_count(summaries: list[dict], name: str) -> int:
    """How many of ``summaries`` hold ``name`` only as a bound (a half-life beyond the measured lags)."""
    return sum(bool(s["metrics"].get(name, {}).get("bound")) for s in summaries)


def fmt(x: float) -> str:
    if math.isnan(x):
        return "–"
    if math.isinf(x):
        return "inf"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def fmt_entry(entry: dict | None) -> str:
    """A metric entry with its interval: "0.54 [0.41, 0.63]" (95% interval), or its spread over
    draws "0.12 ± 0.03"; bounds say so ("≤ 50")."""
    if entry is None:
        return "–"
    text = fmt(float(entry["value"]))
    bound = bound_prefix(entry)
    if "interval" in entry:
        low, high = entry["interval"]
        text += f" [{fmt(float(low))}, {fmt(float(high))}]"
    elif "spread" in entry and "std" in entry["spread"]:
        text += f" ± {fmt(float(entry['spread']['std']))}"
    return bound + text


def render_text(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)
