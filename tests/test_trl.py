"""TRL's SFTTrainer with loclin's Hugging Face callback, unchanged (docs/examples/trl_sft.py): a
LoRA adapter on the tiny GPT-2 asset; the logged spectra against numpy SVDs of the gradients a
separate TrainerCallback recorded."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("trl")
from transformers import TrainerCallback  # noqa: E402

pytestmark = pytest.mark.slow  # end-to-end runs: the full suite, not the quick one

REPO = Path(__file__).resolve().parents[1]
WINDOW, K, STRIDE, STEPS = 8, 2, 2, 24


class Recorder(TrainerCallback):
    """The reference: each step's adapter gradient (clipping is off, so what the optimizer sees)."""

    def __init__(self):
        self.gradients = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        grads = [p.grad.flatten() for p in model.parameters() if p.requires_grad]
        self.gradients.append(torch.cat(grads).double().numpy())


def energy_topk(window: np.ndarray, k: int) -> float:
    s = np.linalg.svd(window, compute_uv=False)
    return float((s[:k] ** 2).sum() / (s**2).sum())


def test_the_trl_example_runs_unchanged_and_its_spectra_match_numpy(tmp_path, tiny_gpt2):
    spec = importlib.util.spec_from_file_location("trl_sft", REPO / "docs" / "examples" / "trl_sft.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    recorder = Recorder()
    summary_path = example.main(str(tiny_gpt2), str(tmp_path), steps=STEPS, callbacks=[recorder], max_grad_norm=0.0)
    summary = json.loads(Path(summary_path).read_text())
    gradients = np.stack(recorder.gradients)
    assert gradients.shape == (STEPS, 2 * 4 * (64 + 3 * 64))  # two blocks' c_attn: r·(in + out) for A and B
    assert summary["geometry"]["dim"] == gradients.shape[1]
    refresh_steps = range(WINDOW - 1 + (-(WINDOW - 1)) % STRIDE, STEPS, STRIDE)  # full windows, stride-aligned
    mean = np.mean([energy_topk(gradients[s - WINDOW + 1 : s + 1], K) for s in refresh_steps])
    assert summary["metrics"]["grad.energy_topk"]["value"] == pytest.approx(mean, rel=1e-5)
    assert "grad.overlap_lag8" in summary["metrics"] and summary["steps"] == STEPS
