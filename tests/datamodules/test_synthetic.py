"""Synthetic tasks: hand-checked answers, disjoint held-out splits, seeded batches."""

import numpy as np
import torch
from loclin.datamodules.phased import IGNORE_INDEX, SeededBatches
from loclin.datamodules.sections import DataConfig
from loclin.datamodules.synthetic import SyntheticTasksDataModule
from loclin.datamodules.tasks import TASK_NAMES, TASKS, TaskSampler, Vocabulary


def test_answers_by_hand():
    x = np.array([[5, 9], [3, 4]])
    assert TASKS["add"].answers(x, 7).tolist() == [[0], [0]]
    assert TASKS["mul"].answers(x, 7).tolist() == [[3], [5]]
    seq = np.array([[3, 1, 2]])
    assert TASKS["copy"].answers(seq, 7).tolist() == [[3, 1, 2]]
    assert TASKS["reverse"].answers(seq, 7).tolist() == [[2, 1, 3]]
    assert TASKS["sort"].answers(seq, 7).tolist() == [[1, 2, 3]]
    assert TASKS["majority"].answers(np.array([[1, 0, 1], [0, 0, 1]]), 7).tolist() == [[1], [0]]


def test_example_layout_and_loss_mask():
    vocab = Vocabulary(modulus=7, length=3)
    sampler = TaskSampler(TASKS["reverse"], vocab, heldout_size=16, heldout_fraction=0.2, seed=0)
    tokens, mask = sampler.sample(np.random.default_rng(0), 4)
    assert tokens.shape == (4, vocab.seq_len)
    assert (tokens[:, 0] == vocab.task_token(sampler.task_index)).all()
    assert (tokens[:, 4] == vocab.sep).all()
    assert (tokens[:, 5:8] == tokens[:, 1:4][:, ::-1]).all()
    assert mask.sum(1).tolist() == [3] * 4 and mask[:, 5:8].all()


def test_training_never_draws_heldout_inputs():
    vocab = Vocabulary(modulus=7, length=3)
    rng = np.random.default_rng(1)
    for name in ("add", "copy", "majority"):
        sampler = TaskSampler(TASKS[name], vocab, heldout_size=100, heldout_fraction=0.3, seed=0)
        keys = sampler._encode(sampler.sample_inputs(rng, 5000))
        assert not np.isin(keys, sampler.heldout_keys).any(), name
    small = TaskSampler(TASKS["add"], vocab, heldout_size=100, heldout_fraction=0.3, seed=0)
    assert len(small.heldout_keys) + len(small.train_keys) == 49


def test_batches_are_a_function_of_seed_and_index():
    dm = SyntheticTasksDataModule(DataConfig(tasks=["add", "sort"], modulus=7, length=3, batch_size=8), seed=3)
    data = SeededBatches(list(dm.samplers.values()), 8, seed=3, single_task=False, collate=dm.collate)
    a, b, c = data[5], data[5], data[6]
    assert torch.equal(a["input"], b["input"]) and not torch.equal(a["input"], c["input"])
    targets = a["target"]
    assert ((targets != IGNORE_INDEX).sum(1) > 0).all()


def test_single_task_batches_and_probe_batches():
    dm = SyntheticTasksDataModule(
        DataConfig(
            tasks=["add", "copy", "sort"],
            train_tasks=["copy", "sort"],
            modulus=7,
            length=3,
            batch_size=8,
            batch_mode="single",
        )
    )
    loader = dm.train_dataloader()
    tasks = [batch["task"].unique().tolist() for batch, _ in zip(loader, range(4))]
    assert all(len(t) == 1 for t in tasks)
    assert {t[0] for t in tasks} == {TASK_NAMES.index("copy"), TASK_NAMES.index("sort")}
    probe = dm.probe_batch("add", (10, 2))
    assert torch.equal(probe["input"], dm.probe_batch("add", (10, 2))["input"])
    assert (probe["task"] == TASK_NAMES.index("add")).all()


def test_a_phase_trains_in_its_own_batch_size_and_probes_keep_the_data_batch():
    dm = SyntheticTasksDataModule(DataConfig(tasks=["add", "copy"], modulus=7, length=3, batch_size=8), seed=1)
    dm.set_phase(1, ["copy"], batch_size=32)
    batch = next(iter(dm.train_dataloader()))
    assert batch["input"].shape[0] == 32 and (batch["task"] == TASK_NAMES.index("copy")).all()
    assert dm.probe_batch("add", (0,))["input"].shape[0] == 8
    dm.set_phase(2, ["copy"])  # null: back to data.batch_size
    assert next(iter(dm.train_dataloader()))["input"].shape[0] == 8
