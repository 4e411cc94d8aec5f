"""The synthetic module: parameter groups partition the model; loss is on answer tokens only."""

import torch
import torch.nn.functional as F
from loclin.datamodules.sections import DataConfig
from loclin.datamodules.synthetic import IGNORE_INDEX, SyntheticTasksDataModule
from loclin.lightning_modules.sections import DecoderConfig
from loclin.lightning_modules.synthetic import SyntheticMultitaskModule


def build():
    dm = SyntheticTasksDataModule(DataConfig(tasks=["add", "reverse"], modulus=7, length=3, batch_size=8))
    module = SyntheticMultitaskModule(
        dm.vocab.size, dm.vocab.seq_len, dm.task_names, DecoderConfig(n_layers=2, d_model=16, n_heads=2, d_ff=32)
    )
    return dm, module


def test_parameter_groups_partition_all_parameters():
    _, module = build()
    groups = module.parameter_groups()
    assert list(groups) == ["embed", "block0.attn", "block0.mlp", "block1.attn", "block1.mlp", "head"]
    grouped = [name for params in groups.values() for name, _ in params]
    assert sorted(grouped) == sorted(name for name, _ in module.named_parameters())
    assert len(grouped) == len(set(grouped))


def test_loss_is_cross_entropy_over_answer_tokens_only():
    dm, module = build()
    batch = dm.probe_batch("reverse", (0,))
    logits = module.model(batch["input"])
    answer = batch["target"] != IGNORE_INDEX
    expected = F.cross_entropy(logits[answer], batch["target"][answer])
    torch.testing.assert_close(module.loss(batch), expected)
    assert answer.sum() == 8 * 3
