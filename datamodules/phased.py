"""What every loclin datamodule shares: batches indexed by the global step, phases, task subsets.

Every training batch is a pure function of (seed, phase, global step), so a resumed run sees
exactly the batches an uninterrupted run would. An "epoch" is a block of ``steps_per_epoch``
batches (it sets the validation and checkpoint cadence, not a pass over a dataset).

A subclass holds one *sampler* per task (``samplers[name]``, each with ``task_index`` and
``sample(rng, n)``) and a ``collate(parts)`` that turns ``[(sampler, sample), …]`` into a
batch dict (``input``, ``target``, ``task`` and, if padded, ``attention_mask``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from loclin.datamodules.sections import DataConfig
from torch.utils.data import DataLoader, Dataset, Sampler

IGNORE_INDEX = -100

Collate = Callable[[list[tuple[Any, Any]]], dict[str, torch.Tensor]]


class StepSampler(Sampler[int]):
    """Yields global batch indices g, g+1, … (``steps_per_epoch`` of them), where g is the
    trainer's global step when the epoch starts, so batch i is always trained at step i,
    also after a resume (Lightning's epoch counter can be off by one there)."""

    def __init__(self, steps_per_epoch: int, first_step: Callable[[], int]):
        self.steps_per_epoch = steps_per_epoch
        self.first_step = first_step

    def __iter__(self) -> Iterator[int]:
        start = self.first_step()
        return iter(range(start, start + self.steps_per_epoch))

    def __len__(self) -> int:
        return self.steps_per_epoch


class SeededBatches(Dataset):
    """dataset[i] is training batch i: ``batch_size`` examples of the chosen tasks.

    Under data parallelism (``shard = (rank, world_size)``) batch i is still drawn whole, and
    each rank keeps rows rank, rank + world_size, …; ``loss_denominator`` (the global batch's
    answer tokens / world_size) then makes the ranks' averaged gradients exactly the global
    batch's mean-loss gradient."""

    def __init__(
        self,
        samplers: Sequence[Any],
        batch_size: int,
        seed: int,
        single_task: bool,
        collate: Collate,
        phase: int = 0,
        shard: tuple[int, int] = (0, 1),
    ):
        self.samplers = list(samplers)
        self.batch_size = batch_size
        self.single_task = single_task
        self.collate = collate
        self.shard = shard
        # phase 0 keeps the single-phase seeding; later phases draw fresh, distinct batches
        self.key = (seed, 1) if phase == 0 else (seed, 1, 1000 + phase)

    def __len__(self) -> int:  # only a bound; the sampler decides which indices are drawn
        return 2**62

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([*self.key, index])
        if self.single_task:
            choice = np.full(self.batch_size, index % len(self.samplers))
        else:
            choice = rng.integers(0, len(self.samplers), size=self.batch_size)
        parts = []
        for i, sampler in enumerate(self.samplers):
            n = int((choice == i).sum())
            if n:
                parts.append((sampler, sampler.sample(rng, n)))
        batch = self.collate(parts)
        rank, world_size = self.shard
        return batch if world_size == 1 else shard_rows(batch, rank, world_size)


def shard_rows(batch: dict[str, torch.Tensor], shard: int, shards: int) -> dict[str, torch.Tensor]:
    """Rows shard, shard + shards, … of a global batch, with ``loss_denominator`` = the global
    batch's answer tokens / shards, so that the mean over shards of each shard's
    sum(loss) / loss_denominator is the global batch's mean answer-token loss."""
    denominator = (batch["target"] != IGNORE_INDEX).sum().float() / shards
    return {**{key: value[shard::shards] for key, value in batch.items()}, "loss_denominator": denominator}


class PhasedDataModule(L.LightningDataModule):
    """Train on any subset of tasks per phase; validate every task on its held-out split."""

    samplers: dict[str, Any]

    def __init__(self, data: DataConfig, steps_per_epoch: int, seed: int):
        """``data``: the config's ``data:`` section (tasks, train_tasks, batch_size, batch_mode);
        ``steps_per_epoch``: steps between validations; ``seed``: of every batch and split."""
        super().__init__()
        self.task_names = list(data.tasks)
        self.train_task_names = list(data.train_tasks) if data.train_tasks else list(data.tasks)
        self.batch_size = data.batch_size  # this phase's training batch (set_phase), global over ranks
        self.probe_batch_size = data.batch_size  # probes keep data.batch_size whatever the phase trains with
        self.single_task_batches = data.batch_mode == "single"
        self.steps_per_epoch = steps_per_epoch
        self.seed = seed
        self.phase = 0

    def collate(self, parts: list[tuple[Any, Any]]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def heldout_batch(self, task: str) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def set_phase(self, phase: int, train_tasks: Sequence[str], batch_size: int | None = None) -> None:
        """Train the next ``Trainer.fit`` on ``train_tasks`` in batches of ``batch_size`` (None:
        data.batch_size), seeded by the phase."""
        self.phase = phase
        self.train_task_names = list(train_tasks)
        self.batch_size = batch_size or self.probe_batch_size

    def global_batches(self, shard: tuple[int, int] = (0, 1)) -> SeededBatches:
        """This phase's training batches by step (whole, or one data-parallel rank's rows)."""
        samplers = [self.samplers[n] for n in self.train_task_names]
        return SeededBatches(
            samplers, self.batch_size, self.seed, self.single_task_batches, self.collate, self.phase, shard
        )

    def train_dataloader(self) -> DataLoader:
        trainer = getattr(self, "trainer", None)
        shard = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        return DataLoader(
            self.global_batches(shard), batch_size=None, sampler=StepSampler(self.steps_per_epoch, self._global_step)
        )

    def _global_step(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.global_step if trainer is not None else 0

    def probe_batch(self, task: str, key: Sequence[int], size: int | None = None) -> dict[str, torch.Tensor]:
        """A single-task training-distribution batch, a pure function of (seed, task, key)."""
        sampler = self.samplers[task]
        rng = np.random.default_rng([self.seed, 2, sampler.task_index, *key])
        return self.collate([(sampler, sampler.sample(rng, size or self.probe_batch_size))])

    def val_dataloader(self) -> list[DataLoader]:
        """One loader per task over its held-out split (batches of ``eval_batch_size``)."""
        return [
            DataLoader(BatchSlices(self.heldout_batch(name), self.eval_batch_size), batch_size=None)
            for name in self.task_names
        ]

    eval_batch_size = 512


class BatchSlices(Dataset):
    """Consecutive row slices of one batch dict."""

    def __init__(self, batch: dict[str, torch.Tensor], size: int):
        self.batch = batch
        self.size = size
        self.rows = len(batch["task"])

    def __len__(self) -> int:
        return -(-self.rows // self.size)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {key: value[index * self.size : (index + 1) * self.size] for key, value in self.batch.items()}
