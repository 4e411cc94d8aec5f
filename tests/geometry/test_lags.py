"""The drift ladder against brute-force enumeration of the pairs (s, s + L), s a multiple of L."""

import itertools

import torch
from loclin.callbacks.drift import DriftCallback
from loclin.callbacks.gradient_stream import GradientStream
from loclin.callbacks.gradient_window import GradientWindowCallback
from loclin.callbacks.rolling_basis import RollingBasisCallback
from loclin.geometry.lags import fitting_lags, is_pair, steps_needed

from tests.callbacks.conftest import StepDriver, ToyModule


def brute_force_pairs(lags, window: int, steps: int, stride: int) -> set[tuple[int, int]]:
    """Every (s, t) with a basis at both (window full, a multiple of the stride), t − s a lag L and s % L == 0."""
    have = [t for t in range(steps) if t >= window - 1 and t % stride == 0]
    return {(s, t) for s, t in itertools.combinations(have, 2) if (t - s) in lags and s % (t - s) == 0}


def test_steps_needed_is_the_shortest_phase_with_a_pair():
    for window, lag in itertools.product(range(1, 20), range(1, 30)):
        shortest = next(n for n in range(1, 200) if brute_force_pairs({lag}, window, n, 1))
        assert steps_needed(lag, window) == shortest
    assert fitting_lags([4, 8, 16], window=6, steps=17) == [4, 8]  # 16 needs s = 16, t = 32: 33 steps


def test_the_drift_callback_compares_exactly_the_ladder_pairs():
    lags, stride, window, steps = (4, 6, 10), 2, 4, 70
    torch.manual_seed(0)
    module = ToyModule()
    stream_cb = GradientWindowCallback(GradientStream(window=window, sources=["grad"]))
    rolling = RollingBasisCallback(stream_cb.stream, "grad", k=2, stride=stride, heldout_lags=(1,))
    drift = DriftCallback(stream_cb.stream, rolling.basis, stride=stride, lags=lags)
    driver = StepDriver(module, [stream_cb, rolling, drift], lr=0.0)
    for _ in range(steps):
        driver.step(torch.randn(29))
    compared = {(s, t) for s, t, _ in drift.heatmap}
    assert compared == brute_force_pairs(set(lags), window, steps, stride)
    assert all(is_pair(s, t, t - s) for s, t in compared)
