"""LightningModule for the synthetic multitask transformer (TinyDecoder on algorithmic tasks).

Training, validation, metrics and the optimizer are those of :class:`AnswerTokenModule`;
this module adds the model, its parameter groups (embed, block{i}.attn/mlp, head) and D4's
re-initialisation.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
from loclin.datamodules.tasks import TASK_NAMES
from loclin.lightning_modules.answer_tokens import AnswerTokenModule
from loclin.lightning_modules.optim import OptimizerSpec
from loclin.lightning_modules.sections import DecoderConfig
from loclin.lightning_modules.transformer import TinyDecoder


class SyntheticMultitaskModule(AnswerTokenModule):
    def __init__(
        self,
        vocab_size: int,
        context: int,
        task_names: list[str],
        shape: DecoderConfig | None = None,
        optim: OptimizerSpec | None = None,
    ):
        """``shape``: the decoder (``model:`` of a config); ``optim``: the optimizer when no phase sets one."""
        super().__init__(task_names, TASK_NAMES, optim)
        shape = shape or DecoderConfig()
        self.save_hyperparameters({"vocab_size": vocab_size, "context": context, "model": asdict(shape)})
        self.model = TinyDecoder(
            vocab_size, context, shape.n_layers, shape.d_model, shape.n_heads, shape.d_ff, shape.dropout
        )

    def parameter_groups(self):
        return {g: [(f"model.{n}", p) for n, p in params] for g, params in self.model.parameter_groups().items()}

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(tokens)  # sequences are never padded inside the answer

    def reset_group(self, group: str, generator: torch.Generator) -> None:
        with torch.no_grad():
            for name, param in self.parameter_groups()[group]:  # as TinyDecoder initialises them
                if ".ln" in name:
                    param.fill_(1.0 if name.endswith("weight") else 0.0)
                elif param.ndim == 1:
                    param.zero_()
                else:
                    param.copy_(0.02 * torch.randn(param.shape, generator=generator))
