"""Weights to activations (SCIENCE.md 9): the activation shift of one optimizer step.

    g = ∇_θ L(θ),  L = mean_i −log p(a_i⁺ | x_i)
    SGD:               θ' = θ − η g
    Adam's first step: θ' = θ − η g / (|g| + ε)   (bias-corrected m̂ = g, v̂ = g²; ≈ −η sign g)
    δ_ℓ = readout_ℓ(θ') − readout_ℓ(θ)

computed with ``torch.func.functional_call`` on substituted parameters, so the model itself is
never modified. Which parameters step (all weights or a LoRA adapter) is the caller's choice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, jvp
from torch.nn.attention import SDPBackend, sdpa_kernel

Call = Callable[..., torch.Tensor]
STEP_RULES = ("sgd", "adam_first_step")


def _caller(model: nn.Module, params: dict[str, torch.Tensor]) -> Call:
    def call(*args, **kwargs):
        return functional_call(model, params, args, kwargs)

    return call


def loss_gradient(model: nn.Module, names: Sequence[str], loss_of: Callable[[Call], torch.Tensor]) -> dict[str, torch.Tensor]:
    """∇ of ``loss_of`` w.r.t. the named parameters (the model's .grad untouched)."""
    params = {n: p.detach() for n, p in model.named_parameters() if n in set(names)}
    return grad(lambda p: loss_of(_caller(model, p)))(params)


def apply_step_rule(gradient: dict[str, torch.Tensor], rule: str = "sgd", eps: float = 1e-8) -> dict[str, torch.Tensor]:
    """The per-parameter step d with θ' = θ − η d: g (SGD) or g/(|g| + ε) (Adam's first step)."""
    if rule not in STEP_RULES:
        raise ValueError(f"unknown step rule '{rule}'; one of {list(STEP_RULES)}")
    if rule == "sgd":
        return gradient
    return {n: g / (g.abs() + eps) for n, g in gradient.items()}


def step_direction(model: nn.Module, names: Sequence[str], loss_of: Callable[[Call], torch.Tensor], rule: str = "sgd") -> dict[str, torch.Tensor]:
    return apply_step_rule(loss_gradient(model, names, loss_of), rule)


@torch.no_grad()
def one_step_shift(model: nn.Module, direction: dict[str, torch.Tensor], eta: float, readout_of: Callable[[Call], torch.Tensor], base: torch.Tensor | None = None) -> torch.Tensor:
    """readout(θ − η d) − readout(θ) for a step direction d from :func:`step_direction`
    (``base``: readout(θ) when the caller already has it)."""
    params = {n: p.detach() for n, p in model.named_parameters() if n in direction}
    stepped = {n: params[n] - eta * direction[n] for n in params}
    if base is None:
        base = readout_of(_caller(model, params))
    return readout_of(_caller(model, stepped)) - base


def first_order_shift(model: nn.Module, direction: dict[str, torch.Tensor], eta: float, readout_of: Callable[[Call], torch.Tensor]) -> torch.Tensor:
    """The linear prediction J(−η d) of :func:`one_step_shift` (a Jacobian-vector product)."""
    params = {n: p.detach() for n, p in model.named_parameters() if n in direction}
    tangent = {n: -eta * direction[n] for n in params}
    with sdpa_kernel(SDPBackend.MATH):  # the fused CPU attention kernels have no forward-mode AD
        _, shift = jvp(lambda p: readout_of(_caller(model, p)), (params,), (tangent,))
    return shift
