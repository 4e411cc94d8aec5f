"""CountSketch against its dense matrix, its moments, and subspace angles from a sketched window."""

import numpy as np
import pytest
import torch
from loclin.geometry.sketch import CountSketch
from loclin.geometry.subspace import topk_basis
from scipy.linalg import subspace_angles


def test_pieces_chunks_and_exact_groups_equal_the_dense_matrix(monkeypatch):
    import loclin.geometry.sketch as sketch_module

    monkeypatch.setattr(sketch_module, "CHUNK", 7)  # several chunks per parameter
    sizes = {"big": 300, "small": 3, "mid": 97}
    sketch = CountSketch(sizes, sketch_dim=40, seed=3)
    assert [stop - start for start, stop in sketch.blocks.values()] == [30, 1, 10]  # m split by group size
    exact = CountSketch(sizes, sketch_dim=400, seed=3)  # m >= D: every group kept as it is
    torch.testing.assert_close(exact.matrix(), torch.eye(400))
    x = torch.randn(400, generator=torch.Generator().manual_seed(0))
    slices = {"big": (0, 300), "small": (300, 303), "mid": (303, 400)}
    dense = sketch.matrix() @ x
    torch.testing.assert_close(sketch.apply(x, slices), dense, rtol=1e-5, atol=1e-5)
    pieces = [("big", 0, x[:120]), ("big", 120, x[120:300]), ("small", 0, x[300:303]), ("mid", 0, x[303:400])]
    torch.testing.assert_close(sketch.apply_pieces(pieces), dense, rtol=1e-5, atol=1e-5)


def test_inner_products_are_unbiased_with_the_stated_variance():
    dim, m = 2000, 64
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(dim, generator=generator).double(), torch.randn(dim, generator=generator).double()
    y = y + 0.5 * x
    estimates = []
    for seed in range(800):
        sketch = CountSketch({"all": dim}, m, seed=seed)
        estimates.append(
            float(
                sketch.apply(x.float(), {"all": (0, dim)}).double()
                @ sketch.apply(y.float(), {"all": (0, dim)}).double()
            )
        )
    estimates = np.array(estimates)
    exact = float(x @ y)
    variance = (float(x @ x) * float(y @ y) + exact**2 - 2 * float((x**2 * y**2).sum())) / m
    assert abs(estimates.mean() - exact) < 4 * np.sqrt(variance / len(estimates))
    assert estimates.var() == pytest.approx(variance, rel=0.15)


def test_principal_angles_from_sketched_windows_match_scipy_on_dense():
    """Two windows of W = 16 gradients (rank-4 signal that rotates, plus noise) in D = 200,000:
    principal angles between their top-4 bases from m = 32,768 sketch coordinates."""
    dim, window, k, m = 200_000, 16, 4, 32_768
    generator = torch.Generator().manual_seed(2)
    signal = torch.linalg.qr(torch.randn(dim, 6, generator=generator))[0]
    first = signal[:, :4] @ torch.randn(4, window, generator=generator) * 3 + 0.002 * torch.randn(
        dim, window, generator=generator
    )
    second = torch.cat([signal[:, 1:4], signal[:, 5:6]], 1) @ torch.randn(
        4, window, generator=generator
    ) * 3 + 0.002 * torch.randn(dim, window, generator=generator)
    exact = subspace_angles(topk_basis(first.T, k)[0].double().numpy(), topk_basis(second.T, k)[0].double().numpy())
    sketch = CountSketch({"all": dim}, m, seed=0)
    project = lambda window_: torch.stack([sketch.apply(col, {"all": (0, dim)}) for col in window_.T])  # noqa: E731
    sketched = subspace_angles(
        topk_basis(project(first), k)[0].double().numpy(), topk_basis(project(second), k)[0].double().numpy()
    )
    assert np.abs(np.sort(sketched) - np.sort(exact)).max() <= 0.02
    assert np.sort(exact)[-1] > 1.0 and np.sort(exact)[-2] < 0.3  # three shared directions, one replaced
