"""LightningModule for the synthetic multitask transformer.

Loss: mean cross-entropy over answer tokens only. Metrics per task (torchmetrics): loss,
token accuracy on answer tokens and exact match (every answer token right).
The module exposes what callbacks measure: ``parameter_groups()`` (named groups of trainable
parameters) and ``loss(batch)`` (the training objective on any batch).
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from datamodules.synthetic import IGNORE_INDEX
from datamodules.tasks import TASK_NAMES
from lightning_modules.transformer import TinyDecoder


class SyntheticMultitaskModule(L.LightningModule):
    def __init__(
        self,
        vocab_size: int,
        context: int,
        task_names: list[str],
        n_layers: int = 2,
        d_model: int = 64,
        n_heads: int = 4,
        d_ff: int = 256,
        dropout: float = 0.0,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.98),
        warmup_steps: int = 100,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.model = TinyDecoder(vocab_size, context, n_layers, d_model, n_heads, d_ff, dropout)
        self.task_names = list(task_names)
        self.val_metrics = nn.ModuleList(self._task_metrics(vocab_size) for _ in self.task_names)

    @staticmethod
    def _task_metrics(vocab_size: int) -> MetricCollection:
        return MetricCollection(
            {
                "loss": MeanMetric(),
                "acc": MulticlassAccuracy(vocab_size, average="micro", ignore_index=IGNORE_INDEX),
                "exact": MeanMetric(),
            }
        )

    def parameter_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        return {g: [(f"model.{n}", p) for n, p in params] for g, params in self.model.parameter_groups().items()}

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(tokens)

    @staticmethod
    def answer_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over answer tokens (targets != IGNORE_INDEX)."""
        return F.cross_entropy(logits.transpose(1, 2), target, ignore_index=IGNORE_INDEX)

    def per_token_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch["input"])
        losses = F.cross_entropy(logits.transpose(1, 2), batch["target"], ignore_index=IGNORE_INDEX, reduction="none")
        return logits, losses

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy over the batch's answer tokens."""
        _, losses = self.per_token_loss(batch)
        return losses.sum() / (batch["target"] != IGNORE_INDEX).sum()

    @torch.no_grad()
    def evaluate_batch(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Answer-token loss and accuracy on one batch (for function-space checks)."""
        logits, losses = self.per_token_loss(batch)
        answer = batch["target"] != IGNORE_INDEX
        correct = (logits.argmax(-1) == batch["target"]) & answer
        return {"loss": float(losses.sum() / answer.sum()), "acc": float(correct.sum() / answer.sum())}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        _, losses = self.per_token_loss(batch)
        answer = batch["target"] != IGNORE_INDEX
        loss = losses.sum() / answer.sum()
        self.log("train/loss", loss, prog_bar=True)
        example_loss = losses.sum(1) / answer.sum(1)
        for index in batch["task"].unique().tolist():
            self.log(f"train/{TASK_NAMES[index]}/loss", example_loss[batch["task"] == index].mean())
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        logits, losses = self.per_token_loss(batch)
        answer = batch["target"] != IGNORE_INDEX
        predictions = logits.argmax(-1)
        exact = ((predictions == batch["target"]) | ~answer).all(1).float()
        metrics = self.val_metrics[dataloader_idx]
        metrics["loss"].update(losses.sum(1) / answer.sum(1))
        metrics["acc"].update(logits.transpose(1, 2), batch["target"])
        metrics["exact"].update(exact)

    def on_validation_epoch_end(self) -> None:
        for name, metrics in zip(self.task_names, self.val_metrics):
            for key, value in metrics.compute().items():
                self.log(f"val/{name}/{key}", value)
            metrics.reset()

    def on_train_start(self) -> None:
        """Carry AdamW's state over from the previous phase when a phase asks for it."""
        state = getattr(self, "carried_optimizer_state", None)
        if state is not None:
            self.trainer.optimizers[0].load_state_dict(state)

    def configure_optimizers(self):
        hp = self.hparams
        decay = [p for n, p in self.named_parameters() if p.ndim >= 2 and "embedding" not in n]
        no_decay = [p for n, p in self.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=hp.lr,
            betas=tuple(hp.betas),
        )
        warmup = max(1, hp.warmup_steps)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
