"""Thin adapters from Lightning hooks to ``geometry/``.

A callback only talks to the LightningModule through what it exposes for measurement:
``parameter_groups()`` (named groups of trainable parameters) and ``loss(batch)``.
"""

from callbacks.drift import DriftCallback
from callbacks.gradient_window import GradientWindowCallback
from callbacks.per_task import PerTaskGradientCallback
from callbacks.rolling_basis import RollingBasisCallback

__all__ = ["DriftCallback", "GradientWindowCallback", "PerTaskGradientCallback", "RollingBasisCallback"]
