"""The optimizer of a training phase: one definition for training, recovery and the constrained re-run.

``OptimizerSpec`` names it; ``build_optimizer`` makes the torch optimizer and its per-step
learning-rate schedule:

- ``adamw``: torch.optim.AdamW (decoupled weight decay), ``betas``;
- ``adam``: torch.optim.Adam, ``weight_decay`` as an L2 term in the gradient;
- ``sgd``: torch.optim.SGD, ``momentum`` (heavy ball, or ``nesterov``), ``weight_decay`` as L2.
  With momentum 0 and no decay the update is u_t = −η_t g_t, plain gradient descent.

Weight decay applies to matrices only (not biases, norms or embeddings). The schedule is a
linear warm-up over ``warmup_steps`` to ``lr``, then ``constant`` or ``cosine`` down to 0 at the
phase's last step: η_t = lr · min(1, (t+1)/w) · c_t, c_t = ½(1 + cos(π · (t − w)/(T − w))) for
t ≥ w (cosine), else 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where an optimizer is built: config validation stays light
    from torch import nn

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class OptimizerSpec:
    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.0
    nesterov: bool = False
    warmup_steps: int = 0
    schedule: str = "constant"
    steps: int = 0  # the phase's length, for the cosine schedule

    def as_dict(self) -> dict:
        return {**asdict(self), "betas": list(self.betas)}


def spec_problem(spec: OptimizerSpec, frozen_ok: bool = False) -> str | None:
    """The first thing wrong with a spec, as a sentence naming the key; None when it is sound.
    ``frozen_ok``: lr = 0 is allowed (a phase that holds θ fixed and reads fresh batches)."""
    if spec.name not in OPTIMIZERS:
        return f"optim.name='{spec.name}' must be one of {list(OPTIMIZERS)}"
    if not (spec.lr > 0 or (frozen_ok and spec.lr == 0)):
        return f"optim.lr={spec.lr} must be > 0" + (" (or 0 in a phase: θ frozen)" if frozen_ok else "")
    if spec.weight_decay < 0:
        return f"optim.weight_decay={spec.weight_decay} must be >= 0"
    if spec.schedule not in SCHEDULES:
        return f"optim.schedule='{spec.schedule}' must be one of {list(SCHEDULES)}"
    if spec.warmup_steps < 0:
        return f"optim.warmup_steps={spec.warmup_steps} must be >= 0"
    if spec.name != "sgd" and spec.momentum:
        return f"optim.momentum={spec.momentum} is for sgd; {spec.name}'s momentum is optim.betas[0]"
    if spec.name != "sgd" and spec.nesterov:
        return f"optim.nesterov is for sgd, not {spec.name}"
    if not 0 <= spec.momentum < 1:
        return f"optim.momentum={spec.momentum} must be in [0, 1)"
    if spec.nesterov and spec.momentum == 0:
        return "optim.nesterov needs optim.momentum > 0"
    if len(spec.betas) != 2 or not all(0 <= b < 1 for b in spec.betas):
        return f"optim.betas={list(spec.betas)} must be two numbers in [0, 1)"
    return None


def decay_groups(named: Sequence[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict]:
    decay = [p for n, p in named if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in named if not (p.ndim >= 2 and "embedding" not in n)]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def schedule_factor(spec: OptimizerSpec):
    """t -> η_t / lr (see the module docstring)."""
    warmup = max(1, spec.warmup_steps)

    def factor(step: int) -> float:
        value = min(1.0, (step + 1) / warmup)
        if spec.schedule == "cosine" and step >= spec.warmup_steps and spec.steps > spec.warmup_steps:
            progress = min(1.0, (step - spec.warmup_steps) / (spec.steps - spec.warmup_steps))
            value *= 0.5 * (1 + math.cos(math.pi * progress))
        return value

    return factor


def build_optimizer(named: Sequence[tuple[str, nn.Parameter]], spec: OptimizerSpec) -> dict:
    """Lightning's ``configure_optimizers`` answer: the optimizer and a per-step LambdaLR."""
    import torch

    groups = decay_groups(named, spec.weight_decay)
    if spec.name == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=spec.lr, betas=tuple(spec.betas))
    elif spec.name == "adam":
        optimizer = torch.optim.Adam(groups, lr=spec.lr, betas=tuple(spec.betas))
    else:
        optimizer = torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule_factor(spec))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
