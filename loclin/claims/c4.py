"""Deciding C4 on interval bounds: is P8 ≥ 0.77, and is the prefix special or needed?

Every rule reads 95% t-intervals over a cell's parent seeds (geometry.intervals.t_interval), of
a run's own numbers or of paired within-run differences, never a mean alone:

- **P8 against 0.77:** *supported* when the lower bound is ≥ 0.77, *refuted* when the upper bound
  is < 0.77, else *undecided*, with the seeds that would decide it at the observed spread
  (:func:`seeds_to_decide`).
- **A short recovery:** the prefix made most of Δ_T (the lower bound of ‖θ_m − θ_0‖ / ‖Δ_T‖
  is > 0.5): cap(P_8, Δ_T) ≈ 1 says only that Δ_T ≈ u_0 + … + u_7.
- **A special prefix:** the lower bound of P8 − (offset blocks' p95) is > 0, the replica's
  P8 lies within P8's interval (another recovery's first 8 updates explain Δ_T as well: the
  prefix, not these very updates), and at most half of Δ_T was made by the prefix (the upper
  bound of the displacement share ≤ 0.5).
- **Every update aligned:** neither, and 8 consecutive updates anywhere capture as much as the
  first 8 (the lower bound of P8 − offset mean ≤ 0).
- **The prefix needed** (the function-space ablations): the recovery inside θ_0 + span(P_8)
  regains at least half of the plain recovery's gain on its lower bound, and the recovery with
  span(P_8) projected out is hurt (the upper bound of acc_outside − acc_plain is < −0.05);
  *not needed* when the projected-out recovery is as good as the plain one (that difference's
  lower bound ≥ −0.05), else *undecided*.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats

from loclin.geometry.intervals import t_interval

PAPER_P8 = 0.77  # arXiv 2606.10929, claim C4: P8 capture of the LoRA recovery displacement
SHORT_SHARE = 0.5  # a prefix that made more than this share of ‖Δ_T‖ is a short recovery
HURT = 0.05  # an accuracy difference (outside − plain) below −HURT is a hurt recovery
INSIDE_SHARE = 0.5  # "inside recovers": it regains at least this share of the plain recovery's gain
MAX_SEEDS = 1000  # seeds_to_decide gives up beyond this


def threshold_verdict(values: Sequence[float], threshold: float = PAPER_P8) -> str:
    """*supported* (lower bound ≥ threshold), *refuted* (upper bound < threshold) or *undecided*."""
    _, low, high = t_interval(values)
    if not math.isnan(low) and low >= threshold:
        return "supported"
    if not math.isnan(high) and high < threshold:
        return "refuted"
    return "undecided"


def seeds_to_decide(values: Sequence[float], threshold: float = PAPER_P8, level: float = 0.95) -> int | None:
    """The smallest n with t_{(1+level)/2, n−1} · s / sqrt(n) < |mean − threshold| at the observed
    mean and standard deviation s (None with fewer than 2 values, a mean on the threshold, or more
    than MAX_SEEDS); n ≤ len(values) only if the values decide already."""
    finite = [float(v) for v in values if not math.isnan(float(v))]
    if len(finite) < 2:
        return None
    mean = sum(finite) / len(finite)
    sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
    gap = abs(mean - threshold)
    if gap == 0:
        return None
    if sd == 0:
        return 2
    for n in range(2, MAX_SEEDS + 1):
        if float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n) < gap:
            return n
    return None


def paired(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Within-run differences a_i − b_i (nan where either is missing)."""
    return [x - y for x, y in zip(a, b)]


def is_short(displacement_share: Sequence[float]) -> bool:
    """The prefix made most of Δ_T: the lower bound of ‖θ_m − θ_0‖ / ‖Δ_T‖ is > SHORT_SHARE."""
    _, low, _ = t_interval(displacement_share)
    return not math.isnan(low) and low > SHORT_SHARE


def is_special(
    p8: Sequence[float], offset_p95: Sequence[float], replica: Sequence[float], displacement_share: Sequence[float]
) -> bool:
    """Lower bound of P8 − offset p95 > 0, the replica's mean P8 within P8's interval, and the
    upper bound of the displacement share ≤ SHORT_SHARE."""
    _, margin_low, _ = t_interval(paired(p8, offset_p95))
    _, low, high = t_interval(p8)
    replica_mean = t_interval(replica)[0]
    _, _, share_high = t_interval(displacement_share)
    return (
        not math.isnan(margin_low)
        and margin_low > 0
        and not math.isnan(replica_mean)
        and low <= replica_mean <= high
        and not math.isnan(share_high)
        and share_high <= SHORT_SHARE
    )


def is_aligned(p8: Sequence[float], offset_mean: Sequence[float]) -> bool:
    """8 consecutive updates anywhere capture as much as the first 8: lower bound of P8 − offset mean ≤ 0."""
    _, low, _ = t_interval(paired(p8, offset_mean))
    return not math.isnan(low) and low <= 0


def describe(
    p8: Sequence[float],
    offset_mean: Sequence[float],
    offset_p95: Sequence[float],
    replica: Sequence[float],
    displacement_share: Sequence[float],
) -> str:
    """The reading of one (cell, T): "short recovery", "special prefix", "every update aligned",
    or "neither" (the prefix beats a typical block but not the rule for special), or "undecided"
    where an interval it needs is missing (one seed, or a null not measured)."""

    def measured(numbers: Sequence[float]) -> bool:
        return len([v for v in numbers if not math.isnan(v)]) >= 2

    if not (measured(p8) and measured(displacement_share)):
        return "undecided"
    if is_short(displacement_share):
        return "short recovery"
    if not (measured(offset_p95) and measured(offset_mean) and measured(replica)):
        return "undecided"
    if is_special(p8, offset_p95, replica, displacement_share):
        return "special prefix"
    if is_aligned(p8, offset_mean):
        return "every update aligned"
    return "neither"


def needed(plain: Sequence[float], inside: Sequence[float], outside: Sequence[float], start: Sequence[float]) -> str:
    """*needed*, *not needed* or *undecided* from held-out accuracies per seed: the plain recovery's,
    the one inside θ_0 + span(P_8), the one with span(P_8) projected out, and θ_0's."""
    gain = t_interval(paired(plain, start))[0]
    _, inside_low, _ = t_interval(paired(inside, start))
    _, out_low, out_high = t_interval(paired(outside, plain))
    if math.isnan(inside_low) or math.isnan(out_low) or math.isnan(gain):
        return "undecided"
    if inside_low >= INSIDE_SHARE * gain and out_high < -HURT:
        return "needed"
    if out_low >= -HURT:
        return "not needed"
    return "undecided"


def combine(words: dict[str, str]) -> str:
    """One word from the words of a system's cells: *supported* / *refuted* when every decided
    cell agrees and none is undecided, *regime-dependent* (naming where it is supported) when both
    are found, else *undecided*."""
    supported = [label for label, word in words.items() if word == "supported"]
    refuted = [label for label, word in words.items() if word == "refuted"]
    if supported and refuted:
        return f"regime-dependent: supported in {'; '.join(supported)}"
    if supported and len(supported) == len(words):
        return "supported"
    if refuted and len(refuted) == len(words):
        return "refuted"
    return "undecided"
