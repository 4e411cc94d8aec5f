"""One flat view of the measured parameters, in a fixed order of named groups."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import torch
from loclin.geometry.sharded import CoordinateShard
from torch import nn

GroupSpec = Sequence[str] | Mapping[str, Sequence[str]] | None


def parameter_groups(module: nn.Module, spec: GroupSpec = None) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Named groups of ``module``'s trainable parameters, each in ``named_parameters()`` order.

    ``spec`` None: the module's own ``parameter_groups()`` where it has one (loclin's modules), else
    one group per top-level child (the first part of each parameter's name). A list of name
    prefixes: one group per prefix, named by it. A mapping: group name -> its prefixes. A parameter
    belongs to the first prefix it falls under (its name is the prefix or starts with prefix + ".");
    parameters under none are not measured. A prefix that matches no trainable parameter is an
    error naming it, and so is a module with no trainable parameter."""
    trainable = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError(f"{type(module).__name__} has no trainable parameter to measure")
    if spec is None:
        own = getattr(module, "parameter_groups", None)
        if callable(own):
            try:
                return own()
            except NotImplementedError:
                pass
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {}
        for name, p in trainable:
            groups.setdefault(name.split(".")[0], []).append((name, p))
        return groups
    if isinstance(spec, str):  # one prefix (a string is itself a sequence of strings)
        spec = [spec]
    prefixes = {prefix: [prefix] for prefix in spec} if not isinstance(spec, Mapping) else dict(spec)
    owner = {
        prefix: group
        for group, listed in prefixes.items()
        for prefix in ([listed] if isinstance(listed, str) else listed)
    }
    nested = [(inner, outer) for inner in owner for outer in owner if inner != outer and inner.startswith(f"{outer}.")]
    if nested:
        inner, outer = nested[0]
        raise ValueError(
            f"parameter groups overlap: prefix '{inner}' ({owner[inner]}) lies under '{outer}' ({owner[outer]}); "
            "a parameter is measured in one group, so give disjoint prefixes"
        )
    groups = {group: [] for group in prefixes}
    for name, p in trainable:
        match = next((prefix for prefix in owner if name == prefix or name.startswith(f"{prefix}.")), None)
        if match is not None:
            groups[owner[match]].append((name, p))
    empty = [group for group, members in groups.items() if not members]
    if empty:
        heads = sorted({name.split(".")[0] for name, _ in trainable})
        raise ValueError(
            f"parameter group(s) {empty} match no trainable parameter of {type(module).__name__} "
            f"(its top-level names: {heads})"
        )
    return groups


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
        self.shard = CoordinateShard(0, offset, offset, sharded=False)
        self._scratch: torch.Tensor | None = None  # θ_{t+1}, flat, for subtract_from_values

    @property
    def nbytes(self) -> int:
        """The scratch row of θ_{t+1} that :meth:`subtract_from_values` fills (D float32s)."""
        return self.dim * 4

    def split(self, rank: int, world_size: int) -> ParameterVector:
        """This rank's share of θ for a coordinate-sharded window: whole parameters, contiguous
        in θ, parameter i going to rank ⌊world_size · (its middle coordinate) / D⌋, so about
        D / world_size coordinates each. Every group keeps a slice, empty if the rank holds none
        of it, so all ranks hold the same groups (and make the same Gram reductions)."""
        offsets = [0]
        for p in self.params:
            offsets.append(offsets[-1] + p.numel())
        owner = [min(world_size - 1, world_size * (a + b) // (2 * self.dim)) for a, b in zip(offsets, offsets[1:])]
        mine = [i for i, r in enumerate(owner) if r == rank]
        if not mine:
            raise ValueError(
                f"geometry.shard_windows: {len(self.params)} measured parameters cannot be shared by {world_size} ranks"
            )
        start, stop = offsets[mine[0]], offsets[mine[-1] + 1]
        part = copy.copy(self)
        part.params = [self.params[i] for i in mine]
        part.names = [self.names[i] for i in mine]
        part.slices = {
            g: (min(max(a, start), stop) - start, min(max(b, start), stop) - start) for g, (a, b) in self.slices.items()
        }
        part.dim = stop - start
        part.shard = CoordinateShard(start, stop, self.dim, sharded=True)
        return part

    @staticmethod
    def _concatenate_into(tensors: list[torch.Tensor | None], out: torch.Tensor) -> bool:
        """``out`` ← the flattened ``tensors`` in one ``torch.cat`` (one kernel instead of a Python
        copy per parameter) when every one is there with ``out``'s dtype and device; False, writing
        nothing, otherwise (a missing grad, half precision, parameters on a GPU)."""
        if any(t is None or t.dtype != out.dtype or t.device != out.device for t in tensors):
            return False
        torch.cat([t.reshape(-1) for t in tensors], out=out)
        return True

    @torch.no_grad()
    def write_grads(self, out: torch.Tensor) -> None:
        """Copy the current .grad of every parameter into ``out`` (zeros where grad is None)."""
        if self._concatenate_into([p.grad for p in self.params], out):
            return
        offset = 0
        for p in self.params:
            n = p.numel()
            if p.grad is None:
                out[offset : offset + n].zero_()
            else:
                out[offset : offset + n].copy_(p.grad.reshape(-1))
            offset += n

    def copy_grads_as_accumulated(self, destination: Callable[[], torch.Tensor]) -> list:
        """Hooks (``register_post_accumulate_grad_hook``) that copy each parameter's .grad into its
        segment of ``destination()`` as soon as backward has accumulated it: g as backward made it,
        before anything later rescales it (a Hugging Face Trainer clips before its callbacks see
        the gradient). With gradient accumulation each micro-batch copies the running sum, so the
        step's last copy is its g; a parameter backward does not reach keeps what the segment held,
        so zero ``destination()`` when a step begins. Returns the handles (``.remove()`` each)."""
        handles, offset = [], 0
        for p in self.params:
            n = p.numel()

            def copy(param: torch.Tensor, start: int = offset, stop: int = offset + n) -> None:
                destination()[start:stop].copy_(param.grad.reshape(-1))

            handles.append(p.register_post_accumulate_grad_hook(copy))
            offset += n
        return handles

    @torch.no_grad()
    def write_values(self, out: torch.Tensor) -> None:
        if self._concatenate_into([p.detach() for p in self.params], out):
            return
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

    @torch.no_grad()
    def subtract_from_values(self, out: torch.Tensor) -> None:
        """In place: ``out`` ← θ − ``out`` (turns a stored θ_t into θ_{t+1} − θ_t). θ is gathered
        into a scratch row by one ``torch.cat`` where it can be, then one subtraction: the same
        element-wise differences as a subtraction per parameter, without a Python loop over them."""
        if self._scratch is None or self._scratch.shape != out.shape or self._scratch.dtype != out.dtype:
            self._scratch = torch.empty_like(out)
        if self._concatenate_into([p.detach() for p in self.params], self._scratch):
            torch.sub(self._scratch, out, out=out)
            return
        offset = 0
        for p in self.params:
            n = p.numel()
            segment = out[offset : offset + n]
            torch.sub(p.detach().reshape(-1), segment, out=segment)
            offset += n

    def flatten(self, tensors: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """Concatenate per-parameter tensors (e.g. from torch.autograd.grad) in this order."""
        return torch.cat(
            [
                torch.zeros(p.numel()) if t is None else t.detach().reshape(-1).float()
                for p, t in zip(self.params, tensors)
            ]
        )


class SketchedParameterVector:
    """The window-facing half of ParameterVector (``dim``, ``slices``, ``write_grads``,
    ``write_values``, ``subtract_from_values``) writing S v instead of v, S a seeded
    CountSketch per parameter group (geometry.sketch): a window then holds W×m floats instead
    of W×D, and bases, spectra, captures and drift are estimated in sketch space.
    u_t = θ_{t+1} − θ_t is sketched as S θ_{t+1} − S θ_t (S is linear); S θ_{t+1} is kept and
    reused as the next step's S θ while no parameter has changed (tensor version counters),
    so a step costs two sketch passes (gradient, values), not three."""

    def __init__(self, vector: ParameterVector, sketch_dim: int, seed: int = 0):
        from loclin.geometry.sketch import CountSketch

        self.vector = vector
        self.sketch = CountSketch({g: stop - start for g, (start, stop) in vector.slices.items()}, sketch_dim, seed)
        self.dim = self.sketch.dim
        self.input_dim = vector.dim
        self.shard = CoordinateShard(0, self.dim, self.dim, sharded=False)
        self.slices = self.sketch.blocks
        self.names = vector.names
        self.pieces: list[tuple[nn.Parameter, str, int]] = []  # (parameter, group, offset in the group)
        offset = 0
        for param in vector.params:
            group = next(g for g, (start, stop) in vector.slices.items() if start <= offset < stop)
            self.pieces.append((param, group, offset - vector.slices[group][0]))
            offset += param.numel()
        self._scratch = torch.zeros(self.dim)
        self._scratch_versions: tuple[int, ...] | None = None  # parameter versions _scratch was sketched at

    @property
    def nbytes(self) -> int:
        return self.sketch.nbytes + self._scratch.numel() * 4

    def _versions(self) -> tuple[int, ...]:
        return tuple(p._version for p, _, _ in self.pieces)

    @torch.no_grad()
    def write_grads(self, out: torch.Tensor) -> None:
        self.sketch.apply_pieces(((g, o, p.grad) for p, g, o in self.pieces if p.grad is not None), out)

    @torch.no_grad()
    def write_values(self, out: torch.Tensor) -> None:
        if self._scratch_versions is not None and self._scratch_versions == self._versions():
            out.copy_(self._scratch)
            return
        self.sketch.apply_pieces(((g, o, p.detach()) for p, g, o in self.pieces), out)

    def subtract_from_values(self, out: torch.Tensor) -> None:
        """In place: ``out`` ← S θ − ``out``."""
        self._scratch_versions = None
        self.write_values(self._scratch)
        self._scratch_versions = self._versions()
        torch.sub(self._scratch, out, out=out)
