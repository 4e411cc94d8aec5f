"""Text tasks tokenized with a causal LM's tokenizer, with the phase/step interface of
:mod:`datamodules.phased` (seeded batches by global step, task subsets per phase, probe
batches, one held-out loader per task).

An example is the model's special prefix (a BOS where its tokenizer adds one;
datamodules.contrast.special_prefix) and ``prompt + answer`` tokenized as two pieces, so the
answer tokens are exactly ``tokenizer(answer)``. Batches are right-padded with the pad token
(or EOS) and carry an ``attention_mask``; targets are IGNORE_INDEX except on answer tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from loclin.datamodules.contrast import special_prefix
from loclin.datamodules.phased import IGNORE_INDEX, PhasedDataModule
from loclin.datamodules.sections import DataConfig
from loclin.datamodules.text_tasks import Example, TextTask, build_text_tasks


def encode_examples(
    tokenizer, examples: Sequence[Example], task_index: Sequence[int], prefix: Sequence[int] = ()
) -> dict[str, torch.Tensor]:
    """Next-token inputs/targets of (prompt, answer) pairs, right-padded, loss on answers only;
    every prompt starts with ``prefix`` (the model's special tokens)."""
    prompts = [list(prefix) + ids for ids in tokenizer([p for p, _ in examples], add_special_tokens=False)["input_ids"]]
    answers = tokenizer([a for _, a in examples], add_special_tokens=False)["input_ids"]
    sequences = [p + a for p, a in zip(prompts, answers)]
    length = max(len(s) for s in sequences) - 1
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    inputs = torch.full((len(sequences), length), pad, dtype=torch.long)
    targets = torch.full((len(sequences), length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, (prompt, sequence) in enumerate(zip(prompts, sequences)):
        n = len(sequence) - 1
        inputs[row, :n] = torch.tensor(sequence[:-1])
        mask[row, :n] = 1
        first_answer = len(prompt) - 1  # the position whose next token is the answer's first
        targets[row, first_answer:n] = torch.tensor(sequence[len(prompt) :])
    return {"input": inputs, "target": targets, "attention_mask": mask, "task": torch.tensor(list(task_index))}


class TextTasksDataModule(PhasedDataModule):
    """Templated and Brown-corpus text tasks for LoRA adapters on causal LMs."""

    eval_batch_size = 64

    def __init__(
        self,
        tokenizer,
        data: DataConfig,
        corpus: Path | None = None,
        steps_per_epoch: int = 100,
        seed: int = 0,
        special_tokens: bool = True,
    ):
        """``data``: the ``data:`` section (text tasks, batches, held-out size); ``corpus``: its
        ``data.corpus`` resolved to a file (reverse and nextword need it)."""
        super().__init__(data, steps_per_epoch, seed)
        self.tokenizer = tokenizer
        self.prefix = special_prefix(tokenizer, special_tokens)
        self.samplers: dict[str, TextTask] = build_text_tasks(self.task_names, corpus, data.heldout_size, seed)

    @property
    def chance_accuracy(self) -> dict[str, float | None]:
        return {name: (1.0 / t.answer_values if t.answer_values else None) for name, t in self.samplers.items()}

    def collate(self, parts: list[tuple[TextTask, list[Example]]]) -> dict[str, torch.Tensor]:
        examples = [example for _, chunk in parts for example in chunk]
        index = [task.task_index for task, chunk in parts for _ in chunk]
        return encode_examples(self.tokenizer, examples, index, self.prefix)

    def heldout_batch(self, task: str) -> dict[str, torch.Tensor]:
        sampler = self.samplers[task]
        examples = sampler.heldout
        return encode_examples(self.tokenizer, examples, [sampler.task_index] * len(examples), self.prefix)
