"""Weights to activations (docs/science.md 9): the activation shift of one optimizer step.

    g = ∇_θ L(θ),  L = mean_i −log p(a_i⁺ | x_i)
    SGD:               θ' = θ − η g
    Adam's first step: θ' = θ − η g / (|g| + ε)   (bias-corrected m̂ = g, v̂ = g²; ≈ −η sign g)
    δ_ℓ = readout_ℓ(θ') − readout_ℓ(θ)

Each step is the first step of a training optimizer (``OptimizerSpec``, lightning_modules.optim),
taken by that optimizer itself (:func:`first_step_direction`), and its shift is
computed with ``torch.func.functional_call`` on substituted parameters, so the model itself is
never modified. Which parameters step (all weights or a LoRA adapter) is the caller's choice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, jvp
from torch.nn.attention import SDPBackend, sdpa_kernel

from loclin.lightning_modules.optim import OptimizerSpec, build_optimizer

Call = Callable[..., torch.Tensor]

Call = Callable[..., torch.Tensor]


def _caller(model: nn.Module, params: dict[str, torch.Tensor]) -> Call:
    def call(*args, **kwargs):
        return functional_call(model, params, args, kwargs)

    return call


def loss_gradient(
    model: nn.Module, names: Sequence[str], loss_of: Callable[[Call], torch.Tensor]
) -> dict[str, torch.Tensor]:
    """∇ of ``loss_of`` w.r.t. the named parameters (the model's .grad untouched)."""
    params = {n: p.detach() for n, p in model.named_parameters() if n in set(names)}
    return grad(lambda p: loss_of(_caller(model, p)))(params)


def first_step_direction(
    model: nn.Module, gradient: dict[str, torch.Tensor], spec: OptimizerSpec
) -> dict[str, torch.Tensor]:
    """The step d with θ' = θ − lr · d that the phase optimizer ``spec`` takes first from θ with
    gradient g (lightning_modules.optim, the one definition training uses): SGD d = g (any
    momentum: its buffer starts at g), Adam d = g / (|g| + ε), AdamW d = λθ + g / (|g| + ε) on
    matrices. Taken by stepping torch's optimizer itself on a float64 copy of each tensor, one
    tensor at a time (no second copy of the model), so d is exact to ~1e-16 · |θ| / lr."""
    params = dict(model.named_parameters())
    direction = {}
    for name, g in gradient.items():
        theta = params[name].detach().double()
        copy = nn.Parameter(theta.clone())
        copy.grad = g.detach().double()
        built = build_optimizer([(name, copy)], spec)  # held: its schedule refers to the optimizer weakly
        built["optimizer"].step()
        direction[name] = ((theta - copy.detach()) / spec.lr).to(g.dtype)
    return direction


def step_direction(
    model: nn.Module, names: Sequence[str], loss_of: Callable[[Call], torch.Tensor], spec: OptimizerSpec | None = None
) -> dict[str, torch.Tensor]:
    """d of :func:`first_step_direction` for the loss ``loss_of`` (default: plain SGD, d = g)."""
    return first_step_direction(model, loss_gradient(model, names, loss_of), spec or OptimizerSpec("sgd", lr=1.0))


@torch.no_grad()
def one_step_shift(
    model: nn.Module,
    direction: dict[str, torch.Tensor],
    eta: float,
    readout_of: Callable[[Call], torch.Tensor],
    base: torch.Tensor | None = None,
) -> torch.Tensor:
    """readout(θ − η d) − readout(θ) for a step direction d from :func:`step_direction`
    (``base``: readout(θ) when the caller already has it)."""
    params = {n: p.detach() for n, p in model.named_parameters() if n in direction}
    stepped = {n: params[n] - eta * direction[n] for n in params}
    if base is None:
        base = readout_of(_caller(model, params))
    return readout_of(_caller(model, stepped)) - base


def first_order_shift(
    model: nn.Module, direction: dict[str, torch.Tensor], eta: float, readout_of: Callable[[Call], torch.Tensor]
) -> torch.Tensor:
    """The linear prediction J(−η d) of :func:`one_step_shift` (a Jacobian-vector product)."""
    params = {n: p.detach() for n, p in model.named_parameters() if n in direction}
    tangent = {n: -eta * direction[n] for n in params}
    with sdpa_kernel(SDPBackend.MATH):  # the fused CPU attention kernels have no forward-mode AD
        _, shift = jvp(lambda p: readout_of(_caller(model, p)), (params,), (tangent,))
    return shift
