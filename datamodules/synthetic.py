"""The synthetic multitask datamodule: seeded batches of algorithmic tasks.

Every training batch is a pure function of (seed, global step), so a resumed run sees exactly
the batches an uninterrupted run would. An "epoch" is a block of
``steps_per_epoch`` batches (it sets the validation and checkpoint cadence, not a pass over
a dataset). Probe batches of a single task (for per-task gradients) are a function of
(seed, task, probe key) and never overlap the held-out split.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset

from datamodules.tasks import TASK_NAMES, TASKS, TaskSampler, Vocabulary

IGNORE_INDEX = -100


def to_batch(tokens: np.ndarray, mask: np.ndarray, task_index: np.ndarray) -> dict[str, torch.Tensor]:
    """Next-token inputs and targets; targets are IGNORE_INDEX except on answer tokens."""
    tokens_t = torch.from_numpy(tokens)
    targets = tokens_t[:, 1:].clone()
    targets[~torch.from_numpy(mask[:, 1:])] = IGNORE_INDEX
    return {"input": tokens_t[:, :-1], "target": targets, "task": torch.from_numpy(task_index)}


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
    """dataset[i] is training batch i: ``batch_size`` examples of the chosen tasks."""

    def __init__(self, samplers: Sequence[TaskSampler], batch_size: int, seed: int, single_task: bool, phase: int = 0):
        self.samplers = list(samplers)
        self.batch_size = batch_size
        self.seed = seed
        self.single_task = single_task
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
        tokens, masks, task_index = [], [], []
        for i, sampler in enumerate(self.samplers):
            n = int((choice == i).sum())
            if n == 0:
                continue
            t, m = sampler.sample(rng, n)
            tokens.append(t)
            masks.append(m)
            task_index.append(np.full(n, sampler.task_index))
        return to_batch(np.concatenate(tokens), np.concatenate(masks), np.concatenate(task_index))


class SyntheticTasksDataModule(L.LightningDataModule):
    """Multitask algorithmic sequences; train on any subset, evaluate every task held-out."""

    def __init__(
        self,
        tasks: Sequence[str] = TASK_NAMES,
        train_tasks: Sequence[str] | None = None,
        modulus: int = 17,
        length: int = 5,
        batch_size: int = 64,
        batch_mode: str = "mixed",
        heldout_size: int = 512,
        heldout_fraction: float = 0.2,
        steps_per_epoch: int = 250,
        seed: int = 0,
    ):
        super().__init__()
        self.vocab = Vocabulary(modulus=modulus, length=length)
        self.task_names = list(tasks)
        self.train_task_names = list(train_tasks) if train_tasks else list(tasks)
        self.batch_size = batch_size
        self.single_task_batches = batch_mode == "single"
        self.steps_per_epoch = steps_per_epoch
        self.seed = seed
        self.phase = 0
        self.samplers = {
            name: TaskSampler(TASKS[name], self.vocab, heldout_size, heldout_fraction, seed) for name in self.task_names
        }

    @property
    def chance_accuracy(self) -> dict[str, float]:
        return {name: 1.0 / TASKS[name].answer_values(self.vocab.modulus) for name in self.task_names}

    def set_phase(self, phase: int, train_tasks: Sequence[str]) -> None:
        """Train the next ``Trainer.fit`` on ``train_tasks``, with batches seeded by the phase."""
        self.phase = phase
        self.train_task_names = list(train_tasks)

    def train_dataloader(self) -> DataLoader:
        batches = SeededBatches(
            [self.samplers[n] for n in self.train_task_names], self.batch_size, self.seed, self.single_task_batches, self.phase
        )
        return DataLoader(batches, batch_size=None, sampler=StepSampler(self.steps_per_epoch, self._global_step))

    def _global_step(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.global_step if trainer is not None else 0

    def heldout_batch(self, task: str) -> dict[str, torch.Tensor]:
        sampler = self.samplers[task]
        tokens = sampler.heldout_tokens
        n = tokens.shape[0]
        return to_batch(tokens, sampler.answer_mask(n), np.full(n, sampler.task_index))

    def val_dataloader(self) -> list[DataLoader]:
        loaders = []
        for name in self.task_names:
            batch = self.heldout_batch(name)
            data = TensorDataset(batch["input"], batch["target"], batch["task"])
            loaders.append(DataLoader(data, batch_size=512, collate_fn=_stack_fields))
        return loaders

    def probe_batch(self, task: str, key: Sequence[int], size: int | None = None) -> dict[str, torch.Tensor]:
        """A single-task training-distribution batch, a pure function of (seed, task, key)."""
        sampler = self.samplers[task]
        rng = np.random.default_rng([self.seed, 2, sampler.task_index, *key])
        n = size or self.batch_size
        tokens, mask = sampler.sample(rng, n)
        return to_batch(tokens, mask, np.full(n, sampler.task_index))


def _stack_fields(rows: list[tuple[torch.Tensor, ...]]) -> dict[str, torch.Tensor]:
    inputs, targets, tasks = (torch.stack(col) for col in zip(*rows))
    return {"input": inputs, "target": targets, "task": tasks}
