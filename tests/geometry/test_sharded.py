"""Window geometry with the coordinates split across two CPU ranks (gloo) against the unsplit
window: basis, singular values, captures, principal angles (scipy)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from scipy.linalg import subspace_angles

from geometry.capture import capture_rows
from geometry.sharded import sharded_basis, sharded_capture, sharded_principal_angles
from geometry.subspace import topk_basis

DIM, WINDOW, K, SPLIT = 5000, 12, 4, 1700  # rank 0 holds coordinates [0, 1700), rank 1 the rest


def windows():
    generator = torch.Generator().manual_seed(0)
    signal = torch.randn(DIM, 6, generator=generator)
    first = (signal[:, :4] @ torch.randn(4, WINDOW, generator=generator)).T + 0.1 * torch.randn(WINDOW, DIM, generator=generator)
    second = (signal[:, 2:6] @ torch.randn(4, WINDOW, generator=generator)).T + 0.1 * torch.randn(WINDOW, DIM, generator=generator)
    probes = torch.randn(3, DIM, generator=generator) + first[:3]
    return first, second, probes


REPO = Path(__file__).resolve().parents[2]


def worker(rank: int, store: str, out: str) -> None:
    """One rank (run in its own fresh process: forking a process whose torch thread pool is
    already running can deadlock)."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    part = slice(0, SPLIT) if rank == 0 else slice(SPLIT, DIM)
    first, second, probes = windows()
    basis_a, singular = sharded_basis(first[:, part], K)
    basis_b, _ = sharded_basis(second[:, part], K)
    captures = sharded_capture(basis_a, probes[:, part])
    compared = sharded_principal_angles(basis_a, basis_b)
    torch.save({"basis_a": basis_a, "basis_b": basis_b, "singular": singular, "captures": captures, **compared}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_two_ranks_reproduce_the_unsplit_window(tmp_path):
    script = f"import sys; sys.path[:0] = [{str(REPO)!r}, {str(Path(__file__).parent)!r}]; import test_sharded; test_sharded.worker(int(sys.argv[1]), {str(tmp_path / 'store')!r}, {str(tmp_path)!r})"
    ranks = [subprocess.Popen([sys.executable, "-c", script, str(rank)], stderr=subprocess.PIPE, text=True) for rank in range(2)]
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
    torch.testing.assert_close(ranks[0]["singular"], singular, rtol=1e-6, atol=1e-6)
    for r in ranks:  # every rank holds the same reduced numbers
        torch.testing.assert_close(r["captures"], capture_rows(basis_a, probes).double(), rtol=1e-4, atol=1e-6)
        exact = np.sort(subspace_angles(basis_a.double().numpy(), basis_b.double().numpy()))
        np.testing.assert_allclose(r["angles"].numpy(), exact, atol=1e-4)
        assert abs(r["overlap"] - (np.cos(exact) ** 2).sum() / K) < 1e-5
    torch.testing.assert_close(joined_b.T @ joined_b, torch.eye(K), rtol=0, atol=1e-4)  # slices join into an orthonormal basis
