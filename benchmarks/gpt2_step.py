"""A GPT-2-124M training step with GeometryMonitor against the same step without it, in one process.

    python benchmarks/gpt2_step.py --device cuda [--batch 16 --seq 512 --steps 60] [--json FILE]
    python benchmarks/gpt2_step.py --device cpu --layers 1 --width 64 --batch 2 --seq 32 --steps 16 --window 4 --k 2

A randomly initialised GPT-2 (``--layers`` 12, ``--width`` 768, GPT-2's 50,257-token vocabulary:
D = 124,439,808) trains on random tokens with AdamW, from one seed, once per variant:

- ``off``: no monitor (the baseline);
- ``exact``: GeometryMonitor(window=32, k=8) on the gradient stream alone (the dry run: W = 4, k = 2) (the windows hold
  W·D float32 in host memory, 16 GB at D = 124M);
- ``sketched``: the same with ``sketch_dim`` (default 2^20), the windows, bases and drift kept in a
  seeded random sketch of the D coordinates;
- ``off again``: the baseline repeated, so a drift of the machine's speed shows.

Every step is timed from one ``on_train_batch_start`` to the next, after ``--skip`` steps (the
window filling), with the device synchronised, and reported as a ratio to ``off``'s median and mean
step of this run. ``--json`` writes the record that ``python -m loclin results`` renders
(loclin.reports.performance).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from loclin import GeometryMonitor
from loclin.reports.performance import write_record


class RandomTokens(torch.utils.data.Dataset):
    def __init__(self, vocab: int, seq: int, size: int):
        self.ids = torch.randint(0, vocab, (size, seq), generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return self.ids[i]


class LanguageModel(L.LightningModule):
    def __init__(self, layers: int, width: int, seq: int):
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        heads = max(1, width // 64)
        self.model = GPT2LMHeadModel(GPT2Config(n_layer=layers, n_embd=width, n_head=heads, n_positions=seq))

    def training_step(self, ids, batch_idx):
        return self.model(input_ids=ids, labels=ids).loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-4)


class StepClock(L.Callback):
    """The wall time from one on_train_batch_start to the next, the device synchronised."""

    def __init__(self):
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.starts.append(time.perf_counter())

    def steps(self, skip: int) -> list[float]:
        return [b - a for a, b in zip(self.starts[skip:], self.starts[skip + 1 :])]


def run_variant(args, monitor: GeometryMonitor | None) -> dict:
    torch.manual_seed(0)
    module = LanguageModel(args.layers, args.width, args.seq)
    data = torch.utils.data.DataLoader(RandomTokens(module.model.config.vocab_size, args.seq, 4096), args.batch)
    clock = StepClock()
    trainer = L.Trainer(
        max_steps=args.steps + 1,
        accelerator="gpu" if args.device == "cuda" else "cpu",
        devices=1,
        precision=args.precision,
        logger=False,
        callbacks=[clock, *([monitor] if monitor else [])],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, data)
    steps = clock.steps(args.skip)
    return {
        "median_ms": 1e3 * statistics.median(steps),
        "mean_ms": 1e3 * statistics.fmean(steps),
        "dim": sum(p.numel() for p in module.parameters()),
        "memory_mib": sum(part.memory_bytes() for part in monitor.parts) / 2**20 if monitor else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--skip", type=int, default=34, help="steps left out of the timing (the window filling)")
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--sketch-dim", type=int, default=2**20)
    parser.add_argument("--precision", default="32-true", help="Lightning's precision, e.g. bf16-mixed on a GPU")
    parser.add_argument("--variants", nargs="+", default=["exact", "sketched"], choices=["exact", "sketched"])
    parser.add_argument("--json", type=Path, help="also write the record here (rendered by python -m loclin results)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpt2_step: error: --device cuda, but torch sees no GPU here (--device cpu for a dry run)")
    if args.steps <= args.skip + 1:
        args.skip = max(0, args.steps // 2)
    stride = min(10, args.window)  # the default refresh stride, or every W steps in a dry run's small window
    geometry = {"window": args.window, "k": args.k, "sources": ["grad"], "drift_sources": ["grad"]}
    geometry |= {"basis_stride": stride, "drift_stride": stride, "heldout_lags": [1, 2]}
    geometry["drift_lags"] = [lag * stride for lag in (1, 2) if args.window + lag * stride < args.steps] or [stride]
    settings = {"exact": {}, "sketched": {"sketch_dim": args.sketch_dim}}
    with tempfile.TemporaryDirectory() as folder:
        results = {"off": run_variant(args, None)}
        for name in args.variants:
            monitor = GeometryMonitor(summary_dir=Path(folder) / name, **geometry, **settings[name])
            results[name] = run_variant(args, monitor)
        results["off again"] = run_variant(args, None)
    off = results["off"]
    print(f"GPT-2 {args.layers}x{args.width}, D = {off['dim']:,}, {args.batch}x{args.seq} tokens on {args.device}")
    for name, row in results.items():
        print(
            f"  {name:<10} median {row['median_ms']:9.2f} ms ({row['median_ms'] / off['median_ms']:.3f}x)"
            f"  mean {row['mean_ms']:9.2f} ms ({row['mean_ms'] / off['mean_ms']:.3f}x)"
        )
    if args.json:
        keys = ("device", "layers", "width", "batch", "seq", "steps", "skip", "precision")
        record = {key: getattr(args, key) for key in keys}
        write_record(args.json, "gpt2_step", {**record, "sketch_dim": args.sketch_dim, "variants": results})


if __name__ == "__main__":
    main()
