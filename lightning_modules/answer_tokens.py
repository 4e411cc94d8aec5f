"""What every loclin LightningModule shares: a next-token model trained on answer tokens only.

A batch is ``{"input": B×T token ids, "target": B×T next tokens (IGNORE_INDEX except on answer
tokens), "task": B task indices}``, plus ``"attention_mask"`` when sequences are padded.
Loss: mean cross-entropy over answer tokens. Metrics per task (torchmetrics): loss, token
accuracy on answer tokens, exact match (every answer token right).

A subclass provides ``forward(input, attention_mask=None) -> logits``, ``parameter_groups()``
(named groups of the trainable parameters the callbacks measure) and ``trainable_parameters()``.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection

from datamodules.phased import IGNORE_INDEX


class AnswerTokenModule(L.LightningModule):
    def __init__(self, task_names: Sequence[str], task_registry: Sequence[str]):
        """``task_names``: tasks validated (one dataloader each, in order); ``task_registry``:
        the names that ``batch["task"]`` indexes."""
        super().__init__()
        self.task_names = list(task_names)
        self.task_registry = list(task_registry)
        self.val_metrics = nn.ModuleList(self._task_metrics() for _ in self.task_names)
        self.carried_optimizer_state: dict | None = None

    @staticmethod
    def _task_metrics() -> MetricCollection:
        return MetricCollection({"loss": MeanMetric(), "acc": MeanMetric(), "exact": MeanMetric()})

    def parameter_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        raise NotImplementedError

    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self(batch["input"], batch.get("attention_mask"))

    @staticmethod
    def answer_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over answer tokens (targets != IGNORE_INDEX)."""
        return F.cross_entropy(logits.transpose(1, 2), target, ignore_index=IGNORE_INDEX)

    def per_token_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.logits(batch)
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
        """Mean loss over the batch's answer tokens; a data-parallel shard divides by its share of
        the global batch's tokens instead (``loss_denominator``), so that DDP's gradient average
        is the global batch's gradient."""
        _, losses = self.per_token_loss(batch)
        answer = batch["target"] != IGNORE_INDEX
        loss = losses.sum() / batch.get("loss_denominator", answer.sum())
        self.log("train/loss", loss, prog_bar=True)
        example_loss = losses.sum(1) / answer.sum(1)
        for index in batch["task"].unique().tolist():
            self.log(f"train/{self.task_registry[index]}/loss", example_loss[batch["task"] == index].mean())
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        logits, losses = self.per_token_loss(batch)
        answer = batch["target"] != IGNORE_INDEX
        hits = (logits.argmax(-1) == batch["target"]) & answer
        metrics = self.val_metrics[dataloader_idx]
        metrics["loss"].update(losses.sum(1) / answer.sum(1))
        metrics["acc"].update(hits.sum() / answer.sum(), weight=answer.sum())  # micro: over all answer tokens
        metrics["exact"].update((hits | ~answer).all(1).float())

    def on_validation_epoch_end(self) -> None:
        for name, metrics in zip(self.task_names, self.val_metrics):
            for key, value in metrics.compute().items():
                self.log(f"val/{name}/{key}", value)
            metrics.reset()

    def on_train_start(self) -> None:
        """Carry AdamW's state over from the previous phase when a phase asks for it."""
        if self.carried_optimizer_state is not None:
            self.trainer.optimizers[0].load_state_dict(self.carried_optimizer_state)

    def reset_group(self, group: str, generator: torch.Generator) -> None:
        """D4: re-initialise one parameter group as at construction."""
        raise NotImplementedError

    def configure_optimizers(self):
        """AdamW (decay on matrices only) with a linear warm-up to ``hparams.lr``."""
        hp = self.hparams
        trainable = self.trainable_parameters()
        decay = [p for n, p in trainable if p.ndim >= 2 and "embedding" not in n]
        no_decay = [p for n, p in trainable if not (p.ndim >= 2 and "embedding" not in n)]
        groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW(
            [group for group in groups if group["params"]],
            lr=hp.lr,
            betas=tuple(hp.betas),
        )
        warmup = max(1, hp.warmup_steps)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
