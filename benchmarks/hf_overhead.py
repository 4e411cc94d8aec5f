"""The Hugging Face callback's cost, as ratios measured in one process: a step with
GeometryTrainerCallback against a step without it, and the one-time work at the end of training.

    python benchmarks/hf_overhead.py [--models mlp tiny-gpt2] [--steps 300] [--json FILE]

For each model it trains three times from the same seed: without the callback, with it, and
without it again (so a drift of the machine's speed shows). It times every optimizer step (one
``on_step_end`` to the next, after ``--skip`` steps) and, for the run with the callback, the time
``on_train_end`` takes (the summary and the end-of-run figures). ``mlp`` is a 41k-parameter
regressor; ``tiny-gpt2`` the registry asset fully trained on random tokens (D = 3.3M).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments

from loclin.hf import GeometryTrainerCallback
from loclin.reports.performance import write_record


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 256), nn.Tanh(), nn.Linear(256, 96), nn.Tanh(), nn.Linear(96, 1))

    def forward(self, x, labels):
        return {"loss": nn.functional.mse_loss(self.net(x), labels)}


class Rows(torch.utils.data.Dataset):
    def __init__(self, items: dict[str, torch.Tensor]):
        self.items = items

    def __len__(self):
        return len(next(iter(self.items.values())))

    def __getitem__(self, i):
        return {key: value[i] for key, value in self.items.items()}


def build(name: str):
    """(model, dataset, batch size) of a benchmark model, from seed 0."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    if name == "mlp":
        x = torch.randn(4096, 64, generator=generator)
        return Regressor(), Rows({"x": x, "labels": x[:, :1].sin()}), 32
    from transformers import AutoModelForCausalLM

    from loclin.assets import asset_path

    model = AutoModelForCausalLM.from_pretrained(asset_path("tiny-gpt2"))
    ids = torch.randint(0, model.config.vocab_size, (512, 64), generator=generator)
    return model, Rows({"input_ids": ids, "labels": ids}), 8


class StepClock(TrainerCallback):
    """The wall time of every optimizer step (on_step_end to on_step_end) and of on_train_end's work
    (measured from the last step's end to a callback placed after the one measured)."""

    def __init__(self):
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())

    def steps(self, skip: int) -> list[float]:
        return [b - a for a, b in zip(self.ends[skip:], self.ends[skip + 1 :])]


def train(name: str, steps: int, folder: Path, geometry: bool) -> tuple[StepClock, float, int]:
    model, data, batch = build(name)
    clock = StepClock()
    callbacks = [GeometryTrainerCallback(window=32, k=8)] if geometry else []
    args = TrainingArguments(
        output_dir=str(folder),
        max_steps=steps,
        per_device_train_batch_size=batch,
        learning_rate=1e-3,
        logging_strategy="no",
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[clock, *callbacks])
    trainer.train()
    end = time.perf_counter() - clock.ends[-1]  # on_train_end of every callback, loclin's summary and figures
    return clock, end, sum(p.numel() for p in model.parameters() if p.requires_grad)


def measure(name: str, steps: int, skip: int, root: Path) -> dict:
    off, _, dim = train(name, steps, root / f"{name}_off", False)
    on, end, _ = train(name, steps, root / f"{name}_on", True)
    again, _, _ = train(name, steps, root / f"{name}_off_again", False)
    plain = off.steps(skip) + again.steps(skip)
    with_geometry = on.steps(skip)
    return {
        "model": name,
        "dim": dim,
        "steps": steps,
        "mean_ratio": statistics.mean(with_geometry) / statistics.mean(plain),
        "median_ratio": statistics.median(with_geometry) / statistics.median(plain),
        "off_again_ratio": statistics.mean(again.steps(skip)) / statistics.mean(off.steps(skip)),
        "end_of_training_in_steps": end / statistics.mean(plain),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "tiny-gpt2"], choices=["mlp", "tiny-gpt2"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--skip", type=int, default=40, help="steps left out of the timing (the window filling)")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/hf_overhead"))
    parser.add_argument("--json", type=Path, help="also write the records here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    records = [measure(name, args.steps, args.skip, args.out) for name in args.models]
    for r in records:
        print(
            f"{r['model']:10s} D={r['dim']:>9,}  step with the callback: mean {r['mean_ratio']:.2f}×, median "
            f"{r['median_ratio']:.2f}× the plain step (plain run again: {r['off_again_ratio']:.2f}×); the end of "
            f"training (summary, figures): {r['end_of_training_in_steps']:.0f} plain steps"
        )
    if args.json:
        write_record(args.json, "hf_overhead", {"models": records, "skip": args.skip})


if __name__ == "__main__":
    main()
