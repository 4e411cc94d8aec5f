"""What separates a special prefix from a short recovery (C4): shares, progress, the offset null.

For a recovery θ_0 → θ_T with updates u_t = θ_{t+1} − θ_t, Δ_T = θ_T − θ_0 = Σ_{t<T} u_t, and a
prefix of m updates with basis P_m = orth(u_0 … u_{m−1}):

    path share           Σ_{t<m} ‖u_t‖ / Σ_{t<T} ‖u_t‖
    displacement share   ‖θ_m − θ_0‖ / ‖Δ_T‖
    capture after m      cap(P_m, θ_T − θ_m)       the displacement made after the prefix
    steps to recover     the first evaluated step s <= T with acc_s − acc_0 >= f · (acc_T − acc_0)

If the recovery is over by step m (shares ≈ 1), cap(P_m, Δ_T) ≈ 1 says nothing about the prefix;
only cap(P_m, θ_T − θ_m) says it predicts the rest. The offset-block null compares the prefix
with m *consecutive* updates u_o … u_{o+m−1} starting at seeded offsets o in [m, T − m): a
block of the same shape that shares no update with the prefix.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def path_share(update_norms: Sequence[float], m: int, steps: int) -> float:
    """Σ_{t<m} ‖u_t‖ / Σ_{t<T} ‖u_t‖, T = ``steps`` (``update_norms``: ‖u_0‖, ‖u_1‖, …)."""
    norms = torch.tensor(list(update_norms[:steps]), dtype=torch.float64)
    total = float(norms.sum())
    return float(norms[:m].sum()) / total if total > 0 else float("nan")


def displacement_share(prefix_displacement: torch.Tensor, displacement: torch.Tensor) -> float:
    """‖θ_m − θ_0‖ / ‖Δ_T‖."""
    total = float(displacement.double().norm())
    return float(prefix_displacement.double().norm()) / total if total > 0 else float("nan")


def cumulative_capture(basis: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """cap(Q[:, :m], v) for m = 1 … M, Q orthonormal (or zero) columns: cumsum((Qᵀv)²) / ‖v‖²
    (Qᵀv in the basis's dtype, the sums in float64)."""
    v = vector.reshape(-1)
    return torch.cumsum((v.to(basis.dtype) @ basis).double().pow(2), 0) / v.double().pow(2).sum()


def offset_block_starts(steps: int, m: int, draws: int, seed: int) -> list[int]:
    """Starts o of the offset-block null at recovery length T = ``steps``: every o in [m, T − m)
    when there are at most ``draws`` of them, else ``draws`` distinct ones drawn with ``seed``
    (sorted). Empty when T <= 2m (no block fits between the prefix and T)."""
    candidates = list(range(m, steps - m))
    if len(candidates) <= draws:
        return candidates
    generator = torch.Generator().manual_seed(seed * 1000 + 31 + 100_003 * steps)
    chosen = torch.randperm(len(candidates), generator=generator)[:draws]
    return sorted(candidates[i] for i in chosen.tolist())


def steps_to_recover(progress: Sequence[tuple[int, float]], steps: int, fraction: float) -> int | None:
    """The first evaluated step s <= T (``steps``) at which acc_s − acc_0 >= fraction · (acc_T − acc_0).

    ``progress``: (step, accuracy) pairs in step order, step 0 (θ_0) and T included. None when the
    run gained nothing by T (acc_T <= acc_0) or T was not evaluated. The step is exact at the
    evaluated steps only: the true first crossing lies in (previous evaluated step, s]."""
    accuracy = dict(progress)
    if 0 not in accuracy or steps not in accuracy:
        return None
    gain = accuracy[steps] - accuracy[0]
    if gain <= 0:
        return None
    return next(s for s, acc in progress if s <= steps and acc - accuracy[0] >= fraction * gain)


def upper_percentile(values: Sequence[float], q: float = 95.0) -> float:
    """The q-th percentile of ``values`` (linear interpolation, numpy's default)."""
    return float(torch.quantile(torch.tensor(list(values), dtype=torch.float64), q / 100.0))
