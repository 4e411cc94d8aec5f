"""A bounded window of D-dimensional vectors with its Gram matrix kept up to date.

The window is a ring of W rows (X ∈ R^{W×D}, float32, W·D·4 bytes). The Gram X Xᵀ is kept
up to date lazily: slots written since the last read are marked dirty, and reading the Gram
recomputes their rows and columns from the vectors themselves in one GEMM
(X_dirty Xᵀ, n_dirty·W·D flops, one pass over the window). Pushing a vector is therefore a
plain copy, the Gram never accumulates round-off, and a basis refresh costs that GEMM, a
W×W eigen-decomposition and one D×W×k product.

``group_slices`` partitions the D coordinates into named parameter groups; each group keeps
its own Gram (their sum is the full Gram), so per-group spectra come for free. The same
identity is what makes a sharded window cheap: the Gram of a window split across ranks is
the sum of the shards' Grams, so with ``reduce`` (geometry.sharded) each rank holds only its
columns X_r, the new Gram entries are all-reduced (n_dirty×W numbers per group) and
:meth:`basis` returns this rank's rows of the basis.
"""

from __future__ import annotations

import torch
from loclin.geometry.sharded import Reduce, no_reduce
from loclin.geometry.subspace import GRAM_BLOCK_COLUMNS, basis_from_rows, blocked_products, blocked_row


def dirty_gram_rows(rows: torch.Tensor, dirty: torch.Tensor) -> torch.Tensor:
    """X[dirty] Xᵀ (n_dirty×W, float64) for X = ``rows`` (W×D), in blocks of GRAM_BLOCK_COLUMNS
    columns with the new rows gathered block by block (geometry.subspace.blocked_products): near
    one read of the window, where one product over all D columns runs 3–4× below it."""
    return blocked_products(rows, rows, GRAM_BLOCK_COLUMNS, select=dirty)


class VectorWindow:
    """Ring buffer of the last ``capacity`` vectors with per-group Gram matrices."""

    def __init__(
        self,
        dim: int,
        capacity: int,
        group_slices: dict[str, tuple[int, int]] | None = None,
        reduce: Reduce = no_reduce,
    ):
        if capacity < 1:
            raise ValueError(f"window capacity must be >= 1, got {capacity}")
        self.reduce = reduce
        self.dim = dim
        self.capacity = capacity
        self.group_slices = dict(group_slices or {"all": (0, dim)})
        self.rows = torch.zeros(capacity, dim, dtype=torch.float32)
        self.group_grams = {name: torch.zeros(capacity, capacity, dtype=torch.float64) for name in self.group_slices}
        self.steps = torch.full((capacity,), -1, dtype=torch.long)
        self.count = 0  # vectors ever pushed
        self._dirty: set[int] = set()

    @property
    def nbytes(self) -> int:
        return self.rows.numel() * 4 + sum(g.numel() * 8 for g in self.group_grams.values())

    @property
    def size(self) -> int:
        """Number of filled slots (min(count, capacity))."""
        return min(self.count, self.capacity)

    def next_slot(self) -> torch.Tensor:
        """The row the next push will occupy; fill it in place, then call :meth:`commit`."""
        return self.rows[self.count % self.capacity]

    def commit(self, step: int) -> None:
        """Register the vector written into :meth:`next_slot` as the one taken at ``step``."""
        j = self.count % self.capacity
        self._dirty.add(j)
        self.steps[j] = step
        self.count += 1

    def discard(self) -> None:
        """The vector written into :meth:`next_slot` is not committed. Nothing to undo here: that
        slot is the next one written, and nothing reads it before (a StreamingWindow restores it)."""

    def _refresh_gram(self) -> None:
        if not self._dirty:
            return
        dirty = torch.tensor(sorted(self._dirty))
        for name, (start, stop) in self.group_slices.items():
            cross = self.reduce(dirty_gram_rows(self.rows[:, start:stop], dirty))  # n_dirty × W
            gram = self.group_grams[name]
            gram[dirty, :] = cross
            gram[:, dirty] = cross.T
        self._dirty.clear()

    def push(self, vector: torch.Tensor, step: int) -> None:
        self.next_slot().copy_(vector.reshape(-1))
        self.commit(step)

    def gram(self, group: str | None = None) -> torch.Tensor:
        """Gram of the filled rows (size×size, float64), for one group or for all coordinates."""
        self._refresh_gram()
        n = self.size
        if group is not None:
            return self.group_grams[group][:n, :n]
        return sum(g[:n, :n] for g in self.group_grams.values())

    def filled_rows(self) -> torch.Tensor:
        return self.rows[: self.size]

    def basis(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k orthonormal basis (D×k) of the window and all its singular values."""
        return basis_from_rows(self.filled_rows(), self.gram(), k, self.reduce)

    def singular_values(self, group: str | None = None) -> torch.Tensor:
        evals = torch.linalg.eigvalsh(self.gram(group))
        return evals.flip(0).clamp_min(0.0).sqrt()

    def state_dict(self) -> dict:
        self._refresh_gram()
        return {
            "rows": self.rows.clone(),
            "group_grams": {k: v.clone() for k, v in self.group_grams.items()},
            "steps": self.steps.clone(),
            "count": self.count,
        }

    def load_state_dict(self, state: dict) -> None:
        if tuple(state["rows"].shape) != (self.capacity, self.dim):
            raise ValueError(
                f"window state has shape {tuple(state['rows'].shape)}, expected {(self.capacity, self.dim)}"
            )
        self.rows.copy_(state["rows"])
        for name, gram in state["group_grams"].items():
            self.group_grams[name].copy_(gram)
        self.steps.copy_(state["steps"])
        self.count = int(state["count"])
        self._dirty.clear()


class StreamingWindow(VectorWindow):
    """A window whose Gram row is computed at every commit, for a basis refreshed at every step.

    Committing v at step t computes r = [X_t; R] v: its products with the W window rows and with
    the last ``retain`` rows the window evicted (R), per group (matrix-vector products over
    (W + retain)·D floats, at the window-read rate: geometry.subspace.blocked_row). r's window part
    is v's Gram row, so reading the Gram costs nothing, and the whole of r, kept by step in
    :attr:`products`, is what a basis B_s = X_sᵀ C_s of an earlier window needs to capture v:
    B_sᵀ v = C_sᵀ (X_s v), with X_s's rows among the window and R while t − s <= ``retain``.
    So held-out captures at every step need no D-sized work beyond r.

    Evicted rows are copied out when :meth:`next_slot` first hands out a full window's oldest slot;
    :meth:`discard` puts the row back when the vector written there is not committed.
    """

    def __init__(
        self,
        dim: int,
        capacity: int,
        group_slices: dict[str, tuple[int, int]] | None = None,
        reduce: Reduce = no_reduce,
        retain: int = 0,
    ):
        super().__init__(dim, capacity, group_slices, reduce)
        self.retain = retain
        self.retired = torch.zeros(retain, dim, dtype=torch.float32)
        self.retired_steps = torch.full((retain,), -1, dtype=torch.long)
        self.retired_count = 0
        self._retired_for = -1  # the value of ``count`` whose slot has been copied out
        self.products: dict[int, float] = {}  # step -> x_step · v for the newest v (full dot products)

    @property
    def nbytes(self) -> int:
        return super().nbytes + self.retired.numel() * 4

    def next_slot(self) -> torch.Tensor:
        slot = self.count % self.capacity
        if self.retain and self.count >= self.capacity and self._retired_for != self.count:
            ring = self.retired_count % self.retain
            self.retired[ring].copy_(self.rows[slot])
            self.retired_steps[ring] = self.steps[slot]
            self.retired_count += 1
            self._retired_for = self.count
        return self.rows[slot]

    def discard(self) -> None:
        """The vector written into :meth:`next_slot` is not committed: restore the row it replaced."""
        if self._retired_for == self.count:
            self.retired_count -= 1
            ring = self.retired_count % self.retain
            self.rows[self.count % self.capacity].copy_(self.retired[ring])
            self.retired_steps[ring] = -1
            self._retired_for = -1

    def commit(self, step: int) -> None:
        j = self.count % self.capacity
        self.steps[j] = step
        self.count += 1
        vector = self.rows[j]
        retained = self.retired[: min(self.retired_count, self.retain)]
        total = torch.zeros(self.capacity + len(retained), dtype=torch.float64)
        for name, (start, stop) in self.group_slices.items():
            part = vector[start:stop]
            row = self.reduce(
                torch.cat([blocked_row(part, self.rows[:, start:stop]), blocked_row(part, retained[:, start:stop])])
            )
            gram = self.group_grams[name]
            gram[j, :] = row[: self.capacity]
            gram[:, j] = row[: self.capacity]
            total += row
        steps = torch.cat([self.steps, self.retired_steps[: len(retained)]]).tolist()
        self.products = {s: value for s, value in zip(steps, total.tolist()) if s >= 0}

    def rows_at(self, steps: list[int]) -> torch.Tensor:
        """The rows of the vectors of ``steps`` (len×D), from the window or the retained rows: the
        window itself (no copy) when ``steps`` are its slots' steps."""
        if steps == self.steps.tolist():
            return self.rows
        where = {s: self.rows[i] for i, s in enumerate(self.steps.tolist())}
        where.update({s: self.retired[i] for i, s in enumerate(self.retired_steps.tolist()) if s not in where})
        return torch.stack([where[s] for s in steps])

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "retired": self.retired.clone(),
            "retired_steps": self.retired_steps.clone(),
            "retired_count": self.retired_count,
            "products": dict(self.products),
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.retired.copy_(state["retired"])
        self.retired_steps.copy_(state["retired_steps"])
        self.retired_count = int(state["retired_count"])
        self.products = dict(state["products"])
        self._retired_for = -1
