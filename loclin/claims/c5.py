"""C5 decided: does random search keep working as the dimension grows? Read from a random-search
run's dimension sweep (``random_search.widths``: one row per trained width, at its last probe point),
or, for a run at one D (a LoRA adapter), from its last probe point (``random_search.points``).

Theorem A (docs/science.md 8): for σ well below σ_lin, ΔL(σε) is N(0, σ²‖g‖²) to first order, so
P(ΔL < 0) → ½ whatever D. At the smallest σ of the grid, each width's P(improve) is a count over
``samples`` perturbations, with its Clopper–Pearson 95% interval (scipy.stats.binomtest):
- *supported* when the interval at the largest D has its lower bound ≥ IMPROVE_FLOOR;
- *refuted* when its upper bound is < IMPROVE_FLOOR;
- else *undecided*, with the perturbations that would decide it at the measured P(improve).
The ES gradient estimate, whose cosine to g falls as sqrt(N / (N + D + 1)), is the contrast shown beside it.
"""

from __future__ import annotations

import math

from scipy import stats

from loclin.reports.tables import fmt

IMPROVE_FLOOR = 0.4  # "works": a random direction still improves the loss this often at the largest D
WIDTHS = "random_search.widths"
POINTS = "random_search.points"


def improve_interval(row: dict) -> tuple[float, float]:
    """The Clopper–Pearson 95% interval of P(ΔL < 0) from its count over ``samples`` draws."""
    n = int(row["samples"])
    interval = stats.binomtest(round(row["p_improve"] * n), n).proportion_ci(0.95, method="exact")
    return float(interval.low), float(interval.high)


def samples_to_decide(p_improve: float, floor: float = IMPROVE_FLOOR, most: int = 10**6) -> int | None:
    """The fewest perturbations whose Clopper–Pearson 95% interval, at the measured P(improve),
    lies wholly on one side of ``floor`` (None at P(improve) = floor, or past ``most``)."""

    def decides(n: int) -> bool:
        low, high = improve_interval({"p_improve": p_improve, "samples": n})
        return low >= floor or high < floor

    if p_improve == floor or not decides(most):
        return None
    low, high = 1, most  # decides(high); bisect to the first n that does
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if decides(middle) else (middle + 1, high)
    return high


def c5_word(rows: list[dict]) -> str:
    if not rows or "samples" not in rows[-1]:
        return "undecided"
    largest = max(rows, key=lambda r: r["dim"])
    low, high = improve_interval(largest)
    if low >= IMPROVE_FLOOR:
        return "supported"
    if high < IMPROVE_FLOOR:
        return "refuted"
    n = samples_to_decide(largest["p_improve"])
    return f"undecided (n ≈ {n:,} perturbations would decide)" if n else "undecided"


def point_row(point: dict) -> dict:
    """A probe point as a width row: P(improve) at its smallest σ, over the ``es.n`` (= samples)
    perturbations both are drawn from, and its ES cosine."""
    smallest = point["fixed"][0]
    return {
        "dim": point["dim"],
        "p_improve": smallest["p_improve"],
        "pred_p_improve": smallest["pred_p_improve"],
        "samples": point["es"]["n"],
        "es_cos": point["es"]["cos"],
        "pred_es_cos": point["es"]["pred_cos"],
    }


def one_dim_rows(name: str, summary: dict) -> list[list[str]]:
    """The C5 row of a run at one D: the rule of the sweep (c5_word) on its last probe point."""
    points = summary.get("curves", {}).get(POINTS) or []
    if not points:
        return []
    row = point_row(max(points, key=lambda p: p["step"]))
    low, high = improve_interval(row)
    return [
        [
            f"C5: random search works in high dimension (P(ΔL < 0) ≥ {IMPROVE_FLOOR} at the largest D)",
            f"{summary.get('family', '?')}, one D = {row['dim']:,}",
            "P(improve) → ½, any D",
            f"P(improve) at D = {row['dim']:,}: {fmt(row['p_improve'])} [{fmt(low)}, {fmt(high)}] "
            f"(theory {fmt(row['pred_p_improve'])})",
            f"{row['samples']} perturbations, one probe point (step {max(p['step'] for p in points)})",
            f"ES cosine {fmt(row['es_cos'])} (theory {fmt(row['pred_es_cos'])})",
            c5_word([row]),
            f"[{name}](#{name})",
        ]
    ]


def c5_rows(name: str, summary: dict) -> list[list[str]]:
    """The scorecard's C5 row of one published random-search run: its dimension sweep, or its one D."""
    rows = sorted(summary.get("curves", {}).get(WIDTHS) or [], key=lambda r: r["dim"])
    if len(rows) < 2:
        return one_dim_rows(name, summary)
    largest = rows[-1]
    shown = fmt(largest["p_improve"])
    if "samples" in largest:
        low, high = improve_interval(largest)
        shown = f"{shown} [{fmt(low)}, {fmt(high)}]"
    orders = math.log10(largest["dim"] / rows[0]["dim"])
    return [
        [
            f"C5: random search works in high dimension (P(ΔL < 0) ≥ {IMPROVE_FLOOR} at the largest D)",
            f"synthetic, D {rows[0]['dim']:,} → {largest['dim']:,} ({orders:.2g} orders)",
            "P(improve) → ½, any D",
            f"P(improve) at D = {largest['dim']:,}: {shown} (theory {fmt(largest['pred_p_improve'])})",
            f"{largest.get('samples', '–')} perturbations a width, {len(rows)} widths",
            f"ES cosine {fmt(largest['es_cos'])} at the largest D against {fmt(rows[0]['es_cos'])} at the smallest",
            c5_word(rows),
            f"[{name}](#{name})",
        ]
    ]
