"""The streaming rolling basis (basis_stride 1): a Gram row per commit and held-out captures from
W-sized products, against numpy SVDs of the same windows."""

import numpy as np
import pytest
import torch
from loclin.geometry.rolling import RollingBasis
from loclin.geometry.window import StreamingWindow, VectorWindow

D, W, K = 300, 6, 3
SLICES = {"first": (0, 170), "second": (170, 300)}


def stream_of(n: int, seed: int = 0) -> torch.Tensor:
    """Rows with a dominant 3-dimensional part that turns slowly, plus noise."""
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(n + 4, D, generator=generator)
    coefficients = torch.randn(n, 3, generator=generator) * torch.tensor([3.0, 2.0, 1.5])
    rows = torch.stack([coefficients[t] @ directions[t // 10 : t // 10 + 3] for t in range(n)])
    return rows + 0.3 * torch.randn(n, D, generator=generator)


def push(window: VectorWindow, vector: torch.Tensor, step: int) -> None:
    window.next_slot().copy_(vector)
    window.commit(step)


def test_streaming_gram_and_products_match_numpy_after_wraparound():
    vectors = stream_of(17)
    window = StreamingWindow(D, W, SLICES, retain=3)
    for step, v in enumerate(vectors):
        push(window, v, step)
    held = window.rows.double().numpy()
    np.testing.assert_allclose(window.gram().numpy(), held @ held.T, rtol=1e-6, atol=1e-5)
    first = held[:, :170]
    np.testing.assert_allclose(window.gram("first").numpy(), first @ first.T, rtol=1e-6, atol=1e-5)
    newest = vectors[16].double().numpy()
    for step in range(16 - W - 2, 17):  # the window (11..16) and the three rows it evicted last
        assert window.products[step] == pytest.approx(float(vectors[step].double().numpy() @ newest), rel=1e-6)
    assert 16 - W - 3 not in window.products


def test_a_discarded_vector_puts_back_the_row_it_overwrote():
    vectors = stream_of(9)
    window = StreamingWindow(D, W, SLICES, retain=2)
    for step, v in enumerate(vectors[:8]):
        push(window, v, step)
    before = window.rows.clone(), window.steps.clone(), window.retired_count
    slot = window.next_slot()
    assert window.next_slot().data_ptr() == slot.data_ptr()  # asked twice, retired once
    slot.fill_(float("nan"))
    window.discard()
    assert torch.equal(window.rows, before[0]) and torch.equal(window.steps, before[1])
    assert window.retired_count == before[2]
    push(window, vectors[8], 9)
    assert window.products[2] == pytest.approx(float(vectors[2].double() @ vectors[8].double()), rel=1e-6)


def numpy_basis(rows: np.ndarray, k: int) -> np.ndarray:
    return np.linalg.svd(rows.T, full_matrices=False)[0][:, :k]


def test_heldout_captures_and_spectrum_at_every_step_match_numpy():
    vectors = stream_of(30, seed=1)
    lags = (1, 2, 4)
    basis = RollingBasis("grad", k=K, stride=1, heldout_lags=lags)
    window = StreamingWindow(D, W, SLICES, retain=basis.horizon)
    basis.window = window
    logs_by_step = {}
    for step, v in enumerate(vectors):
        push(window, v, step)
        logs_by_step[step] = basis.observe(window, step)
    array = vectors.double().numpy()
    for step in range(W - 1 + 4, 30):
        for h in lags:
            b = numpy_basis(array[step - h - W + 1 : step - h + 1], K)
            v = array[step]
            expected = np.sum((b.T @ v) ** 2) / np.sum(v**2)
            assert logs_by_step[step][f"geometry/grad/heldout_capture_h{h}"] == pytest.approx(expected, rel=1e-6)
        s = np.linalg.svd(array[step - W + 1 : step + 1], compute_uv=False)
        energy = np.sum(s[:K] ** 2) / np.sum(s**2)
        assert logs_by_step[step]["geometry/grad/energy_topk"] == pytest.approx(energy, rel=1e-6)
    # B is formed when read, from the newest window, and is orthonormal in float64
    formed = basis.current_basis.double().numpy()
    np.testing.assert_allclose(formed.T @ formed, np.eye(K), atol=1e-6)
    expected_basis = numpy_basis(array[-W:], K)
    np.testing.assert_allclose(np.linalg.svd(formed.T @ expected_basis, compute_uv=False), np.ones(K), atol=1e-5)


def test_streaming_state_round_trip_gives_the_same_next_captures():
    vectors = stream_of(24, seed=2)

    def fresh():
        basis = RollingBasis("grad", k=K, stride=1, heldout_lags=(1, 3))
        window = StreamingWindow(D, W, SLICES, retain=basis.horizon)
        basis.window = window
        return basis, window

    basis, window = fresh()
    for step, v in enumerate(vectors[:15]):
        push(window, v, step)
        basis.observe(window, step)
    clone, clone_window = fresh()
    clone_window.load_state_dict(window.state_dict())
    clone.load_state_dict(basis.state_dict(lambda t, dim: t), lambda t, dim: t)
    for step, v in enumerate(vectors[15:], start=15):
        push(window, v, step)
        push(clone_window, v, step)
        assert clone.observe(clone_window, step) == basis.observe(window, step)
    assert torch.equal(clone.current_basis, basis.current_basis)
