"""Drift against the noise ceiling: numpy SVD of the half windows, and streams with known answers."""

import math

import numpy as np
import pytest
import torch
from loclin.callbacks.drift import DriftCallback
from loclin.callbacks.gradient_stream import GradientStream
from loclin.callbacks.gradient_window import GradientWindowCallback
from loclin.callbacks.rolling_basis import RollingBasisCallback
from loclin.geometry.drift import noise_ceiling, plateau_lags

from tests.callbacks.conftest import StepDriver, ToyModule


def test_noise_ceiling_from_the_gram_equals_numpy_svd_of_the_two_half_windows():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(10, 300)) @ np.diag(np.linspace(3, 0.1, 300))
    steps = torch.tensor([7, 2, 9, 4, 0, 5, 1, 8, 3, 6])  # a ring: slot j holds step steps[j]
    gram = torch.from_numpy(rows @ rows.T)
    order = np.argsort(steps.numpy())
    even, odd = rows[order[0::2]], rows[order[1::2]]
    k = 3
    b_even = np.linalg.svd(even.T, full_matrices=False)[0][:, :k]
    b_odd = np.linalg.svd(odd.T, full_matrices=False)[0][:, :k]
    expected = np.sum((b_even.T @ b_odd) ** 2) / k
    assert noise_ceiling(gram, steps, k) == pytest.approx(expected, rel=1e-9)


def test_the_halves_split_is_numpy_svd_of_the_first_and_second_half_in_time():
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(10, 200)) @ np.diag(np.linspace(3, 0.1, 200))
    steps = torch.tensor([7, 2, 9, 4, 0, 5, 1, 8, 3, 6])
    order = np.argsort(steps.numpy())
    first, second = rows[order[:5]], rows[order[5:]]  # steps 0-4 and 5-9
    k = 2
    b_first = np.linalg.svd(first.T, full_matrices=False)[0][:, :k]
    b_second = np.linalg.svd(second.T, full_matrices=False)[0][:, :k]
    expected = np.sum((b_first.T @ b_second) ** 2) / k
    assert noise_ceiling(torch.from_numpy(rows @ rows.T), steps, k, "halves") == pytest.approx(expected, rel=1e-9)


def test_plateau_lags_are_those_at_least_half_the_largest():
    assert plateau_lags([10, 50, 100, 200, 400]) == [200, 400]


D_IN, D_OUT = 40, 10
D = D_IN * D_OUT + D_OUT + 1
WINDOW, K, STRIDE, LAGS = 16, 3, 8, (8, 16, 32, 64, 96)


def drift_driver(split: str | None = None) -> tuple[StepDriver, DriftCallback]:
    """Window, rolling basis and drift on a toy module, fed gradients by hand."""
    torch.manual_seed(0)
    module = ToyModule(D_IN, D_OUT)
    window = GradientWindowCallback(GradientStream(window=WINDOW, sources=["grad"]))
    rolling = RollingBasisCallback(window.stream, "grad", k=K, stride=STRIDE, heldout_lags=(1,))
    drift = DriftCallback(window.stream, rolling.basis, stride=STRIDE, lags=LAGS, split=split)
    return StepDriver(module, [window, rolling, drift], lr=0.0), drift


def drift_of_stream(basis_at, steps: int, seed: int, momentum: float = 0.0, split: str | None = None) -> DriftCallback:
    """g_t = U(t) z_t + noise, z_t ~ N(0, diag(9, 4, 2.25)), noise N(0, 0.05² I); with ``momentum`` β the
    stream is m_t = β m_{t−1} + (1 − β) g_t, as SGD's or Adam's first moment carries each step into the next."""
    driver, drift = drift_driver(split)
    g = torch.Generator().manual_seed(seed)
    scales = torch.tensor([3.0, 2.0, 1.5], dtype=torch.float64)
    carried = torch.zeros(D, dtype=torch.float64)
    for t in range(steps):
        z = scales * torch.randn(K, generator=g, dtype=torch.float64)
        fresh = basis_at(t) @ z + 0.05 * torch.randn(D, generator=g, dtype=torch.float64)
        carried = momentum * carried + (1 - momentum) * fresh
        driver.step(carried.float())
    return drift


def orthonormal_pairs(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    q = torch.linalg.qr(torch.randn(D, 2 * K, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))[0]
    return q[:, :K], q[:, K:]


def test_a_stationary_stream_sits_at_the_ceiling_at_every_disjoint_lag():
    a, _ = orthonormal_pairs(1)
    drift = drift_of_stream(lambda t: a, steps=900, seed=2)
    metrics = drift.summary()["metrics"]
    assert 0.3 < metrics["grad.noise_ceiling"]["value"] < 0.95  # W/2 = 8 noisy samples: well below 1
    for lag in (16, 32, 64, 96):
        assert metrics[f"grad.overlap_ratio_lag{lag}"]["value"] == pytest.approx(1.0, abs=0.05), lag
    assert "grad.overlap_ratio_lag8" not in metrics  # L < W: the windows share vectors
    assert (metrics["grad.half_life_ratio"]["value"], metrics["grad.half_life_ratio"]["bound"]) == (96, "at_least")
    assert metrics["grad.plateau_ratio"]["value"] == pytest.approx(1.0, abs=0.05)


def test_a_stationary_stream_with_momentum_sits_at_the_ceiling_only_when_split_into_first_and_second_halves():
    """Neighbours share momentum, so interleaved halves look alike and their ceiling reads too high:
    a stream that cannot drift would seem to. First and second halves share only the boundary."""
    a, _ = orthonormal_pairs(5)
    ratios = {}
    for split in ("interleaved", "halves"):
        metrics = drift_of_stream(lambda t: a, steps=900, seed=6, momentum=0.9, split=split).summary()["metrics"]
        ratios[split] = [metrics[f"grad.overlap_ratio_lag{lag}"]["value"] for lag in (32, 64, 96)]
    assert all(r == pytest.approx(1.0, abs=0.1) for r in ratios["halves"]), ratios
    assert all(r < 0.85 for r in ratios["interleaved"]), ratios


def test_a_rotating_top_subspace_gives_its_rate_back():
    a, b = orthonormal_pairs(3)
    omega = math.pi / 4 / 64  # the true overlap is cos²(ω L): 1/2 at L = 64
    drift = drift_of_stream(lambda t: math.cos(omega * t) * a + math.sin(omega * t) * b, steps=900, seed=4)
    metrics = drift.summary()["metrics"]
    for lag in (32, 64):
        ratio = metrics[f"grad.overlap_ratio_lag{lag}"]["value"]
        assert math.acos(math.sqrt(min(ratio, 1.0))) / lag == pytest.approx(omega, rel=0.06), lag
    assert metrics["grad.half_life_ratio"]["value"] == pytest.approx(64, rel=0.06)


def test_the_tensorboard_drift_charts_find_the_ceiling_tags_the_callback_logs():
    import re
    from types import SimpleNamespace

    from loclin.callbacks.lag_runs import split_by_lag

    from loclin.runs.tensorboard import drift_layout

    driver, _ = drift_driver()
    logged: set[str] = set()
    driver.trainer.logger = SimpleNamespace(log_metrics=lambda metrics, step: logged.update(metrics))
    driver.trainer.loggers = [driver.trainer.logger]
    for _ in range(120):
        driver.step(torch.randn(D))
    plain, by_lag = split_by_lag(dict.fromkeys(logged, 0.0))  # TensorBoard's tags: a run per lag
    assert sorted(by_lag) == [8, 16, 32] and "drift/grad/half_overlap" in by_lag[16]
    assert "drift/grad/half_overlap" not in by_lag[8]  # lag 8 < W: windows overlap, no disjoint pair
    logged = set(plain) | {tag for tags in by_lag.values() for tag in tags}
    charts = drift_layout(["grad"], ["grad"], ["add"])["drift"]
    band = charts["grad: noise ceiling (running mean ± std)"]
    assert band[0] == "Margin" and set(band[1]) <= logged
    for title in (
        "grad: disjoint half-window overlap and the ceiling",
        "grad: overlap ÷ noise ceiling (the honest drift)",
        "grad: overlap, one line per lag",
    ):
        assert all(any(re.fullmatch(pattern, tag) for tag in logged) for pattern in charts[title][1]), title
