"""Prefix bases, the Krylov quadratic, and Lanczos on Hessian-vector products."""

import numpy as np
import pytest
import torch
from loclin.geometry.hessian import flat_hvp, lanczos_top_eigenpairs
from loclin.geometry.prefix import (
    PREFIX_DETERMINED_PIVOT,
    prefix_capture_and_pivots,
    prefix_capture_curve,
    prefix_capture_curves,
    prefix_capture_from_gram,
    prefix_capture_from_r,
    stacked_r,
)
from loclin.geometry.quadratic import gradient_descent, krylov_basis, power_law_spectrum
from scipy.linalg import orth


def brute_force_capture(rows: np.ndarray, delta: np.ndarray, m: int) -> float:
    basis = orth(rows[:m].T)
    return float(np.sum((basis.T @ delta) ** 2) / np.sum(delta**2))


def test_prefix_capture_matches_separate_orthonormalisation():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(6, 40))
    rows[3] = rows[0] - 2 * rows[1]  # a dependent update adds nothing
    delta = rng.normal(size=40)
    curve = prefix_capture_curve(torch.from_numpy(rows), torch.from_numpy(delta), [1, 2, 3, 4, 5, 6, 8])
    assert 8 not in curve
    for m, value in curve.items():
        assert value == pytest.approx(brute_force_capture(rows, delta, m), abs=1e-10)
    assert curve[4] == pytest.approx(curve[3])


@pytest.fixture(scope="module")
def krylov_toy():
    spectrum = power_law_spectrum(2000)
    offset = torch.randn(2000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return gradient_descent(spectrum, offset, steps=1000)


def test_krylov_toy_prefix_capture_rises_to_the_quoted_values(krylov_toy):
    curve = prefix_capture_curve(krylov_toy.updates, krylov_toy.displacement, [1, 2, 4, 8, 16, 32])
    values = [curve[m] for m in (1, 2, 4, 8, 16, 32)]
    assert all(a < b for a, b in zip(values, values[1:]))
    quoted = [0.06, 0.16, 0.33, 0.76, 0.975, 0.993]  # docs/science.md 7 (one seed of an isotropic start)
    np.testing.assert_allclose(values, quoted, atol=0.06)
    assert krylov_toy.loss_end < 0.05 * krylov_toy.loss_start


def test_krylov_toy_top_hessian_capture_is_tiny(krylov_toy):
    delta = krylov_toy.displacement
    top8 = float(delta[:8].pow(2).sum() / delta.pow(2).sum())  # H = diag(1/i): top eigenvectors are e_1..e_8
    assert top8 < 0.02
    assert 8 / 2000 < 0.01


def test_start_gradient_of_grade_r_is_captured_fully_at_m_equal_r():
    spectrum = power_law_spectrum(300)
    offset = torch.zeros(300, dtype=torch.float64)
    offset[[0, 2, 9, 49, 299]] = torch.tensor([1.0, -2.0, 0.5, 3.0, 1.5], dtype=torch.float64)  # 5 distinct eigenvalues
    run = gradient_descent(spectrum, offset, steps=400, keep=8)
    curve = prefix_capture_curve(run.updates, run.displacement, [4, 5, 8])
    assert curve[4] < 0.99
    assert curve[5] == pytest.approx(1.0, abs=1e-8)


def test_lanczos_matches_dense_eigendecomposition():
    rng = np.random.default_rng(1)
    q = np.linalg.qr(rng.normal(size=(80, 80)))[0]
    eigenvalues = np.concatenate([[9.0, 7.0, 5.0, 4.0], rng.uniform(-1, 1, size=76)])
    dense = torch.from_numpy(q @ np.diag(eigenvalues) @ q.T)
    values, vectors = lanczos_top_eigenpairs(lambda v: (dense @ v.double()).float(), 80, k=4, iterations=60)
    np.testing.assert_allclose(values.numpy(), [9.0, 7.0, 5.0, 4.0], rtol=1e-4)
    overlap = np.abs(vectors.numpy().T @ q[:, :4])
    np.testing.assert_allclose(np.sort(overlap.max(axis=1)), 1.0, atol=1e-3)


def test_hessian_vector_products_match_the_dense_hessian():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    names = [n for n, _ in model.named_parameters()]
    hvp = flat_hvp(model, lambda call, params: ((call(x) - y) ** 2).mean(), names)
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    sizes = [p.numel() for p in model.parameters()]
    shapes = [p.shape for p in model.parameters()]

    def loss_of_flat(theta):
        params = {n: c.view(s) for n, c, s in zip(names, theta.split(sizes), shapes)}
        return ((torch.func.functional_call(model, params, (x,)) - y) ** 2).mean()

    dense = torch.autograd.functional.hessian(loss_of_flat, flat)
    v = torch.randn(flat.numel())
    torch.testing.assert_close(hvp(v), dense @ v, rtol=1e-4, atol=1e-5)
    values, _ = lanczos_top_eigenpairs(hvp, flat.numel(), k=3, iterations=flat.numel())
    np.testing.assert_allclose(
        values.numpy(), np.sort(np.linalg.eigvalsh(dense.double().numpy()))[::-1][:3], rtol=1e-3, atol=1e-5
    )


def numpy_qr_curve(rows: np.ndarray, delta: np.ndarray) -> np.ndarray:
    q = np.linalg.qr(rows.T)[0]
    return np.cumsum((q.T @ delta) ** 2) / (delta @ delta)


def gd_prefix(seed: int, keep: int = 32):
    spectrum = power_law_spectrum(2000)
    offset = torch.randn(2000, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return spectrum, gradient_descent(spectrum, offset, steps=1000, keep=keep)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_gram_route_stays_in_unit_interval_and_agrees_with_qr_where_it_reports(seed):
    _, run = gd_prefix(seed)
    vectors = torch.cat([run.updates, run.displacement[None]])
    from_gram = prefix_capture_from_gram(vectors @ vectors.T).numpy()
    reference = numpy_qr_curve(run.updates.numpy(), run.displacement.numpy())
    reported = ~np.isnan(from_gram)
    assert reported[:5].all() and not reported[12:].any()  # the Krylov prefix is Gram-resolvable only briefly
    assert reported.tolist() == sorted(reported.tolist(), reverse=True)  # a prefix of m's
    assert ((from_gram[reported] >= 0) & (from_gram[reported] <= 1)).all()
    np.testing.assert_allclose(from_gram[reported], reference[reported], rtol=0, atol=1e-6)


def test_gram_route_equals_qr_on_random_prefixes():
    rng = np.random.default_rng(3)
    for _ in range(5):
        rows = rng.normal(size=(16, 500)) * rng.uniform(0.1, 10, size=(16, 1))
        delta = rows[:10].T @ rng.normal(size=10) + 0.3 * rng.normal(size=500)
        vectors = torch.from_numpy(np.vstack([rows, delta]))
        np.testing.assert_allclose(
            prefix_capture_from_gram(vectors @ vectors.T).numpy(), numpy_qr_curve(rows, delta), rtol=0, atol=1e-10
        )


@pytest.mark.parametrize("seed", [0, 1])
def test_r_route_from_row_blocks_equals_qr_of_the_whole_vectors(seed):
    _, run = gd_prefix(seed)
    vectors = torch.cat([run.updates, run.displacement[None]]).T  # D × (M+1)
    r = stacked_r(vectors[i : i + 300] for i in range(0, 2000, 300))
    captures, pivots = prefix_capture_from_r(r)
    rows = run.updates.numpy()
    qr_r = np.linalg.qr(rows.T)[1]
    reference_pivots = np.minimum.accumulate(np.abs(qr_r.diagonal()) / np.linalg.norm(rows, axis=1))
    determined = reference_pivots >= PREFIX_DETERMINED_PIVOT
    assert determined[:9].all() and not determined[10:].any()
    np.testing.assert_allclose(pivots.numpy()[determined], reference_pivots[determined], rtol=1e-4)
    reference = numpy_qr_curve(rows, run.displacement.numpy())
    np.testing.assert_allclose(captures.numpy()[determined], reference[determined], rtol=0, atol=1e-7)
    assert ((captures >= 0) & (captures <= 1)).all()


def test_exact_krylov_basis_is_orthonormal_spans_the_powers_and_holds_a_grade_r_start():
    spectrum, run = gd_prefix(0)
    basis = krylov_basis(lambda v: spectrum * v, run.gradients[0], 6)
    torch.testing.assert_close(basis.T @ basis, torch.eye(6, dtype=torch.float64), atol=1e-13, rtol=0)
    powers = torch.stack([spectrum**j * run.gradients[0] for j in range(6)], 1)
    powers /= powers.norm(dim=0)
    residual = powers - basis @ (basis.T @ powers)  # K_6 holds g, Hg, …, H^5 g
    assert float(residual.norm(dim=0).max()) < 1e-7
    offset = torch.zeros(300, dtype=torch.float64)
    offset[[0, 2, 9, 49, 299]] = torch.tensor([1.0, -2.0, 0.5, 3.0, 1.5], dtype=torch.float64)
    small = power_law_spectrum(300)
    grade5 = krylov_basis(lambda v: small * v, small * offset, 8)
    assert grade5.shape[1] == 5  # K_m stops growing at the grade of g_0


def test_exact_krylov_capture_matches_the_update_prefix_where_that_is_determined():
    spectrum, run = gd_prefix(0)
    curve, pivots = prefix_capture_and_pivots(run.updates, run.displacement, [1, 2, 4, 8, 16, 32])
    for m in (1, 2, 4, 8):
        assert pivots[m] >= PREFIX_DETERMINED_PIVOT
        exact = float(
            (krylov_basis(lambda v: spectrum * v, run.gradients[0], m).T @ run.displacement).pow(2).sum()
            / run.displacement.pow(2).sum()
        )
        assert exact == pytest.approx(curve[m], abs=1e-8)
    assert pivots[16] < PREFIX_DETERMINED_PIVOT and pivots[32] < PREFIX_DETERMINED_PIVOT


def test_one_basis_for_many_displacements_gives_each_curve_and_numpys_projection():
    generator = torch.Generator().manual_seed(3)
    vectors = torch.randn(6, 500, generator=generator)
    displacements = [torch.randn(500, generator=generator), vectors[:2].sum(0), vectors[5] - vectors[4]]
    ms = [1, 2, 4, 6]
    curves = prefix_capture_curves(vectors, displacements, ms)
    assert curves == [prefix_capture_curve(vectors, d, ms) for d in displacements]  # bit for bit
    for d, curve in zip(displacements, curves):
        for m in ms:
            q, _ = np.linalg.qr(vectors[:m].double().numpy().T)
            dn = d.double().numpy()
            assert curve[m] == pytest.approx(np.sum((q.T @ dn) ** 2) / np.sum(dn**2), abs=1e-12)
    assert curves[1][2] == pytest.approx(1.0)  # Δ = u_0 + u_1 lies in P_2
