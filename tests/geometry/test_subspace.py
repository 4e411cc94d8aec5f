"""Bases through the Gram matrix against a brute-force numpy SVD and scipy's angles."""

import numpy as np
import pytest
import torch
from loclin.geometry.subspace import (
    GRAM_BLOCK_COLUMNS,
    GRAM_BLOCK_ROWS,
    basis_coefficients,
    basis_from_coefficients,
    blocked_products,
    column_gram,
    orthonormalize,
    reorthonormalize,
    topk_basis,
)
from loclin.geometry.window import VectorWindow
from scipy.linalg import subspace_angles


def low_rank_rows(w: int, d: int, rank: int, noise: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(w, rank, generator=g) @ torch.randn(rank, d, generator=g) + noise * torch.randn(
        w, d, generator=g
    )


@pytest.mark.parametrize("k", [1, 3, 5])
def test_topk_basis_matches_numpy_svd(k):
    rows = low_rank_rows(12, 300, rank=5, noise=0.05, seed=k)
    basis, s = topk_basis(rows, k)
    u, s_ref, _ = np.linalg.svd(rows.double().numpy().T, full_matrices=False)
    assert basis.shape == (300, k)
    np.testing.assert_allclose(basis.T @ basis, np.eye(k), atol=1e-5)
    np.testing.assert_allclose(s.numpy(), s_ref, rtol=1e-4, atol=1e-4)
    assert subspace_angles(basis.double().numpy(), u[:, :k]).max() < 1e-3


def test_topk_basis_of_rank_deficient_window_stops_at_rank():
    rows = low_rank_rows(8, 100, rank=2, noise=0.0, seed=0).double()
    basis, s = topk_basis(rows, 5)
    assert basis.shape[1] == 2
    assert s[2:].max() < 1e-6 * s[0]


def test_orthonormalize_drops_dependent_columns():
    a = torch.randn(50, 3, dtype=torch.float64)
    vectors = torch.cat([a, a[:, :1] + 2 * a[:, 1:2]], dim=1)
    q = orthonormalize(vectors)
    assert q.shape == (50, 3)
    np.testing.assert_allclose(q.T @ q, np.eye(3), atol=1e-12)
    assert subspace_angles(q.numpy(), a.numpy()).max() < 1e-10


def test_window_gram_and_basis_match_brute_force_after_wraparound():
    d, w = 200, 8
    slices = {"first": (0, 120), "second": (120, 200)}
    window = VectorWindow(d, w, slices)
    vectors = low_rank_rows(20, d, rank=4, noise=0.1, seed=3)
    for step, v in enumerate(vectors):
        window.push(v, step)
    last = vectors[-w:].double()
    brute = last @ last.T
    # ring order differs from time order: compare order-free quantities and the slot contents
    held = window.filled_rows().double()
    assert sorted(window.steps.tolist()) == list(range(20 - w, 20))
    np.testing.assert_allclose(window.gram(), held @ held.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(window.gram("first") + window.gram("second"), window.gram(), rtol=1e-12)
    np.testing.assert_allclose(window.singular_values(), np.linalg.svd(last.numpy(), compute_uv=False), rtol=1e-4)
    first = held[:, :120]
    np.testing.assert_allclose(window.gram("first"), first @ first.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        np.sort(np.linalg.eigvalsh(brute.numpy())),
        np.sort(np.linalg.eigvalsh(window.gram().numpy())),
        rtol=1e-4,
        atol=1e-4,
    )
    basis, _ = window.basis(3)
    u = np.linalg.svd(last.numpy().T, full_matrices=False)[0][:, :3]
    assert subspace_angles(basis.double().numpy(), u).max() < 1e-3


def test_window_state_round_trip():
    window = VectorWindow(30, 4)
    for step in range(6):
        window.push(torch.randn(30), step)
    clone = VectorWindow(30, 4)
    clone.load_state_dict(window.state_dict())
    assert clone.count == 6
    assert torch.equal(clone.rows, window.rows)
    assert torch.equal(clone.gram(), window.gram())
    with pytest.raises(ValueError, match="shape"):
        VectorWindow(31, 4).load_state_dict(window.state_dict())


@pytest.mark.parametrize("sharded", [False, True])
def test_reorthonormalize_repairs_an_ill_conditioned_basis(sharded):
    """Columns whose Gram defeats Cholesky-QR: Householder QR, or (sharded: only the reduced k×k
    Gram BᵀB is available) B (BᵀB)^(-1/2) on its non-negligible eigenvalues. Either way an
    orthonormal basis whose span holds the well-conditioned columns (scipy's angles); a reduce
    that is not ``no_reduce`` takes the sharded path in one process."""
    from loclin.geometry.sharded import no_reduce
    from loclin.geometry.subspace import reorthonormalize

    generator = torch.Generator().manual_seed(3)
    q = torch.linalg.qr(torch.randn(500, 4, generator=generator, dtype=torch.float64))[0]
    nearly_dependent = torch.cat([q[:, :3], q[:, 2:3] + 1e-9 * q[:, 3:4]], 1).float()  # BᵀB singular in float32
    fixed = reorthonormalize(nearly_dependent, reduce=(lambda partial: partial) if sharded else no_reduce)
    k = fixed.shape[1]
    torch.testing.assert_close((fixed.T @ fixed).double(), torch.eye(k, dtype=torch.float64), rtol=0, atol=1e-5)
    assert k >= 3 and np.abs(subspace_angles(q[:, :3].numpy(), fixed.double().numpy())).max() < 1e-5


def orthonormality_error(basis: torch.Tensor) -> float:
    """‖BᵀB − I‖_max in float64 (numpy), the independent reference for every refresh path."""
    b = basis.double().numpy()
    return float(np.abs(b.T @ b - np.eye(b.shape[1])).max())


def test_an_orthonormal_basis_at_large_d_is_kept_as_is_and_its_gram_is_float64_accurate():
    """A refresh's basis B = (CᵀX)ᵀ at D = 2e6 is orthonormal to ~1e-7 in float64, but one
    float32 product BᵀB over all its rows (one thread) is off by ~2e-5, above the 1e-5
    tolerance: the basis looked broken and was re-orthonormalised on every refresh (a triangular
    solve, a recheck, a Householder QR). Blocked, BᵀB matches numpy's float64 to 1e-6, and the
    basis comes back untouched."""
    from loclin.geometry.subspace import basis_coefficients, column_gram, reorthonormalize

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(0)
        rows = torch.randn(32, 2_000_000, generator=generator) * torch.logspace(0, -2, 32)[:, None]
        coeff, _ = basis_coefficients(rows.double() @ rows.double().T, 8)
        basis = (coeff.float().T @ rows).T
        assert orthonormality_error(basis) < 1e-6
        b = basis.double().numpy()
        assert np.abs(column_gram(basis).numpy() - b.T @ b).max() < 1e-6
        assert reorthonormalize(basis) is basis
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("path", ["kept", "cholesky", "householder", "sharded"])
def test_every_refresh_path_returns_a_basis_orthonormal_in_float64(path):
    """Each branch of reorthonormalize: an orthonormal input (kept), a slightly skewed one
    (Cholesky-QR), a nearly dependent one alone and sharded (Householder QR; the k×k eigen
    path). The output is orthonormal to 1e-4 measured in float64 (a float32 QR of n = 2e5 rows is
    good to about sqrt(n)·2⁻²⁴ ≈ 3e-5, the exact figure set by the BLAS's blocking, so by the thread
    count; the nearly dependent input is off by ~1) and spans the input's span."""
    from loclin.geometry.sharded import no_reduce
    from loclin.geometry.subspace import reorthonormalize

    generator = torch.Generator().manual_seed(11)
    q = torch.linalg.qr(torch.randn(200_000, 6, generator=generator, dtype=torch.float64))[0]
    if path == "kept":
        basis = q.float()
    elif path == "cholesky":
        basis = (q @ (torch.eye(6, dtype=torch.float64) + 1e-3 * torch.randn(6, 6, generator=generator))).float()
    else:
        basis = torch.cat([q[:, :5], q[:, 4:5] + 1e-9 * q[:, 5:6]], 1).float()
    reduce = (lambda partial: partial) if path == "sharded" else no_reduce
    fixed = reorthonormalize(basis, reduce=reduce)
    assert orthonormality_error(fixed) < 1e-4
    span = q[:, :5].numpy() if path in ("householder", "sharded") else q.numpy()
    assert np.abs(subspace_angles(span, fixed.double().numpy())).max() < 1e-4
    assert (fixed is basis) == (path == "kept")


def test_all_finite_answers_as_a_float64_sum_does_even_where_float32_overflows():
    from loclin.geometry.subspace import all_finite

    huge = torch.full((4,), 3e38)  # finite in float32; their float32 sum overflows to inf
    assert not torch.isfinite(huge.sum()) and all_finite([huge])
    assert all_finite([torch.randn(1000), torch.randn(3, 3)]) and all_finite([])
    for bad in (float("nan"), float("inf"), -float("inf")):
        poisoned = torch.randn(1000)
        poisoned[517] = bad
        assert not all_finite([torch.randn(10), poisoned]), bad
    cancelling = torch.tensor([3e38, 3e38, -3e38, -3e38])  # float32 partial sums hit inf, then inf − inf
    assert all_finite([cancelling]) == bool(torch.isfinite(cancelling.double().sum()))


def test_dirty_gram_rows_in_blocks_match_numpy_float64_and_stay_exact_below_one_block():
    """The Gram rows of the vectors new since the last refresh, X[dirty] Xᵀ: over several blocks
    of columns they match numpy's float64 product to 1e-7 relative (closer than one float32
    product over all columns); within one block they are that float32 product, bit for bit."""
    from loclin.geometry.window import GRAM_BLOCK_COLUMNS, dirty_gram_rows

    generator = torch.Generator().manual_seed(2)
    dirty = torch.tensor([1, 4, 6])
    wide = torch.randn(8, 5 * GRAM_BLOCK_COLUMNS + 123, generator=generator)
    reference = wide.double().numpy()[[1, 4, 6]] @ wide.double().numpy().T
    blocked = dirty_gram_rows(wide, dirty).numpy()
    assert np.abs(blocked - reference).max() / np.abs(reference).max() < 1e-7
    narrow = wide[:, :GRAM_BLOCK_COLUMNS]
    assert torch.equal(dirty_gram_rows(narrow, dirty), (narrow[dirty] @ narrow.T).double())


def test_blocked_products_in_float64_blocks_match_numpy_and_float64_inputs_stay_float64():
    """float64 blocks (the per-task probe's Gram) match numpy's float64 product to 1e-13 relative, as
    do float64 inputs at the default float32 precision (they are never rounded to float32); rows
    gathered block by block (``select``: a ring's wrapped slots) match it to float32 block round-off."""
    from loclin.geometry.subspace import GRAM_BLOCK_COLUMNS, blocked_products

    generator = torch.Generator().manual_seed(3)
    wide = torch.randn(6, 3 * GRAM_BLOCK_COLUMNS + 7, generator=generator)
    reference = wide.double().numpy() @ wide.double().numpy().T
    for product in (
        blocked_products(wide, wide, GRAM_BLOCK_COLUMNS, torch.float64),
        blocked_products(wide.double(), wide.double(), GRAM_BLOCK_COLUMNS),
    ):
        assert np.abs(product.numpy() - reference).max() / np.abs(reference).max() < 1e-13
    assert np.abs(blocked_products(wide, wide, GRAM_BLOCK_COLUMNS).numpy() - reference).max() > 1e-9  # float32 blocks
    wrapped = [4, 5, 0, 1]
    selected = blocked_products(wide, wide, GRAM_BLOCK_COLUMNS, select=torch.tensor(wrapped)).numpy()
    assert np.abs(selected - reference[wrapped]).max() / np.abs(reference).max() < 1e-6


@pytest.mark.parametrize("dim,k", [(3 * GRAM_BLOCK_ROWS + 123, 8), (GRAM_BLOCK_ROWS // 2, 3), (2 * GRAM_BLOCK_ROWS, 5)])
def test_the_basis_formed_in_blocks_is_the_product_at_once_bit_for_bit_and_checked_on_its_own_gram(dim, k):
    """B = Xᵀ C formed in column_gram's blocks, its BᵀB taken on the way, is the same bits as the
    product at once followed by column_gram; and it is orthonormal against numpy's float64 product."""
    torch.manual_seed(dim)
    rows = torch.randn(16, dim)
    coefficients, _ = basis_coefficients(blocked_products(rows, rows, GRAM_BLOCK_COLUMNS, torch.float64), k)
    formed = basis_from_coefficients(rows, coefficients)
    at_once = (coefficients.T.to(rows.dtype) @ rows).T
    if (column_gram(at_once) - torch.eye(k, dtype=torch.float64)).abs().max() <= 1e-5:  # kept as is
        assert torch.equal(formed, at_once)
    else:
        assert torch.equal(formed, reorthonormalize(at_once))
    b = formed.double().numpy()
    np.testing.assert_allclose(b.T @ b, np.eye(k), atol=1e-5)


def per_block_loop(a: torch.Tensor, b: torch.Tensor, select: torch.Tensor | None, block: int = 4096) -> torch.Tensor:
    """The blocked products as the docstring states them: each block of a's (selected) rows and of b
    taken as its own float32 product, the products added one after another in float64 from zero."""
    total = torch.zeros(a.shape[0] if select is None else len(select), b.shape[0], dtype=torch.float64)
    for start in range(0, a.shape[1], block):
        a_block = a[:, start : start + block] if select is None else a[select, start : start + block]
        b_block = a_block if b is a and select is None else b[:, start : start + block]
        total += (a_block @ b_block.T).double()
    return total


@pytest.mark.parametrize("dim", [3 * 4096, 4608, 100_003, 100_016, 404_736])
def test_the_batched_blocked_products_are_the_per_block_loop_bit_for_bit(dim):
    from loclin.geometry.subspace import blocked_products, contiguous_rows

    generator = torch.Generator().manual_seed(dim)
    window, other = torch.randn(12, dim, generator=generator), torch.randn(5, dim, generator=generator)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the configs run (trainer.cpu_threads: 1): the BLAS splits work by thread count
    try:
        for select in (None, torch.arange(2, 8), torch.arange(12), torch.tensor([11, 0, 1])):
            for b in (window, other):
                assert torch.equal(blocked_products(window, b, 4096, select=select), per_block_loop(window, b, select))
    finally:
        torch.set_num_threads(threads)
    aligned = dim % 16 == 0
    assert (contiguous_rows(window, torch.arange(2, 8)) is not None) == aligned  # the batched path is taken
    assert contiguous_rows(window, torch.tensor([11, 0, 1])) is None
