"""The Hugging Face Trainer callback against the Lightning monitor: one model, the same batches and
seed, SGD with gradient clipping that does clip. Both read g before clipping, so every summary
number is equal bit for bit, and the spectra equal numpy SVDs of the unclipped gradients."""

import json
import logging

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from transformers import TrainerCallback

from loclin import GeometryMonitor
from loclin.hf import STATE_FILE, GeometryTrainerCallback

STEPS, LR, CLIP = 48, 0.2, 0.5
SETTINGS = dict(window=8, k=2, basis_stride=4, heldout_lags=[1, 2], drift_stride=4, drift_lags=[4, 8, 16])


class Regressor(L.LightningModule):
    """A user's model, usable by both trainers: forward returns {"loss"} as Hugging Face expects."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, 16), nn.Tanh())
        self.head = nn.Linear(16, 1)

    def forward(self, x, labels):
        return {"loss": nn.functional.mse_loss(self.head(self.encoder(x)), labels)}

    def training_step(self, batch, batch_idx):
        return self(**batch)["loss"]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR)


class Items(torch.utils.data.Dataset):
    def __init__(self, n=512, seed=0):
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 6, generator=generator) * 3
        self.y = torch.sin(self.x[:, :1]) * 4

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


class RawGradients(Callback):
    """The reference: each step's gradient right after backward, before Lightning clips it."""

    def __init__(self):
        self.gradients = []

    def on_after_backward(self, trainer, pl_module):
        self.gradients.append(torch.cat([p.grad.flatten() for p in pl_module.parameters()]).double().numpy())


def model():
    torch.manual_seed(0)
    return Regressor()


def lightning_run(tmp_path):
    monitor, raw = GeometryMonitor(summary_dir=tmp_path / "lightning", **SETTINGS), RawGradients()
    trainer = L.Trainer(
        max_steps=STEPS,
        gradient_clip_val=CLIP,
        gradient_clip_algorithm="norm",
        logger=False,
        callbacks=[monitor, raw],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        accelerator="cpu",
    )
    trainer.fit(model(), torch.utils.data.DataLoader(Items(), batch_size=16, shuffle=False))
    return json.loads(monitor.summary_path.read_text()), np.stack(raw.gradients)


def hf_run(tmp_path):
    from transformers import Trainer

    args = hf_args(tmp_path / "hf", save_strategy="no")
    callback = GeometryTrainerCallback(**SETTINGS)
    Trainer(model=model(), args=args, train_dataset=Items(), callbacks=[callback]).train()
    return json.loads(callback.summary_path.read_text()), callback


def test_the_hf_callback_gives_the_lightning_numbers_and_reads_g_before_clipping(tmp_path):
    expected, raw = lightning_run(tmp_path)
    measured, callback = hf_run(tmp_path)

    assert (np.linalg.norm(raw, axis=1) > CLIP).sum() >= STEPS // 2  # clipping did change most steps
    assert set(measured["metrics"]) == set(expected["metrics"]) and len(expected["metrics"]) > 20
    for name, entry in expected["metrics"].items():  # the same arithmetic on the same gradients: bit for bit
        assert measured["metrics"][name]["value"] == entry["value"], name

    window, k = SETTINGS["window"], SETTINGS["k"]
    refreshes = [s for s in range(window - 1, STEPS) if s % SETTINGS["basis_stride"] == 0]

    def energy(rows):
        s = np.linalg.svd(rows, compute_uv=False)
        return (s[:k] ** 2).sum() / (s**2).sum()

    unclipped = np.mean([energy(raw[s - window + 1 : s + 1]) for s in refreshes])
    assert measured["metrics"]["grad.energy_topk"]["value"] == pytest.approx(unclipped, rel=1e-5)
    clipped = raw * np.minimum(1.0, CLIP / (np.linalg.norm(raw, axis=1, keepdims=True) + 1e-6))
    assert np.mean([energy(clipped[s - window + 1 : s + 1]) for s in refreshes]) != pytest.approx(unclipped, rel=1e-3)
    assert (tmp_path / "hf" / "loclin").is_dir()  # the TensorBoard scalars
    assert not any(p._post_accumulate_grad_hooks for p in callback.view.lightning_module.parameters())


class KillAt(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError("simulated kill")


def hf_args(folder, **changes):
    from transformers import TrainingArguments

    settings = dict(
        output_dir=str(folder),
        max_steps=STEPS,
        per_device_train_batch_size=16,
        learning_rate=LR,
        optim="sgd",
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=CLIP,
        train_sampling_strategy="sequential",
        logging_strategy="no",
        save_strategy="steps",
        save_steps=16,
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    return TrainingArguments(**{**settings, **changes})


@pytest.mark.slow
def test_a_killed_hf_run_resumes_with_the_callback_state_to_the_same_numbers(tmp_path, caplog):
    from transformers import Trainer

    whole = GeometryTrainerCallback(**SETTINGS)
    with caplog.at_level(logging.INFO):
        args = hf_args(tmp_path / "whole", save_total_limit=1)
        Trainer(model=model(), args=args, train_dataset=Items(), callbacks=[whole]).train()
    expected = json.loads(whole.summary_path.read_text())["metrics"]
    size_lines = [r.getMessage() for r in caplog.records if "of geometry state in each checkpoint" in r.getMessage()]
    kept = sorted((tmp_path / "whole").glob("checkpoint-*/" + STATE_FILE))
    assert [path.parent.name for path in kept] == ["checkpoint-48"]  # save_total_limit removes ours with theirs
    state_bytes = kept[0].stat().st_size
    assert len(size_lines) == 1, size_lines  # stated once a run, not at each of the three saves
    assert f"{state_bytes / 2**20:.1f} MiB" in size_lines[0] and "save_total_limit" in size_lines[0]

    killed = Trainer(
        model=model(),
        args=hf_args(tmp_path / "killed"),
        train_dataset=Items(),
        callbacks=[GeometryTrainerCallback(**SETTINGS), KillAt(24)],
    )
    with pytest.raises(RuntimeError, match="simulated kill"):
        killed.train()
    assert (tmp_path / "killed" / "checkpoint-16" / STATE_FILE).is_file()
    resumed = GeometryTrainerCallback(**SETTINGS)
    trainer = Trainer(model=model(), args=hf_args(tmp_path / "killed"), train_dataset=Items(), callbacks=[resumed])
    trainer.train(resume_from_checkpoint=True)  # the last checkpoint of output_dir: step 16
    measured = json.loads(resumed.summary_path.read_text())["metrics"]
    assert set(measured) == set(expected) and len(expected) > 20
    for name, entry in expected.items():  # resumed at step 16 with the windows and bases of step 16
        assert measured[name]["value"] == entry["value"], name

    (tmp_path / "killed" / "checkpoint-48" / STATE_FILE).unlink()  # the last checkpoint, without our state
    lost = Trainer(
        model=model(),
        args=hf_args(tmp_path / "killed", max_steps=STEPS + 16),
        train_dataset=Items(),
        callbacks=[GeometryTrainerCallback(**SETTINGS)],
    )
    with pytest.raises(
        FileNotFoundError, match=r"resuming at step 48, but .*checkpoint-48/loclin_geometry.pt"
    ) as refusal:
        lost.train(resume_from_checkpoint=True)
    last_complete = sorted((tmp_path / "killed").glob("checkpoint-*/" + STATE_FILE))[-1].parent
    assert f"the last complete one is {last_complete}" in str(refusal.value)  # named, to resume from
    assert len(str(refusal.value).splitlines()) == 1


def test_the_readmes_hugging_face_block_runs_as_written(tmp_path):
    """The README's Hugging Face block, executed verbatim on a user model: it writes summary.json
    into output_dir and the TensorBoard scalars into output_dir/loclin."""
    from pathlib import Path

    from transformers import Trainer

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b.split("```", 1)[0] for b in readme.split("```python\n") if "GeometryTrainerCallback(window=32" in b)
    args = hf_args(tmp_path / "hf", max_steps=100, save_strategy="no")
    namespace = {"Trainer": Trainer, "model": model(), "args": args, "data": Items()}
    exec(compile(block, "README.md", "exec"), namespace)
    summary = json.loads((tmp_path / "hf" / "summary.json").read_text())
    assert summary["metrics"]["grad.energy_topk"]["value"] > 0 and (tmp_path / "hf" / "loclin").is_dir()


@pytest.mark.slow
def test_two_processes_give_the_numbers_of_one_that_accumulates_their_batches_bit_for_bit(tmp_path):
    """torchrun, two ranks on gloo, a batch of 8 each, against one process that accumulates the same two
    batches: the callback's all-reduced row is DDP's gradient, so every summary number is equal."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(here), str(here.parent)])}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    for command in [
        launcher + [str(here / "hf_ranks.py"), str(tmp_path / "ranks")],
        [sys.executable, str(here / "hf_ranks.py"), str(tmp_path / "one"), "--accumulate", "2"],
    ]:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
    ranks, one = (json.loads((tmp_path / name / "summary.json").read_text())["metrics"] for name in ("ranks", "one"))
    assert set(ranks) == set(one) and len(one) > 20
    for name, entry in one.items():
        assert ranks[name]["value"] == entry["value"], name
    assert ranks["grad.energy_topk"]["value"] > 0
