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
from loclin.datamodules.phased import IGNORE_INDEX, shard_rows
from loclin.lightning_modules.optim import OptimizerSpec, build_optimizer
from torch import nn
from torchmetrics import MeanMetric, MetricCollection


def answer_positions(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, columns) of the answer tokens of a B×T target. The cross-entropy is taken on those
    rows of the logits alone: a vocabulary-wide log-softmax at every position (50k classes on a
    language model) cost more than the model's forward pass. The index is computed from the
    target, never from the logits, so vmap over parameters and forward-mode AD see a fixed gather."""
    return (target != IGNORE_INDEX).nonzero(as_tuple=True)


class AnswerTokenModule(L.LightningModule):
    def __init__(self, task_names: Sequence[str], task_registry: Sequence[str], optim: OptimizerSpec | None = None):
        """``task_names``: tasks validated (one dataloader each, in order); ``task_registry``:
        the names that ``batch["task"]`` indexes; ``optim``: the optimizer until a phase sets its own."""
        super().__init__()
        self.task_names = list(task_names)
        self.task_registry = list(task_registry)
        self.val_metrics = nn.ModuleList(self._task_metrics() for _ in self.task_names)
        self.carried_optimizer_state: dict | None = None
        self.optim_spec = optim or OptimizerSpec()  # the phase's, once the experiment sets it
        self.grad_shards = 1  # trainer.grad_shards in one process, set by the experiment (see training_step)
        self._pending_shard_losses: tuple[torch.Tensor, list[torch.Tensor]] | None = None

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
        rows, cols = answer_positions(target)
        return F.cross_entropy(logits[rows, cols], target[rows, cols])

    def per_token_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The logits and the B×T cross-entropy, 0 where the target is IGNORE_INDEX."""
        logits, target = self.logits(batch), batch["target"]
        rows, cols = answer_positions(target)
        answer_losses = F.cross_entropy(logits[rows, cols], target[rows, cols], reduction="none")
        return logits, logits.new_zeros(target.shape).index_put((rows, cols), answer_losses)

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
        """Mean loss over the global batch's answer tokens, reduced over ``grad_shards`` strided
        shards the way that many DDP ranks reduce it.

        Shard s holds rows s, s + S, … and its loss is sum(loss) / loss_denominator, with
        loss_denominator = the global batch's answer tokens / S, so the mean of the S shard
        losses is the global mean. Under DDP each rank backpropagates its one shard and the
        all-reduce averages the gradients; in one process ``backward`` runs one backward pass per
        shard, each scaled by 1/S, accumulating in shard order. For S = 2 the two give the same
        gradient bit for bit (a + b = b + a, and scaling by 1/2 is exact), so long runs stay equal.
        """
        local_shards = self.grad_shards if self.trainer.world_size == 1 else 1
        shards = [batch] if local_shards == 1 else [shard_rows(batch, s, local_shards) for s in range(local_shards)]
        shard_losses, example_losses = [], []
        for shard in shards:
            _, losses = self.per_token_loss(shard)
            answer = shard["target"] != IGNORE_INDEX
            shard_losses.append(losses.sum() / shard.get("loss_denominator", answer.sum()))
            example_losses.append(losses.detach().sum(1) / answer.sum(1))
        loss = shard_losses[0] if local_shards == 1 else torch.stack(shard_losses).mean()
        self._pending_shard_losses = (loss, shard_losses) if local_shards > 1 else None
        self.log("train/loss", loss, prog_bar=True)
        example_loss = torch.cat(example_losses)
        tasks = torch.cat([shard["task"] for shard in shards])
        for index in tasks.unique().tolist():
            self.log(f"train/{self.task_registry[index]}/loss", example_loss[tasks == index].mean())
        return loss

    def backward(self, loss: torch.Tensor, *args, **kwargs) -> None:
        """One backward pass per gradient shard of ``training_step``, else Lightning's one."""
        pending, self._pending_shard_losses = self._pending_shard_losses, None
        if pending is None or pending[0] is not loss:  # e.g. a precision plugin scaled the loss
            super().backward(loss, *args, **kwargs)
            return
        shard_losses = pending[1]
        for shard_loss in shard_losses:
            (shard_loss / len(shard_losses)).backward(*args, **kwargs)

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
        """Carry the optimizer's state over from the previous phase when a phase asks for it."""
        if self.carried_optimizer_state is not None:
            self.trainer.optimizers[0].load_state_dict(self.carried_optimizer_state)

    def reset_group(self, group: str, generator: torch.Generator) -> None:
        """D4: re-initialise one parameter group as at construction."""
        raise NotImplementedError

    def configure_optimizers(self):
        """The phase's optimizer (``optim_spec``: lightning_modules.optim)."""
        return build_optimizer(self.trainable_parameters(), self.optim_spec)
