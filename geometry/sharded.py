"""Window geometry when the D coordinates are split across ranks (FSDP-style shards, or
``geometry.shard_windows`` under DDP): nothing D-dimensional is ever gathered.

Rank r holds the rows X_r ∈ R^{W×D_r} of its coordinates. Then
    Gram       G = X Xᵀ = Σ_r X_r X_rᵀ                    (one all-reduce of W×W),
    basis      B = Xᵀ V_k Σ_k⁻¹, so rank r's slice is B_r = X_rᵀ V_k Σ_k⁻¹   (local, from G),
    capture    cap(B, v) = ‖Σ_r B_rᵀ v_r‖² / Σ_r ‖v_r‖²   (all-reduce of k + 1 numbers per vector),
    overlap    B_sᵀ B_t = Σ_r B_s,rᵀ B_t,r                 (all-reduce of k×k),
so a refresh moves O(W²) numbers and a capture or drift comparison O(k²), never O(D·W).
Spectra come from G alone.

The geometry functions that sum over coordinates take a ``reduce`` argument: ``no_reduce``
(the default, one process holds every coordinate) or ``all_reduce_sum`` over the ranks that
share the coordinates. Every rank must then make the same calls in the same order.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist

Reduce = Callable[[torch.Tensor], torch.Tensor]


def no_reduce(partial_sum: torch.Tensor) -> torch.Tensor:
    return partial_sum


def all_reduce_sum(partial_sum: torch.Tensor, group=None) -> torch.Tensor:
    """Σ over the ranks of ``group`` (the default group) of a partial sum, in place; the identity
    without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(partial_sum, op=dist.ReduceOp.SUM, group=group)
    return partial_sum


class CoordinateShard:
    """This rank's coordinates [start, stop) of θ ∈ R^D, for moving state between the local
    slice a rank computes with and the whole vector a checkpoint stores (so a checkpoint is
    the same whatever the number of ranks that wrote it)."""

    def __init__(self, start: int, stop: int, dim: int, sharded: bool):
        self.start, self.stop, self.dim = start, stop, dim
        self.reduce: Reduce = all_reduce_sum if sharded else no_reduce

    @property
    def sharded(self) -> bool:
        return self.reduce is not no_reduce

    def gather(self, local: torch.Tensor | None, axis: int) -> torch.Tensor | None:
        """The whole tensor from every rank's slice along ``axis`` (a collective: every rank
        calls it, in the same order); the identity when not sharded."""
        if not self.sharded or local is None:
            return local
        pieces: list = [None] * dist.get_world_size()
        dist.all_gather_object(pieces, local)
        return torch.cat(pieces, axis)

    def local(self, whole: torch.Tensor | None, axis: int) -> torch.Tensor | None:
        """This rank's slice of a whole tensor along ``axis``."""
        if whole is None or not self.sharded:
            return whole
        return whole.narrow(axis, self.start, self.stop - self.start).clone()
