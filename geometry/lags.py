"""The drift ladder (docs/science.md 4): which pairs of rolling bases are compared at which lag, which
bases must be kept for later pairs, and which lags a phase is long enough for. Plain integers, no
torch, so config validation checks lags with the same rule the callbacks and the quadratic
experiment measure with.

Lag L is sampled at the pairs (s, s + L) with s a multiple of L: short lags get many pairs, long
lags fewer but disjoint ones, and a basis at s is kept only while some lag still needs it, so at
most len(lags) + 1 bases are held whatever the largest lag. A basis exists once the window of W
vectors is full, at step W − 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def is_pair(s: int, t: int, lag: int) -> bool:
    """Does the ladder compare the basis at step s with the one at step t at ``lag``?"""
    return t - s == lag and s % lag == 0


def still_needed(s: int, now: int, lags: Iterable[int]) -> bool:
    """Is the basis of step s still waiting, at step ``now``, for a later partner at some lag?"""
    return any(s % lag == 0 and now - s < lag for lag in lags)


def steps_needed(lag: int, window: int) -> int:
    """Steps a phase needs for one pair at ``lag``: the first multiple of L at which the window is
    full, s = ⌈(W − 1)/L⌉·L, and its partner s + L, counted from step 0."""
    return -(-(window - 1) // lag) * lag + lag + 1


def fitting_lags(lags: Sequence[int], window: int, steps: int) -> list[int]:
    """The lags of ``lags`` that have at least one pair in a phase of ``steps`` steps."""
    return [lag for lag in lags if steps_needed(lag, window) <= steps]
