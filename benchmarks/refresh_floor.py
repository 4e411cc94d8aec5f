"""One rolling-basis refresh against this machine's floor and against the SVDs a user would pick.

    python benchmarks/refresh_floor.py [--dims 404736 4600000] [--window 32] [--k 8] [--stride 10] \
        [--json docs/results/performance/refresh_floor.json]

The floor of a refresh is one read of the window (W·D·4 bytes), timed here as the faster of X v
(v ∈ R^D) and Xᵀu (u ∈ R^W) over the same window. Everything is printed as a ratio to that
floor, measured in the same run on one thread:

- ``refresh``: what a refresh step does: the Gram rows of ``stride`` new vectors
  (``VectorWindow._refresh_gram``), the W×W eigen-decomposition, B = Xᵀ V_k Σ_k⁻¹ and its
  orthonormality check (``geometry.subspace.basis_from_rows``);
- ``two products alone``: the two products a refresh cannot avoid, the new rows' Gram rows
  X_new Xᵀ and B = Cᵀ X, each one ``torch.mm`` into a buffer allocated beforehand (no loclin code,
  no fresh pages): the lowest a refresh can go with this machine's BLAS;
- its parts: the Gram rows, the basis from a ready Gram, and the orthonormality check alone as
  it is now (blocked float32, float64 sums) and as it was (one float32 product, whose round-off
  above 1e-5 sent an orthonormal basis through Cholesky-QR and Householder QR: ``old check``);
- ``torch.linalg.svd`` and ``torch.svd_lowrank`` of the same window, and their largest relative
  error in the top-k singular values against float64;
- ``basis_stride: 1`` (geometry.window.StreamingWindow, geometry.rolling): one step, that is the new
  vector's copy into the window, its Gram row against the window and the rows kept for the held-out
  lags (1, 2, 4, 8), the W×W eigen-decomposition, the spectrum and the held-out captures; B formed
  from the coefficients (what a drift snapshot reads, every ``--drift-stride`` steps); and the
  two per step at that drift stride, in window reads.

``--json`` also writes the times as a record that ``python -m loclin results`` renders into the
README's Performance section (loclin.reports.performance).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loclin.runs.allocator import use_huge_pages  # noqa: E402  (before torch: it reads the switch)

PAGES = use_huge_pages(enable="--small-pages" not in sys.argv)

import torch  # noqa: E402
from loclin.geometry.rolling import RollingBasis  # noqa: E402
from loclin.geometry.subspace import basis_coefficients, basis_from_rows, column_gram, reorthonormalize  # noqa: E402
from loclin.geometry.window import StreamingWindow, VectorWindow  # noqa: E402

from loclin.reports.performance import write_record  # noqa: E402


def median_ms(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def old_reorthonormalize(basis: torch.Tensor, tol: float = 1e-5) -> torch.Tensor:
    """The check before this change: BᵀB as one float32 product (then the same repairs)."""
    eye = torch.eye(basis.shape[1], dtype=torch.float64)
    if ((basis.T @ basis).double() - eye).abs().max() <= tol:
        return basis
    chol = torch.linalg.cholesky((basis.T @ basis).double())
    fixed = torch.linalg.solve_triangular(chol.float(), basis.T, upper=False).T
    if ((fixed.T @ fixed).double() - eye).abs().max() <= tol:
        return fixed
    return torch.linalg.qr(basis, mode="reduced")[0]


def gradient_like_window(dim: int, width: int, seed: int = 0) -> torch.Tensor:
    """W rows with a decaying spectrum (σ_i from 1 to 1e-2), like a window of gradients."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(width, dim, generator=generator) * torch.logspace(0, -2, width)[:, None]


def streaming(dim: int, width: int, k: int, repeats: int, drift_stride: int) -> dict[str, float]:
    """Time per step of a basis refreshed at every step, and of forming its B once."""
    lags = (1, 2, 4, 8)
    vectors = gradient_like_window(dim, width + 2 * lags[-1], seed=1)
    basis = RollingBasis("grad", k=k, stride=1, heldout_lags=lags)
    window = StreamingWindow(dim, width, retain=basis.horizon)
    basis.window = window
    step = 0

    def one_step():
        nonlocal step
        window.next_slot().copy_(vectors[step % len(vectors)])
        window.commit(step)
        basis.observe(window, step)
        step += 1

    for _ in range(width + lags[-1]):
        one_step()

    def form_basis():
        basis._current_basis = None
        return basis.current_basis

    step_ms, form_ms = median_ms(one_step, repeats), median_ms(form_basis, repeats)
    return {
        "stride 1: one step": step_ms,
        "stride 1: form B": form_ms,
        f"stride 1: per step, drift every {drift_stride}": step_ms + form_ms / drift_stride,
    }


def measure(dim: int, width: int, k: int, stride: int, repeats: int) -> dict[str, float]:
    rows = gradient_like_window(dim, width)
    window = VectorWindow(dim, width)
    for i in range(width):
        window.push(rows[i], i)
    gram = window.gram()
    ones, probe = torch.ones(width), torch.randn(dim)

    def refresh():
        window._dirty.update(range(stride))
        return window.basis(k)

    def gram_rows():
        window._dirty.update(range(stride))
        window._refresh_gram()

    basis, singular_values = basis_from_rows(window.filled_rows(), gram, k)
    unchecked = basis.clone()
    new_rows, coefficients = rows[:stride], basis_coefficients(gram, k)[0].float()
    gram_rows_out, basis_out = torch.empty(stride, width), torch.empty(k, dim)

    def products_alone():
        torch.mm(new_rows, rows.T, out=gram_rows_out)
        torch.mm(coefficients.T, rows, out=basis_out)

    exact = torch.linalg.svdvals(rows.double())[:k]
    svd_values = torch.linalg.svd(rows, full_matrices=False)[1][:k].double()
    lowrank_values = torch.svd_lowrank(rows, q=k + 2, niter=2)[1][:k].double()
    eye = torch.eye(k, dtype=torch.float64)
    return {
        "floor": min(median_ms(lambda: rows @ probe, repeats), median_ms(lambda: rows.T @ ones, repeats)),
        "refresh": median_ms(refresh, repeats),
        "two products alone": median_ms(products_alone, repeats),
        "gram rows": median_ms(gram_rows, repeats),
        "basis from Gram": median_ms(lambda: basis_from_rows(window.filled_rows(), gram, k), repeats),
        "check (now)": median_ms(lambda: reorthonormalize(unchecked), repeats),
        "old check": median_ms(lambda: old_reorthonormalize(unchecked), repeats),
        "torch.linalg.svd": median_ms(lambda: torch.linalg.svd(rows, full_matrices=False), max(1, repeats // 5)),
        "torch.svd_lowrank": median_ms(lambda: torch.svd_lowrank(rows, q=k + 2, niter=2), max(1, repeats // 5)),
        "_svd_error": float(((svd_values - exact).abs() / exact).max()),
        "_lowrank_error": float(((lowrank_values - exact).abs() / exact).max()),
        "_float32_gram_error": float(((unchecked.T @ unchecked).double() - eye).abs().max()),
        "_blocked_gram_error": float((column_gram(unchecked) - eye).abs().max()),
        "_float64_error": float(((unchecked.double().T @ unchecked.double()) - eye).abs().max()),
        "_singular_values_match": float(torch.allclose(singular_values[:k], exact, rtol=1e-5)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[404_736, 4_600_000])
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--stride", type=int, default=10, help="new vectors per refresh (geometry.basis_stride)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--drift-stride", type=int, default=10, help="steps between drift snapshots (stride 1 rows)")
    parser.add_argument("--json", type=Path, help="also write the times here (rendered by python -m loclin results)")
    parser.add_argument(
        "--small-pages",
        action="store_true",
        help="large tensors on 4 KiB pages, not on the 2 MiB pages train.py asks for (loclin.runs.allocator)",
    )
    args = parser.parse_args()
    print(f"large tensors on {PAGES} pages")
    torch.set_num_threads(1)
    rows = []
    for dim in args.dims:
        r = measure(dim, args.window, args.k, args.stride, args.repeats)
        r.update(streaming(dim, args.window, args.k, args.repeats, args.drift_stride))
        floor = r["floor"]
        print(
            f"\nD = {dim:,}, W = {args.window}, k = {args.k}, stride {args.stride}, one thread; "
            f"window {args.window * dim * 4 / 2**20:.0f} MiB, floor (one read) {floor:.2f} ms "
            f"= {args.window * dim * 4 / floor / 1e6:.1f} GB/s"
        )
        print(f"{'':<38}{'ms':>10}{'× floor':>10}")
        for name, value in r.items():
            if not name.startswith("_"):
                print(f"{name:<38}{value:>10.2f}{value / floor:>10.2f}")
        print(
            f"top-{args.k} singular values, max relative error against float64: svd {r['_svd_error']:.1e}, "
            f"svd_lowrank {r['_lowrank_error']:.1e}; loclin's match to 1e-5: {bool(r['_singular_values_match'])}"
        )
        print(
            f"‖BᵀB − I‖ of the new basis: float64 {r['_float64_error']:.1e}, blocked (now) "
            f"{r['_blocked_gram_error']:.1e}, one float32 product (old) {r['_float32_gram_error']:.1e} "
            f"(tolerance 1e-5)"
        )
        rows.append(
            {
                "dim": dim,
                "floor_ms": floor,
                "gb_per_s": args.window * dim * 4 / floor / 1e6,
                "ms": {name: value for name, value in r.items() if not name.startswith("_") and name != "floor"},
                "checks": {name[1:]: value for name, value in r.items() if name.startswith("_")},
            }
        )
    if args.json:
        settings = {
            "pages": PAGES,
            "window": args.window,
            "k": args.k,
            "stride": args.stride,
            "drift_stride": args.drift_stride,
        }
        write_record(args.json, "refresh_floor", {**settings, "dims": rows})


if __name__ == "__main__":
    main()
