"""A seeded CountSketch S: R^D → R^m, applied per parameter group, for windows too large to keep.

Each group g (D_g coordinates) owns a block of m_g ≈ m·D_g/D sketch coordinates (groups no
larger than their share are kept exactly). Within a block, (S x)_j = Σ_{i: h(i)=j} s(i) x_i with
a seeded bucket h(i) and sign s(i) per coordinate, stored as an int32 and an int8 per
coordinate (5 bytes; GPT-2-124M: 622 MB): the D×m matrix is never formed, and a vector is
sketched parameter by parameter, in chunks, without ever concatenating the D-vector.

Error bounds (per block of size m, for fixed x, y, over the seed):
    E⟨Sx, Sy⟩ = ⟨x, y⟩,   Var⟨Sx, Sy⟩ = (‖x‖²‖y‖² + ⟨x, y⟩² − 2 Σ_i x_i² y_i²) / m  ≤  2‖x‖²‖y‖² / m.
So every entry of a sketched window's Gram errs by about sqrt(2/m)·‖x‖‖y‖, the Gram by
‖E‖ ≲ sqrt(2W/m)·‖G‖, and by Wedin's theorem the top-k subspace of the window, its principal
angles to another window's and its held-out captures move by O(‖E‖ / gap) with gap the
distance between the k-th and (k+1)-th squared singular values; spectra (energy fractions)
err by O(sqrt(2/m)). m = 2^16 puts the entry error near 0.6% of the norms.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

CHUNK = 1 << 22  # coordinates sketched per pass (bounds the temporaries)


class CountSketch:
    def __init__(self, group_sizes: dict[str, int], sketch_dim: int, seed: int = 0):
        total = sum(group_sizes.values())
        if sketch_dim < len(group_sizes):
            raise ValueError(f"sketch_dim={sketch_dim} is smaller than the number of groups ({len(group_sizes)})")
        self.input_dim = total
        self.blocks: dict[str, tuple[int, int]] = {}
        self.buckets: dict[str, torch.Tensor | None] = {}
        self.signs: dict[str, torch.Tensor | None] = {}
        offset = 0
        for index, (name, size) in enumerate(group_sizes.items()):
            share = max(1, round(sketch_dim * size / total))
            exact = size <= share
            width = size if exact else share
            self.blocks[name] = (offset, offset + width)
            offset += width
            if exact:
                self.buckets[name] = self.signs[name] = None
                continue
            generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
            self.buckets[name] = torch.randint(0, width, (size,), generator=generator, dtype=torch.int32)
            self.signs[name] = torch.randint(0, 2, (size,), generator=generator, dtype=torch.int8) * 2 - 1
        self.dim = offset

    @property
    def nbytes(self) -> int:
        return sum(b.numel() * 5 for b in self.buckets.values() if b is not None)

    def add_piece(self, out: torch.Tensor, group: str, offset: int, values: torch.Tensor) -> None:
        """out[block of group] += S_group applied to ``values`` placed at ``offset`` in the group."""
        start, stop = self.blocks[group]
        block = out[start:stop]
        flat = values.reshape(-1)
        buckets, signs = self.buckets[group], self.signs[group]
        if buckets is None:
            block[offset : offset + flat.numel()] += flat.to(block.dtype)
            return
        for first in range(0, flat.numel(), CHUNK):
            chunk = flat[first : first + CHUNK].to(block.dtype)
            where = slice(offset + first, offset + first + chunk.numel())
            block.index_add_(0, buckets[where], chunk * signs[where])

    def apply_pieces(
        self, pieces: Iterable[tuple[str, int, torch.Tensor]], out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """S x for x given as (group, offset within the group, values) pieces."""
        out = torch.zeros(self.dim) if out is None else out.zero_()
        for group, offset, values in pieces:
            self.add_piece(out, group, offset, values)
        return out

    def apply(self, vector: torch.Tensor, group_slices: dict[str, tuple[int, int]]) -> torch.Tensor:
        """S x for a flat x whose groups sit at ``group_slices`` (tests and small models)."""
        return self.apply_pieces((name, 0, vector[start:stop]) for name, (start, stop) in group_slices.items())

    def matrix(self) -> torch.Tensor:
        """The dense m×D matrix (tests only)."""
        dense = torch.zeros(self.dim, self.input_dim)
        column = 0
        for name, (start, stop) in self.blocks.items():
            buckets, signs = self.buckets[name], self.signs[name]
            size = (stop - start) if buckets is None else buckets.numel()
            for i in range(size):
                if buckets is None:
                    dense[start + i, column + i] = 1.0
                else:
                    dense[start + int(buckets[i]), column + i] = float(signs[i])
            column += size
        return dense
