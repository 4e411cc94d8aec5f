"""Random-search theory against closed forms, scipy quadrature, brute force and Monte Carlo."""

import itertools
import math

import numpy as np
import pytest
import torch
from loclin.geometry.random_search import (
    LocalQuadraticLaw,
    es_cosine,
    expected_max_normal,
    expected_min_of_n,
    hutchinson,
    selected_mean,
    subspace_law,
)
from scipy import integrate, stats


def test_m_n_closed_forms_table_and_quadrature():
    assert expected_max_normal(1) == pytest.approx(0.0, abs=1e-12)
    assert expected_max_normal(2) == pytest.approx(1 / math.sqrt(math.pi), abs=1e-10)
    assert expected_max_normal(3) == pytest.approx(3 / (2 * math.sqrt(math.pi)), abs=1e-10)
    for n, table in {2: 0.564, 5: 1.163, 10: 1.539, 30: 2.043, 100: 2.508, 1000: 3.241, 10_000: 3.852}.items():
        assert expected_max_normal(n) == pytest.approx(table, abs=6e-4)  # docs/science.md's table, 3 decimals
    for n in (7, 250, 10**6):
        reference, _ = integrate.quad(
            lambda x, n=n: x * n * stats.norm.pdf(x) * stats.norm.cdf(x) ** (n - 1),
            -12,
            12,
            points=[math.sqrt(2 * math.log(n))],
            limit=400,
        )
        assert expected_max_normal(n) == pytest.approx(reference, abs=1e-8)


def test_m_n_against_simulation_and_its_asymptotics():
    rng = np.random.default_rng(0)
    maxima = rng.standard_normal((20_000, 30)).max(axis=1)
    assert abs(maxima.mean() - expected_max_normal(30)) < 3 * maxima.std() / math.sqrt(len(maxima))
    ratios = [expected_max_normal(n) / math.sqrt(2 * math.log(n)) for n in (10, 10**3, 10**5, 10**8)]
    assert all(r < 1 for r in ratios)  # m_N <= sqrt(2 ln N)
    assert ratios == sorted(ratios) and ratios[-1] > 0.9  # and approaches it


def test_min_of_n_estimators_equal_brute_force_over_all_subsets():
    rng = np.random.default_rng(1)
    scores, values = torch.tensor(rng.standard_normal(9)), torch.tensor(rng.standard_normal(9))
    for n in (1, 3, 9):
        subsets = list(itertools.combinations(range(9), n))
        assert expected_min_of_n(scores, n) == pytest.approx(
            np.mean([min(scores[list(s)]) for s in subsets]), abs=1e-12
        )
        chosen = [values[min(s, key=lambda i: scores[i])] for s in subsets]
        assert selected_mean(scores, values, n) == pytest.approx(float(np.mean(chosen)), abs=1e-12)


@pytest.fixture(scope="module")
def quadratic():
    """An exact quadratic L(θ + δ) − L(θ) = gᵀδ + ½ δᵀHδ with an indefinite H (D = 40)."""
    generator = torch.Generator().manual_seed(3)
    dim = 40
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    eigenvalues = torch.linspace(-0.5, 3.0, dim, dtype=torch.float64)
    hessian = q @ torch.diag(eigenvalues) @ q.T
    gradient = torch.randn(dim, generator=generator, dtype=torch.float64)
    return gradient, hessian


def quadratic_deltas(gradient, hessian, sigma, count, seed):
    eps = torch.randn(count, len(gradient), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return sigma * eps @ gradient + 0.5 * sigma**2 * ((eps @ hessian) * eps).sum(1)


def test_theorem_a_moments_and_best_of_n_on_an_exact_quadratic(quadratic):
    gradient, hessian = quadratic
    law = LocalQuadraticLaw(float(gradient.norm()), float(hessian.trace()), float((hessian**2).sum()))
    for sigma in (0.01, 0.3, 1.5):
        deltas = quadratic_deltas(gradient, hessian, sigma, 200_000, seed=int(sigma * 100))
        mean_se = float(deltas.std()) / math.sqrt(len(deltas))
        assert abs(float(deltas.mean()) - law.mean(sigma)) < 4 * mean_se
        assert float(deltas.var()) == pytest.approx(law.variance(sigma), rel=0.02)
    small = quadratic_deltas(gradient, hessian, 1e-3, 200_000, seed=5)
    assert float((small < 0).double().mean()) == pytest.approx(law.p_improve(1e-3), abs=0.004)  # 3.5 binomial SE
    assert law.p_improve(1e-3) == pytest.approx(0.5, abs=0.005)  # local-linear: P(improve) → ½
    for n in (10, 100):  # linear regime: best of N gains m_N σ ‖g‖, whatever D
        assert expected_min_of_n(small, n) == pytest.approx(law.best_of_n(1e-3, n), rel=0.02)
        assert law.best_of_n(1e-3, n) == pytest.approx(-law.linear_gain(1e-3, n), rel=5e-3)


def test_sigma_star_maximises_the_predicted_gain():
    law = LocalQuadraticLaw(grad_norm=2.0, trace_h=50.0, frob_h_sq=0.0)  # ‖H‖_F term neglected, as in σ*
    n = 100
    grid = np.geomspace(law.sigma_star(n) / 10, law.sigma_star(n) * 10, 2001)
    values = [law.best_of_n(float(s), n) for s in grid]
    assert grid[int(np.argmin(values))] == pytest.approx(law.sigma_star(n), rel=0.01)
    assert min(values) == pytest.approx(-law.gain_star(n), rel=1e-4)
    assert law.sigma_star_numeric(n) == pytest.approx(law.sigma_star(n), rel=0.01)  # the ‖H‖_F term is 0 here
    spread = LocalQuadraticLaw(
        grad_norm=2.0, trace_h=50.0, frob_h_sq=2 * (50.0 / (2 * expected_max_normal(n))) ** 2 * 1.01
    )
    assert math.isnan(spread.sigma_star_numeric(n))  # m_N ‖H‖_F/√2 > ½ tr H: no finite optimum


def test_es_cosine_against_simulation():
    rng = np.random.default_rng(2)
    for dim, n in ((100, 30), (2000, 30), (500, 300)):
        g = rng.standard_normal(dim)
        cosines = []
        for _ in range(300):
            eps = rng.standard_normal((n, dim))
            estimate = (eps @ g) @ eps / n
            cosines.append(estimate @ g / np.linalg.norm(estimate) / np.linalg.norm(g))
        assert np.mean(cosines) == pytest.approx(es_cosine(n, dim), rel=0.05)


def test_hutchinson_and_subspace_law_against_the_dense_hessian(quadratic):
    gradient, hessian = quadratic
    hvp = lambda v: hessian @ v.double()  # noqa: E731
    found = hutchinson(hvp, len(gradient), samples=4000, seed=0)
    assert abs(found["trace"] - float(hessian.trace())) < 4 * found["trace_se"]
    assert abs(found["frob_sq"] - float((hessian**2).sum())) < 4 * found["frob_sq_se"]
    basis, _ = torch.linalg.qr(
        torch.randn(len(gradient), 5, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    )
    law = subspace_law(hvp, basis, gradient)
    projected = basis.T @ hessian @ basis
    assert law.grad_norm == pytest.approx(float((basis.T @ gradient).norm()), rel=1e-9)
    assert law.trace_h == pytest.approx(float(projected.trace()), rel=1e-6)
    assert law.frob_h_sq == pytest.approx(float((projected**2).sum()), rel=1e-6)
    # Proposition C on the quadratic itself: sampling ε = U z has exactly the subspace law's moments
    z = torch.randn(200_000, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    deltas = 0.5 * (z @ basis.T) @ gradient + 0.5 * 0.25 * (((z @ basis.T) @ hessian) * (z @ basis.T)).sum(1)
    assert float(deltas.mean()) == pytest.approx(law.mean(0.5), abs=4 * float(deltas.std()) / math.sqrt(len(deltas)))
    assert float(deltas.var()) == pytest.approx(law.variance(0.5), rel=0.02)
