"""One flat view of the measured parameters, in a fixed order of named groups."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ParameterVector:
    """The concatenation θ ∈ R^D of the parameters in ``groups`` (group order, then name order).

    ``slices`` maps each group to its coordinate range, so per-group quantities are slices of
    the same flat vector.
    """

    def __init__(self, groups: dict[str, list[tuple[str, nn.Parameter]]], selected: Sequence[str] | None = None):
        chosen = list(groups) if not selected else list(selected)
        unknown = [g for g in chosen if g not in groups]
        if unknown:
            raise ValueError(f"unknown parameter group(s) {unknown}; the module has {list(groups)}")
        self.params: list[nn.Parameter] = []
        self.names: list[str] = []
        self.slices: dict[str, tuple[int, int]] = {}
        offset = 0
        for group in chosen:
            start = offset
            for name, param in groups[group]:
                if param.requires_grad:
                    self.params.append(param)
                    self.names.append(name)
                    offset += param.numel()
            if offset > start:
                self.slices[group] = (start, offset)
        self.dim = offset

    def write_grads(self, out: torch.Tensor) -> None:
        """Copy the current .grad of every parameter into ``out`` (zeros where grad is None)."""
        offset = 0
        for p in self.params:
            n = p.numel()
            if p.grad is None:
                out[offset : offset + n].zero_()
            else:
                out[offset : offset + n].copy_(p.grad.reshape(-1))
            offset += n

    def write_values(self, out: torch.Tensor) -> None:
        offset = 0
        for p in self.params:
            n = p.numel()
            out[offset : offset + n].copy_(p.detach().reshape(-1))
            offset += n

    def values(self) -> torch.Tensor:
        """A new flat copy of θ."""
        out = torch.empty(self.dim)
        self.write_values(out)
        return out

    @torch.no_grad()
    def load_values(self, flat: torch.Tensor) -> None:
        """Set the parameters from a flat vector (the inverse of :meth:`write_values`)."""
        offset = 0
        for p in self.params:
            n = p.numel()
            p.copy_(flat[offset : offset + n].view_as(p))
            offset += n

    def layout(self) -> list[tuple[int, tuple[int, ...]]]:
        """(offset, shape) of every parameter inside the flat vector."""
        offsets, offset = [], 0
        for p in self.params:
            offsets.append((offset, tuple(p.shape)))
            offset += p.numel()
        return offsets

    def subtract_from_values(self, out: torch.Tensor) -> None:
        """In place: ``out`` ← θ − ``out`` (turns a stored θ_t into θ_{t+1} − θ_t in one pass)."""
        offset = 0
        for p in self.params:
            n = p.numel()
            segment = out[offset : offset + n]
            torch.sub(p.detach().reshape(-1), segment, out=segment)
            offset += n

    def flatten(self, tensors: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """Concatenate per-parameter tensors (e.g. from torch.autograd.grad) in this order."""
        return torch.cat(
            [torch.zeros(p.numel()) if t is None else t.detach().reshape(-1).float() for p, t in zip(self.params, tensors)]
        )
