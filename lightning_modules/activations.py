"""The residual stream of a causal LM through forward hooks, also under peft.

h_ℓ is the output of decoder block ℓ (before the final norm): ``hidden_states[ℓ + 1]`` of
transformers' ``output_hidden_states`` for every block but the last, whose entry there has the
final norm applied. Hooks live only inside a ``with`` block and are removed on exit, errors
included, so a model measured is the model it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's stack of decoder blocks: its longest ModuleList of one block class
    (``transformer.h`` for GPT-2, ``model.layers`` for Llama/Qwen; peft wrappers included)."""
    stacks = [
        m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0 and len({type(b) for b in m}) == 1
    ]
    if not stacks:
        raise ValueError(f"{type(model).__name__} has no ModuleList of decoder blocks")
    return max(stacks, key=len)


def _hidden(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def residual_stream(model: nn.Module) -> Iterator[dict[int, torch.Tensor]]:
    """Within the block, every forward pass fills ``captured[ℓ]`` = h_ℓ (B×T×d) for all blocks."""
    captured: dict[int, torch.Tensor] = {}
    handles = []

    def keep(index: int):
        def hook(module, args, output):
            captured[index] = _hidden(output)

        return hook

    try:
        for index, block in enumerate(decoder_blocks(model)):
            handles.append(block.register_forward_hook(keep(index)))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def steering(model: nn.Module, layer: int, vector: torch.Tensor, start: torch.Tensor) -> Iterator[None]:
    """Within the block, h_layer[b, t] += vector for every position t >= start[b] (the
    positions after each row's prompt); ``vector`` is one d-vector for all rows or B×d."""
    block = decoder_blocks(model)[layer]
    per_row = vector if vector.dim() == 2 else vector[None, :]

    def hook(module, args, output):
        hidden = _hidden(output)
        positions = torch.arange(hidden.shape[1], device=hidden.device)
        mask = (positions[None, :] >= start.to(hidden.device)[:, None]).to(hidden.dtype)[..., None]
        steered = hidden + mask * per_row.to(hidden)[:, None, :]
        return (steered, *output[1:]) if isinstance(output, tuple) else steered

    handle = block.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@torch.no_grad()
def steered_last_logits(model: nn.Module, layer: int, tokens: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Logits at the last position of ``tokens`` (1-D) with h_layer there += each row of
    ``vectors``: R×V. Steering starts at the last position, so the prefix is the same for every
    row: it runs once and its key/value cache is repeated for the R steered copies."""
    cache = model(input_ids=tokens[None, :-1], use_cache=True, logits_to_keep=1).past_key_values
    cache.batch_repeat_interleave(len(vectors))
    with steering(model, layer, vectors, torch.zeros(len(vectors), dtype=torch.long)):
        return model(input_ids=tokens[-1:].expand(len(vectors), 1), past_key_values=cache, use_cache=True).logits[:, -1]


def residual_at(model: nn.Module, forward, positions: torch.Tensor) -> torch.Tensor:
    """h_ℓ at one position per row for every block: L×B×d; ``positions`` P×B (P positions per row)
    gives P×L×B×d from the same pass. ``forward()`` runs the model once."""
    with residual_stream(model) as captured:
        forward()
    rows = torch.arange(positions.shape[-1])

    def gather(at: torch.Tensor) -> torch.Tensor:
        return torch.stack([captured[i][rows, at] for i in range(len(captured))])

    return gather(positions) if positions.dim() == 1 else torch.stack([gather(at) for at in positions])


def answer_residuals(
    model, call, part: dict[str, torch.Tensor], ids_key: str, offset: int | tuple[int, ...] = 0
) -> torch.Tensor:
    """h_ℓ at each row's answer position t (+ offset) of a contrast batch (datamodules.contrast),
    for every block: L×B×d, or P×L×B×d for a tuple of P offsets (one forward pass). ``call`` is
    the model or a functional call of it."""
    at = (
        part["answer_pos"] + offset
        if isinstance(offset, int)
        else torch.stack([part["answer_pos"] + o for o in offset])
    )
    # the residuals are all that is read: one position through the unembedding, not T
    return residual_at(model, lambda: call(input_ids=part[ids_key], attention_mask=part["mask"], logits_to_keep=1), at)
