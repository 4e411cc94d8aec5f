"""The recovery protocol's operations on a model (SCIENCE.md 5, 6): degradations D2–D4 and
the static bases frozen at θ*. Pure geometry lives in ``geometry/``; this module only reads
the model through ``parameter_groups()``, ``loss(batch)`` and ``forward``.
"""

from __future__ import annotations

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.nn.attention import SDPBackend, sdpa_kernel

from callbacks.parameter_vector import ParameterVector
from callbacks.per_task import task_gradient
from geometry import flat_hvp, lanczos_top_eigenpairs, orthonormalize, topk_basis
from geometry.static_bases import mean_gradient_plane, random_basis, task_vector_basis


def degrade(kind: str, module, vector: ParameterVector, theta_init: torch.Tensor, cfg, seed: int) -> None:
    """Apply D2 (negation), D3 (noise kick) or D4 (reset) in place; D1 is a training phase."""
    theta_star = vector.values()
    generator = torch.Generator().manual_seed(seed + 17)
    if kind == "negation":
        vector.load_values(theta_star - cfg.negation_scale * (theta_star - theta_init))
    elif kind == "noise":
        xi = torch.randn(vector.dim, generator=generator)
        vector.load_values(theta_star + cfg.noise_scale * theta_star.norm() * xi / xi.norm())
    elif kind == "reset":
        groups = module.parameter_groups()
        if cfg.reset_group not in groups:
            raise ValueError(f"recovery.reset_group='{cfg.reset_group}' is not a parameter group; the module has {list(groups)}")
        with torch.no_grad():
            for name, param in groups[cfg.reset_group]:  # as TinyDecoder initialises them
                if ".ln" in name:
                    param.fill_(1.0 if name.endswith("weight") else 0.0)
                elif param.ndim == 1:
                    param.zero_()
                else:
                    param.copy_(0.02 * torch.randn(param.shape, generator=generator))
    else:
        raise ValueError(f"unknown degradation '{kind}'")


def freeze_static_bases(module, datamodule, vector: ParameterVector, cfg, theta_init: torch.Tensor, rolling_basis: torch.Tensor | None, tasks: list[str], seed: int) -> dict[str, torch.Tensor]:
    """S1–S5 and S7 at θ* (S6 needs θ_0 and is added when recovery starts)."""
    target, k = cfg.target, cfg.k
    theta_star = vector.values()
    key = 10**6  # probe keys disjoint from the per-task callback's (step, i)
    target_grads = torch.stack([task_gradient(module, vector, datamodule.probe_batch(target, (key, i))) for i in range(cfg.static_batches)])
    s1, _ = topk_basis(target_grads, k)
    means = [target_grads.mean(0) if t == target else torch.stack([task_gradient(module, vector, datamodule.probe_batch(t, (key, i))) for i in range(cfg.static_batches)]).mean(0) for t in tasks]
    bases = {
        "S1_task_gradients": s1,
        "S2_mean_gradient_plane": mean_gradient_plane(means),
        "S3_task_vector": task_vector_basis(theta_star - theta_init, vector.layout(), k),
        "S5_hessian": hessian_basis(module, datamodule, vector, target, k, cfg.hessian_iterations, seed),
        "S7_random": random_basis(vector.dim, k, seed + 7),
    }
    if rolling_basis is not None:
        bases["S4_rolling_end_of_training"] = orthonormalize(rolling_basis[:, :k])
    rank_zero_info(f"[loclin] froze static bases at θ*: {', '.join(f'{n} (k={b.shape[1]})' for n, b in bases.items())}")
    return {name: basis.float() for name, basis in bases.items()}


def hessian_basis(module, datamodule, vector: ParameterVector, task: str, k: int, iterations: int, seed: int) -> torch.Tensor:
    """S5: top-k eigenvectors of the Hessian of task T's loss at θ (Lanczos on HVPs)."""
    batch = datamodule.probe_batch(task, (10**6 + 1, 0))

    def loss_of(call, params):
        return module.answer_loss(call(batch["input"]), batch["target"])

    hvp = flat_hvp(module, loss_of, vector.names)
    # the fused CPU attention kernels have no forward-mode AD; the math kernel does
    with sdpa_kernel(SDPBackend.MATH):
        _, eigenvectors = lanczos_top_eigenpairs(hvp, vector.dim, k, iterations=iterations, seed=seed)
    return eigenvectors
