"""A Hugging Face run of test_hf_callback's model under GeometryTrainerCallback, for the several-process
test: ``torchrun --nproc_per_node 2 tests/hf_ranks.py OUT`` (each rank a batch of 8, DDP over gloo), or
``python tests/hf_ranks.py OUT --accumulate 2`` (one process, the same two batches of 8 accumulated)."""

import argparse
import os

import torch.distributed as dist
from test_hf_callback import SETTINGS, Items, hf_args, model
from transformers import Trainer

from loclin.hf import GeometryTrainerCallback

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--accumulate", type=int, default=1)
    cli = parser.parse_args()
    args = hf_args(
        cli.out,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=cli.accumulate,
        save_strategy="no",
        ddp_backend="gloo" if "WORLD_SIZE" in os.environ else None,
    )
    Trainer(model=model(), args=args, train_dataset=Items(), callbacks=[GeometryTrainerCallback(**SETTINGS)]).train()
    if dist.is_initialized():  # a rank that exits with gloo's threads still up may abort at teardown
        dist.barrier()
        dist.destroy_process_group()
