"""The quadratic protocol's section (``quadratic:``): GD on a diagonal quadratic, and its checks."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import DictConfig

from loclin.schema import protocol_section, require


@protocol_section("quadratic")
@dataclass
class QuadraticConfig:
    dim: int = 2000
    exponent: float = 1.0  # λ_i = 1 / i^exponent
    steps: int = 1000
    lr_scale: float = 0.9  # η = lr_scale / λ_max
    prefix_ms: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    k: int = 8  # top-k Hessian eigenspace
    window: int = 16  # rolling gradient basis
    k_rolling: int = 4
    drift_lags: list[int] = field(default_factory=lambda: [25, 100, 200, 400])


def validate_quadratic(c: DictConfig) -> None:
    q = c.quadratic
    require(
        q.dim >= 2 and q.steps >= 1 and 0 < q.lr_scale < 2,
        "quadratic: dim >= 2, steps >= 1 and 0 < lr_scale < 2 are needed for GD to converge",
    )
    require(
        len(q.prefix_ms) > 0 and min(q.prefix_ms) >= 1,
        f"quadratic.prefix_ms={list(q.prefix_ms)} must name at least one positive prefix length m",
    )
    require(
        len(q.drift_lags) > 0 and min(q.drift_lags) >= 1,
        f"quadratic.drift_lags={list(q.drift_lags)} must name at least one positive lag",
    )
    require(
        max(q.prefix_ms) <= q.steps and 1 <= q.k <= q.dim and 1 <= q.k_rolling <= q.window,
        "quadratic: prefix_ms must fit in steps, k in dim, k_rolling in window",
    )
