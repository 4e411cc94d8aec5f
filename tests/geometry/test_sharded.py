"""Window geometry with the coordinates split across two CPU ranks (gloo) against the unsplit
window: basis, singular values, captures, principal angles (scipy), each rank holding only its
columns and the geometry reducing W×W and k-sized partial sums (geometry.sharded)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from loclin.geometry.angles import compare_subspaces, principal_angles
from loclin.geometry.capture import capture_rows
from loclin.geometry.sharded import all_reduce_sum
from loclin.geometry.subspace import topk_basis
from loclin.geometry.window import VectorWindow
from scipy.linalg import subspace_angles

DIM, WINDOW, K, SPLIT = 5000, 12, 4, 1700  # rank 0 holds coordinates [0, 1700), rank 1 the rest


def windows():
    generator = torch.Generator().manual_seed(0)
    signal = torch.randn(DIM, 6, generator=generator)
    first = (signal[:, :4] @ torch.randn(4, WINDOW, generator=generator)).T + 0.1 * torch.randn(
        WINDOW, DIM, generator=generator
    )
    second = (signal[:, 2:6] @ torch.randn(4, WINDOW, generator=generator)).T + 0.1 * torch.randn(
        WINDOW, DIM, generator=generator
    )
    probes = torch.randn(3, DIM, generator=generator) + first[:3]
    return first, second, probes


REPO = Path(__file__).resolve().parents[2]


def worker(rank: int, store: str, out: str) -> None:
    """One rank (run in its own fresh process: forking a process whose torch thread pool is
    already running can deadlock)."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    part = slice(0, SPLIT) if rank == 0 else slice(SPLIT, DIM)
    first, second, probes = windows()
    bases, singular = [], None
    for rows in (first, second):
        window = VectorWindow(part.stop - part.start, WINDOW, reduce=all_reduce_sum)
        for step, row in enumerate(rows[:, part]):
            window.push(row, step)
        basis, singular = window.basis(K) if singular is None else (window.basis(K)[0], singular)
        bases.append(basis)
    captures = capture_rows(bases[0], probes[:, part], all_reduce_sum)
    angles = principal_angles(bases[0], bases[1], reduce=all_reduce_sum)
    overlap = compare_subspaces(bases[0], bases[1], all_reduce_sum)["overlap"]
    torch.save(
        {
            "basis_a": bases[0],
            "basis_b": bases[1],
            "singular": singular,
            "captures": captures,
            "angles": angles,
            "overlap": overlap,
        },
        f"{out}/rank{rank}.pt",
    )
    dist.destroy_process_group()


def test_two_ranks_reproduce_the_unsplit_window(tmp_path):
    script = (
        f"import sys; sys.path[:0] = [{str(REPO)!r}, {str(Path(__file__).parent)!r}]; import test_sharded; "
        f"test_sharded.worker(int(sys.argv[1]), {str(tmp_path / 'store')!r}, {str(tmp_path)!r})"
    )
    ranks = [
        subprocess.Popen([sys.executable, "-c", script, str(rank)], stderr=subprocess.PIPE, text=True)
        for rank in range(2)
    ]
    for process in ranks:
        _, errors = process.communicate(timeout=120)
        assert process.returncode == 0, errors[-2000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    first, second, probes = windows()
    basis_a, singular = topk_basis(first, K)
    basis_b, _ = topk_basis(second, K)
    joined_a = torch.cat([r["basis_a"] for r in ranks])
    joined_b = torch.cat([r["basis_b"] for r in ranks])
    assert np.abs(subspace_angles(joined_a.double().numpy(), basis_a.double().numpy())).max() < 1e-4
    unsplit = VectorWindow(DIM, WINDOW)
    for step, row in enumerate(first):
        unsplit.push(row, step)
    # the window's Gram entries are float32 dot products, off by ~eps32·s_max² each, and so are
    # the eigenvalues s_i²; the split changes only the dot products' summation order
    exact = torch.linalg.svdvals(first.double()) ** 2
    tolerance = 8 * torch.finfo(torch.float32).eps * exact[0].item()
    torch.testing.assert_close(ranks[0]["singular"] ** 2, unsplit.singular_values() ** 2, rtol=0, atol=tolerance)
    torch.testing.assert_close(ranks[0]["singular"] ** 2, exact, rtol=0, atol=tolerance)
    for r in ranks:  # every rank holds the same reduced numbers
        torch.testing.assert_close(r["captures"], capture_rows(basis_a, probes).double(), rtol=1e-4, atol=1e-6)
        exact = np.sort(subspace_angles(basis_a.double().numpy(), basis_b.double().numpy()))
        np.testing.assert_allclose(
            r["angles"].numpy(), exact, atol=1e-5
        )  # small angles refined from the reduced residual Gram
        assert abs(r["overlap"] - (np.cos(exact) ** 2).sum() / K) < 1e-5
    torch.testing.assert_close(
        joined_b.T @ joined_b, torch.eye(K), rtol=0, atol=1e-4
    )  # slices join into an orthonormal basis
