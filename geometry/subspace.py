"""Orthonormal bases of spans of vectors, computed through the small Gram matrix.

A window holds W vectors of dimension D (W << D) as the rows of X ∈ R^{W×D}. Its top-k left
singular vectors (as columns of B ∈ R^{D×k}) follow from the W×W Gram X Xᵀ = V Λ Vᵀ:

    s_i = sqrt(λ_i),    B = Xᵀ V_k diag(1/s_k)

so no D×D (or D×W SVD) is ever formed. The eigen-decomposition runs in float64.
"""

from __future__ import annotations

import torch
from loclin.geometry.sharded import Reduce, no_reduce

# Singular values below this fraction of the largest are treated as zero (rank deficiency).
RELATIVE_RANK_TOL = 1e-6


def finite_rows(rows: torch.Tensor) -> torch.Tensor:
    """The rows of ``rows`` (n×D) with no NaN or inf: what every measurement takes in, so one
    poisoned gradient or update is left out instead of turning the whole measurement into NaN."""
    return rows[torch.isfinite(rows).all(dim=1)]


def all_finite(tensors: list[torch.Tensor], reduce: Reduce = no_reduce) -> bool:
    """Whether no tensor has a NaN or inf (this rank's parts, ``reduce`` summing over ranks).

    One pass: a NaN or inf anywhere makes a sum non-finite. The sums are float32 (10× faster than
    float64 on a CPU); only when one is not finite are they redone in float64, where finite
    entries cannot overflow, so the answer is always the float64 sums'. Every rank takes the
    same branch: the float32 sums are reduced first. (``torch.isfinite(t).all()`` would write a
    bool per entry.)"""
    if not tensors:
        return True
    if torch.isfinite(reduce(torch.stack([t.sum(dtype=torch.float32) for t in tensors]))).all():
        return True
    return bool(torch.isfinite(reduce(torch.stack([t.sum(dtype=torch.float64) for t in tensors]))).all())


def orthonormalize(vectors: torch.Tensor) -> torch.Tensor:
    """Orthonormal basis (D×r, columns) of span of the columns of ``vectors`` (D×m), by QR.

    Columns that are (numerically) in the span of earlier ones are dropped, so r <= m.
    """
    if vectors.ndim == 1:
        vectors = vectors[:, None]
    q, r = torch.linalg.qr(vectors, mode="reduced")
    diag = r.diagonal().abs()
    if diag.numel() == 0:
        return q[:, :0]
    keep = diag > RELATIVE_RANK_TOL * diag.max().clamp_min(torch.finfo(r.dtype).tiny)
    return q[:, keep]


def gram_eigh(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Singular values (descending) and right singular vectors of X from its Gram X Xᵀ.

    Returns ``(s, V)`` with ``s`` of shape (W,) and ``V`` (W×W), columns ordered like ``s``.
    Negative round-off eigenvalues are clipped to zero.
    """
    evals, evecs = torch.linalg.eigh(gram.to(torch.float64))
    order = torch.argsort(evals, descending=True)
    s = evals[order].clamp_min(0.0).sqrt()
    return s, evecs[:, order]


def blocked_products(
    a: torch.Tensor, b: torch.Tensor, block: int, precision=torch.float32, select: torch.Tensor | None = None
) -> torch.Tensor:
    """a bᵀ (n×m, float64) of a (n×D) and b (m×D): products over blocks of ``block`` of the D
    coordinates, each in ``precision``, summed in float64. With ``select``, a's rows ``select``
    only (a[select] bᵀ).

    One float32 product over all D coordinates carries round-off growing with D (4e-5 for an
    orthonormal BᵀB at D = 4.6e6, above reorthonormalize's 1e-5 tolerance) and, for a few rows
    against a wide window, runs well below the window-read rate on a CPU. float32 blocks keep
    float32 speed with each block's error at ~1e-7. float64 blocks convert one block at a time
    (in cache): float64 accuracy at 2.3× the speed of a float64 copy of the rows, which reads and
    writes 3× the bytes. ``select`` is gathered one block at a time too: a gathered n×D copy is a
    fresh allocation whose first writes fault in new pages (twice the product's own time at
    D = 4.6e6). Up to ``block`` coordinates (or for float64 inputs) it is one product,
    ``(a[select].to(precision) @ b.to(precision)ᵀ).double()``; float64 inputs stay float64.
    Row-major float32 rows (a window's, whole or a run of them) take every block in one batched
    product (:func:`batched_block_products`): the loop's numbers bit for bit on one CPU thread, at a
    third less time."""
    if a.dtype == torch.float64:
        precision = torch.float64
    if a.dtype == torch.float64 or a.shape[1] <= block:
        a_part = a if select is None else a[select]
        return (a_part.to(precision) @ b.to(precision).T).double()
    rows = a if select is None else contiguous_rows(a, select)
    row_major = rows is not None and rows.stride(1) == 1 and b.stride(1) == 1  # a window, not a basis's Bᵀ
    if precision == torch.float32 and a.dtype == torch.float32 and b.dtype == torch.float32 and row_major:
        return batched_block_products(rows, b, block, gathered=select is not None)
    total = torch.zeros(a.shape[0] if select is None else len(select), b.shape[0], dtype=torch.float64)
    for start in range(0, a.shape[1], block):
        stop = start + block
        a_block = a[:, start:stop] if select is None else a[select, start:stop]
        a_block = a_block.to(precision)
        b_block = a_block if b is a and select is None else b[:, start:stop].to(precision)
        total += (a_block @ b_block.T).double()
    return total


def contiguous_rows(a: torch.Tensor, select: torch.Tensor) -> torch.Tensor | None:
    """a[select] as a view, when ``select`` is a run of consecutive rows (a window's newest rows
    usually are) starting on 64 bytes with a row length of a multiple of 16 floats; else None.
    The loop gathers each block of those rows into a fresh (64-byte aligned) copy, and the CPU's
    BLAS rounds an unaligned block differently (measured: D = 100,003 differs in the last bits, D =
    404,736 does not), so only aligned views give the loop's bits."""
    if len(select) == 0 or a.stride(1) != 1 or a.stride(0) % 16:
        return None
    first = int(select[0])
    if not torch.equal(select.cpu(), torch.arange(first, first + len(select))):
        return None
    rows = a[first : first + len(select)]
    return rows if rows.data_ptr() % 64 == 0 else None


def batched_block_products(a: torch.Tensor, b: torch.Tensor, block: int, gathered: bool = False) -> torch.Tensor:
    """The float32 path of :func:`blocked_products` in one batched product: the whole blocks of a
    and b are strided views (no copy), ``bmm`` takes every block's float32 a bᵀ at once, and a
    float64 cumulative sum over the blocks adds them in the loop's order, from zero. The last,
    partial block is laid out as the loop lays it (``gathered``: a's rows were gathered, so its
    block is a contiguous copy), so the result is the loop's bit for bit on one CPU thread. With
    more threads the BLAS splits a selected block's product by thread count, in the loop as here
    but not alike, and a CUDA cumsum adds in a tree: the same numbers to float32 round-off.

    One call instead of three per block (1,124 blocks at D = 4.6e6). Its temporaries are 20 bytes
    per block and product entry (the float32 products, their float64 copy, its cumulative sum):
    8.6 MiB for 10 × 40 rows at D = 4.6e6, against the window's 702 MiB."""
    whole = a.shape[1] // block * block
    a_blocks = a[:, :whole].view(a.shape[0], -1, block).transpose(0, 1)
    b_blocks = b[:, :whole].view(b.shape[0], -1, block).transpose(0, 1)
    parts = torch.bmm(a_blocks, b_blocks.transpose(1, 2)).double()
    if whole < a.shape[1]:
        a_last = a[:, whole:].contiguous() if gathered else a[:, whole:]
        b_last = a_last if b is a and not gathered else b[:, whole:]
        parts = torch.cat([parts, (a_last @ b_last.T).double()[None]])
    return parts.cumsum(0)[-1]


# Coordinates per block of a basis's BᵀB (k×D by D×k). Measured on an orthonormal basis at D = 2e6
# (one thread, MKL): BᵀB off by 1.2e-6 with 2^16 (whose size depends on the CPU's kernel, near the
# tests' 1e-6), 1.8e-7 with 2^14 at 1.15× the time, 2.5e-8 with 2^12 at 1.7×
GRAM_BLOCK_ROWS = 2**14
# Columns per block of a few rows against a window (n×D by D×W): 32 rows × 4,096 columns × 4 bytes
# is 0.5 MiB, which stays in cache while both operands are read
GRAM_BLOCK_COLUMNS = 4096


def blocked_row(vector: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """rows · vector (n, float64) for rows (n×D) and vector (D,): float32 matrix-vector products
    over blocks of GRAM_BLOCK_ROWS coordinates, summed in float64 (round-off as
    :func:`blocked_products`). A matrix-vector product reads the rows at the window-read rate, where
    a one-row :func:`blocked_products` runs at half of it."""
    total = torch.zeros(rows.shape[0], dtype=torch.float64)
    for start in range(0, vector.shape[0], GRAM_BLOCK_ROWS):
        stop = start + GRAM_BLOCK_ROWS
        total += (rows[:, start:stop] @ vector[start:stop]).double()
    return total


def column_gram(basis: torch.Tensor) -> torch.Tensor:
    """BᵀB (k×k, float64) of a D×k basis, in blocks of GRAM_BLOCK_ROWS rows (blocked_products)."""
    return blocked_products(basis.T, basis.T, GRAM_BLOCK_ROWS)


def reorthonormalize(
    basis: torch.Tensor, tol: float = 1e-5, reduce: Reduce = no_reduce, gram: torch.Tensor | None = None
) -> torch.Tensor:
    """Remove round-off from a nearly orthonormal D×k basis (or this rank's rows of one, with
    ``reduce`` summing BᵀB over ranks).

    If ‖BᵀB − I‖_max <= tol (BᵀB by :func:`column_gram`), B is returned as is. Otherwise
    Cholesky-QR (B ← B L⁻ᵀ with L Lᵀ = BᵀB: one GEMM and one triangular solve), and, when BᵀB is
    too ill-conditioned for
    that (a window whose small singular values are lost in float32), Householder QR, or,
    sharded, B ← B V Λ^(-1/2) Vᵀ from BᵀB = V Λ Vᵀ (only the k×k Gram is needed). ``gram``: this
    rank's :func:`column_gram` of B when the caller has it already.
    """
    gram = reduce(column_gram(basis) if gram is None else gram)
    eye = torch.eye(gram.shape[0], dtype=torch.float64)
    if gram.numel() == 0 or (gram - eye).abs().max() <= tol:
        return basis
    chol, info = torch.linalg.cholesky_ex(gram)
    if int(info) == 0:
        fixed = torch.linalg.solve_triangular(chol.to(basis.dtype), basis.T, upper=False).T
        if (reduce(column_gram(fixed)) - eye).abs().max() <= tol:
            return fixed
    if reduce is no_reduce:
        return torch.linalg.qr(basis, mode="reduced")[0]
    evals, evecs = torch.linalg.eigh(gram)
    keep = evals > RELATIVE_RANK_TOL * evals.max()
    return basis @ (evecs[:, keep] / evals[keep].sqrt()).to(basis.dtype)


def basis_coefficients(gram: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """C = V_k' Σ_k'⁻¹ (W×k', k' = min(k, numerical rank)) with B = Xᵀ C the top-k left singular
    basis of the rows X whose Gram is ``gram``, and all W singular values (descending)."""
    s, v = gram_eigh(gram)
    rank = int((s > RELATIVE_RANK_TOL * s[0].clamp_min(1e-300)).sum()) if s.numel() else 0
    k_eff = min(k, rank)
    return v[:, :k_eff] / s[:k_eff], s


def basis_from_coefficients(rows: torch.Tensor, coefficients: torch.Tensor, reduce: Reduce = no_reduce) -> torch.Tensor:
    """B = Xᵀ C (D×k', or this rank's rows when sharded) for rows X (W×D) and coefficients C
    (W×k', float64, from :func:`basis_coefficients`), re-orthonormalised to remove float32 round-off.

    Built as the transpose of a contiguous k'×D matrix: Bᵀv then reads B row by row, about 5×
    faster than a transposed matrix-vector product on a D×k row-major array. Formed in the blocks
    of GRAM_BLOCK_ROWS coordinates that :func:`column_gram` sums, each block's BᵀB taken while the
    block is in cache: one pass over B instead of two, and the same bits as the product at once
    followed by column_gram (tests/geometry/test_subspace.py)."""
    if coefficients.shape[1] == 0:
        return rows.new_zeros(rows.shape[1], 0)
    c = coefficients.T.to(rows.dtype)
    if rows.dtype == torch.float64:  # column_gram takes float64 bases whole
        return reorthonormalize((c @ rows).T, reduce=reduce)
    basis_t = rows.new_empty(c.shape[0], rows.shape[1])
    gram = torch.zeros(c.shape[0], c.shape[0], dtype=torch.float64)
    for start in range(0, rows.shape[1], GRAM_BLOCK_ROWS):
        block = torch.mm(c, rows[:, start : start + GRAM_BLOCK_ROWS], out=basis_t[:, start : start + GRAM_BLOCK_ROWS])
        gram += (block @ block.T).double()
    return reorthonormalize(basis_t.T, reduce=reduce, gram=gram)


def basis_from_rows(
    rows: torch.Tensor, gram: torch.Tensor, k: int, reduce: Reduce = no_reduce
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k left singular basis B (D×k') of the rows of ``rows`` (W×D) given their Gram.

    k' = min(k, numerical rank). Returns ``(B, s)`` where ``s`` holds all W singular values
    (descending); B is :func:`basis_from_coefficients`. Sharded (``rows`` this rank's columns X_r,
    ``gram`` the all-reduced Σ_r X_r X_rᵀ): B_r = X_rᵀ V_k Σ_k⁻¹, this rank's rows of B.
    """
    coefficients, s = basis_coefficients(gram, k)
    return basis_from_coefficients(rows, coefficients, reduce), s


def topk_basis(rows: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k left singular basis of the rows of ``rows`` (W×D); see :func:`basis_from_rows`. The
    Gram is float64 (:func:`blocked_products` in float64 blocks): a per-task probe's Gram is read
    once, and float32 blocks moved its overlaps by up to 1e-6 relative."""
    return basis_from_rows(rows, blocked_products(rows, rows, GRAM_BLOCK_COLUMNS, torch.float64), k)
