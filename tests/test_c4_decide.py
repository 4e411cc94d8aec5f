"""The C4 verdict rules (loclin.claims.c4) on constructed per-seed numbers whose intervals are
known by hand, and the progress measurements (geometry.recovery_progress) on hand examples."""

import math

import numpy as np
import pytest
import torch
from loclin.geometry.recovery_progress import (
    cumulative_capture,
    displacement_share,
    offset_block_starts,
    path_share,
    steps_to_recover,
    upper_percentile,
)
from scipy import stats

from loclin.claims.c4 import describe, is_short, is_special, needed, seeds_to_decide, threshold_verdict


def test_p8_verdict_reads_the_interval_bounds_not_the_mean():
    # mean 0.8, sd 0.01, n = 5: half-width t_{0.975,4} · 0.01 / √5 = 2.776 · 0.00447 = 0.0124 → [0.788, 0.812]
    tight = [0.79, 0.80, 0.81, 0.80, 0.80]
    assert threshold_verdict(tight) == "supported"
    assert threshold_verdict([v - 0.1 for v in tight]) == "refuted"  # [0.688, 0.712] < 0.77
    wide = [0.70, 0.90]  # mean 0.8 ≥ 0.77, but n = 2: t = 12.7, the interval is [−0.47, 2.07]
    assert threshold_verdict(wide) == "undecided"
    assert threshold_verdict([0.95]) == "undecided"  # one seed has no interval


def test_seeds_to_decide_is_the_smallest_n_whose_half_width_is_under_the_gap():
    values = [0.70, 0.90]  # mean 0.8, s = 0.1414, gap 0.03
    n = seeds_to_decide(values)
    half = lambda k: stats.t.ppf(0.975, k - 1) * np.std(values, ddof=1) / math.sqrt(k)  # noqa: E731
    assert half(n) < 0.03 <= half(n - 1)
    assert (1.96 * 0.1414 / 0.03) ** 2 < n  # the normal approximation's n (85.3) is a lower bound under t
    assert seeds_to_decide([0.77, 0.77]) is None and seeds_to_decide([0.9]) is None


def test_short_special_aligned_and_neither_on_constructed_cells():
    p8 = [0.80, 0.82, 0.81, 0.79, 0.78]
    low_null = [0.5, 0.52, 0.49, 0.5, 0.51]  # P8 − p95 ≈ 0.3, tight: the prefix beats every block
    replica = [0.80] * 5  # within P8's interval [0.785, 0.817]
    late = [0.3, 0.32, 0.28, 0.31, 0.29]  # the prefix made under a third of ‖Δ_T‖
    early = [0.9, 0.92, 0.88, 0.91, 0.9]
    assert describe(p8, low_null, low_null, replica, early) == "short recovery"
    assert describe(p8, low_null, low_null, replica, late) == "special prefix"
    assert not is_special(p8, low_null, [0.4] * 5, late)  # another recovery's prefix does not explain Δ_T
    same = [v + 0.01 for v in p8]  # 8 consecutive updates anywhere capture as much
    assert describe(p8, same, same, replica, late) == "every update aligned"
    assert describe(p8, low_null, same, replica, late) == "neither"  # beats a typical block, not the p95
    assert describe([0.8], low_null, low_null, replica, late) == "undecided"
    nothing = [math.nan] * 5  # the nulls were not measured: no reading beyond "short"
    assert describe(p8, nothing, nothing, nothing, late) == "undecided"
    assert describe(p8, nothing, nothing, nothing, early) == "short recovery"
    assert is_short([0.6, 0.62]) is False  # n = 2: [0.48, 0.74] reaches below 0.5


def test_needed_when_inside_recovers_and_outside_is_hurt():
    start, plain = [0.3] * 4, [0.95, 0.96, 0.94, 0.95]
    inside = [0.9, 0.92, 0.88, 0.9]  # regains ~0.6 of the plain 0.65
    hurt = [0.5, 0.52, 0.48, 0.5]
    assert needed(plain, inside, hurt, start) == "needed"
    assert needed(plain, inside, plain, start) == "not needed"  # projected out, as good as plain
    assert needed(plain, [0.35, 0.36, 0.34, 0.35], hurt, start) == "undecided"  # inside does not recover
    assert needed(plain[:1], inside[:1], hurt[:1], start[:1]) == "undecided"


def test_progress_measurements_on_hand_examples():
    assert path_share([1.0, 1.0, 2.0, 4.0], 2, 4) == pytest.approx(2 / 8)
    assert path_share([1.0, 1.0, 2.0, 4.0, 100.0], 2, 3) == pytest.approx(2 / 4)  # only t < T counts
    assert displacement_share(torch.tensor([3.0, 0.0]), torch.tensor([3.0, 4.0])) == pytest.approx(3 / 5)
    basis = torch.eye(3)[:, :2]
    assert cumulative_capture(basis, torch.tensor([1.0, 2.0, 2.0])).tolist() == pytest.approx([1 / 9, 5 / 9])
    # accuracy 0.2 at θ_0 and 0.8 at T = 16: half the gain (0.5) first at step 4, 90% (0.74) at step 16
    progress = [(0, 0.2), (1, 0.2), (2, 0.4), (4, 0.55), (8, 0.7), (16, 0.8)]
    assert steps_to_recover(progress, 16, 0.5) == 4 and steps_to_recover(progress, 16, 0.9) == 16
    assert steps_to_recover(progress, 8, 0.9) == 8  # against T = 8's own gain (0.5): 0.65 first at 8
    assert steps_to_recover([(0, 0.5), (4, 0.4)], 4, 0.5) is None  # no gain
    values = [0.1, 0.5, 0.2, 0.9, 0.3]
    assert upper_percentile(values) == pytest.approx(np.percentile(values, 95))


def test_offset_blocks_lie_between_the_prefix_and_t_and_are_seeded():
    assert offset_block_starts(25, 8, 20, 0) == list(range(8, 17))  # all 9 when fewer than 20
    assert offset_block_starts(16, 8, 20, 0) == []  # T ≤ 2m: none fits
    starts = offset_block_starts(200, 8, 20, 3)
    assert len(starts) == 20 == len(set(starts)) and all(8 <= o < 192 for o in starts)
    assert starts == offset_block_starts(200, 8, 20, 3) != offset_block_starts(200, 8, 20, 4)
