"""Thin adapters from Lightning hooks to ``geometry/``: hook -> geometry object -> log.

A callback only talks to the LightningModule through what it exposes for measurement:
``parameter_groups()`` (named groups of trainable parameters), ``loss(batch)`` and, for a causal LM,
``language_model()`` (the network whose blocks activation hooks read). The callbacks
that read per-step vectors share one ``callbacks.gradient_stream.GradientStream``. Import from the
module that defines a name; the package imports nothing, so ``callbacks.keys`` (the summary keys the
callbacks write) stays light for the reports.
"""
