"""Summaries of a drift curve, and the noise ceiling it is read against (docs/science.md measurement 4)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from loclin.geometry.subspace import basis_coefficients


def half_life(lags: Sequence[float], values: Sequence[float]) -> tuple[float, str]:
    """Lag at which a decaying curve (an overlap, or overlap ÷ ceiling) first falls to 0.5, from the
    measured lags only.

    Linear interpolation between measured lags; nothing is drawn from lag 0 (whose overlap of 1 is
    true by definition, not measured, and a line from it would invent the crossing). Returns
    ``(value, bound)``: bound "" for an interpolated crossing, "at_most" when the smallest lag
    is already at or below 0.5 (the half-life is then no longer than that lag), "at_least"
    with the largest lag when the curve stays above 0.5 up to it, and ``(nan, "")`` for an
    empty curve.
    """
    points = [(float(lag), float(v)) for lag, v in zip(lags, values) if not math.isnan(v)]
    if not points:
        return float("nan"), ""
    if points[0][1] <= 0.5:
        return points[0][0], "at_most"
    for (lag0, v0), (lag1, v1) in zip(points, points[1:]):
        if v1 <= 0.5:
            return lag0 + (v0 - 0.5) * (lag1 - lag0) / (v0 - v1), ""
    return points[-1][0], "at_least"


# ---------------------------------------------------------------------------------------------
# The noise ceiling (docs/science.md 4): what a non-drifting stream would give at W/2 samples.
#
# The window's vectors, in time order, split into two halves X_e, X_o of disjoint vectors: the even-
# and odd-indexed ones (same time span; for gradients of independent batches), or the first and
# second halves (for updates: momentum makes neighbouring updates alike, so interleaved halves
# would share what one step carries into the next, and the ceiling would read too high). Their
# top-k bases B_e = X_eᵀ C_e, B_o = X_oᵀ C_o follow from the sub-blocks G_ee, G_oo of the window's
# Gram (geometry.subspace.basis_coefficients), and their overlap from G_eo alone:
#
#     ceiling = ‖B_eᵀ B_o‖_F² / k = ‖C_eᵀ G_eo C_o‖_F² / k      (W-sized work, no D-vector)
#
# Drift at lag L >= W then compares half-window bases of two disjoint windows, B_e(s) with
# B_o(s + L): like with like, so overlap(L) / ceiling ≈ 1 for a stationary stream.
# ---------------------------------------------------------------------------------------------


SPLITS = ("interleaved", "halves")


def half_window_slots(steps: torch.Tensor, split: str = "interleaved") -> tuple[torch.Tensor, torch.Tensor]:
    """Slots of the two halves of a full window (``steps``: the step held by each slot): the even-
    and odd-indexed vectors in time order (``interleaved``), or the first and second halves
    (``halves``)."""
    order = torch.argsort(steps)
    if split == "halves":
        return order[: len(order) // 2], order[len(order) - len(order) // 2 :]
    return order[0::2], order[1::2]


def half_window_coefficients(
    gram: torch.Tensor, steps: torch.Tensor, k: int, split: str = "interleaved"
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{"even": (slots, C), "odd": (slots, C)}: B_half = X[slots]ᵀ C, the top-min(k, W/2) basis of
    each half (the first half named "even" and the second "odd" under ``halves``), from sub-blocks
    of the window's Gram."""
    even, odd = half_window_slots(steps, split)
    k_half = min(k, len(odd))
    return {
        name: (slots, basis_coefficients(gram[slots][:, slots], k_half)[0])
        for name, slots in (("even", even), ("odd", odd))
    }


def noise_ceiling(gram: torch.Tensor, steps: torch.Tensor, k: int, split: str = "interleaved") -> float:
    """‖B_eᵀB_o‖_F²/k' between the top-k' bases (k' = min(k, W/2)) of the two halves of one window
    (``split``: :func:`half_window_slots`), computed from its Gram alone."""
    halves = half_window_coefficients(gram, steps, k, split)
    (even, c_even), (odd, c_odd) = halves["even"], halves["odd"]
    rank = max(c_even.shape[1], c_odd.shape[1])
    if rank == 0:
        return float("nan")
    cross = c_even.T @ gram[even][:, odd] @ c_odd
    return float(cross.pow(2).sum()) / rank


def plateau_lags(lags: Sequence[int]) -> list[int]:
    """The largest lags of a ladder, whose mean overlap is the part of the basis that persists:
    every lag >= half the largest (at least the largest one)."""
    if not lags:
        return []
    top = max(lags)
    return [lag for lag in lags if 2 * lag >= top]
