"""The synthetic multitask datamodule: seeded batches of algorithmic tasks.

Batches, phases and probe batches work as in :mod:`datamodules.phased`; probe batches never
overlap the held-out split.
"""

from __future__ import annotations

import numpy as np
import torch
from loclin.datamodules.phased import IGNORE_INDEX, PhasedDataModule
from loclin.datamodules.sections import DataConfig
from loclin.datamodules.tasks import TASKS, TaskSampler, Vocabulary

__all__ = ["IGNORE_INDEX", "SyntheticTasksDataModule", "to_batch"]


def to_batch(tokens: np.ndarray, mask: np.ndarray, task_index: np.ndarray) -> dict[str, torch.Tensor]:
    """Next-token inputs and targets; targets are IGNORE_INDEX except on answer tokens."""
    tokens_t = torch.from_numpy(tokens)
    targets = tokens_t[:, 1:].clone()
    targets[~torch.from_numpy(mask[:, 1:])] = IGNORE_INDEX
    return {"input": tokens_t[:, :-1], "target": targets, "task": torch.from_numpy(task_index)}


class SyntheticTasksDataModule(PhasedDataModule):
    """Multitask algorithmic sequences; train on any subset, evaluate every task held-out."""

    def __init__(self, data: DataConfig | None = None, steps_per_epoch: int = 250, seed: int = 0):
        """``data``: the ``data:`` section (tasks, modulus, length, batches, held-out split)."""
        data = data or DataConfig()
        super().__init__(data, steps_per_epoch, seed)
        self.vocab = Vocabulary(modulus=data.modulus, length=data.length)
        self.samplers = {
            name: TaskSampler(TASKS[name], self.vocab, data.heldout_size, data.heldout_fraction, seed)
            for name in self.task_names
        }

    @property
    def chance_accuracy(self) -> dict[str, float]:
        return {name: 1.0 / TASKS[name].answer_values(self.vocab.modulus) for name in self.task_names}

    def heldout_batch(self, task: str) -> dict[str, torch.Tensor]:
        sampler = self.samplers[task]
        tokens = sampler.heldout_tokens
        n = tokens.shape[0]
        return to_batch(tokens, sampler.answer_mask(n), np.full(n, sampler.task_index))

    def collate(self, parts: list[tuple[TaskSampler, tuple[np.ndarray, np.ndarray]]]) -> dict[str, torch.Tensor]:
        tokens = np.concatenate([t for _, (t, _) in parts])
        masks = np.concatenate([m for _, (_, m) in parts])
        task_index = np.concatenate([np.full(len(t), sampler.task_index) for sampler, (t, _) in parts])
        return to_batch(tokens, masks, task_index)
