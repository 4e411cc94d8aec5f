"""The data section of the configuration, as the datamodules take it whole (torch-free, so the
config schema in loclin/schema.py is built from it and validation stays light)."""

from __future__ import annotations

from dataclasses import dataclass, field

from loclin.datamodules.tasks import TASK_NAMES

CONTRAST_SOURCES = ("coqa", "statements", "sycophancy", "bigbench")  # the sources datamodules/contrast.py reads


@dataclass
class DataConfig:
    """``data:`` in a config: the tasks, their splits and the training batches."""

    tasks: list[str] = field(default_factory=lambda: list(TASK_NAMES))
    train_tasks: list[str] | None = None  # subset trained on; null = all of ``tasks``
    modulus: int = 17  # values are 0..modulus-1; add/mul are mod this
    length: int = 5  # sequence length of copy/reverse/sort/majority (odd for majority)
    batch_size: int = 64
    batch_mode: str = "mixed"  # mixed: tasks drawn per example; single: one task per batch
    heldout_size: int = 512  # held-out examples per task with a large input space
    heldout_fraction: float = 0.2  # share of a small input space (add, mul, majority) held out
    corpus: str = "asset:brown-corpus"  # lora: text file (or asset holding brown.txt) for reverse/nextword
