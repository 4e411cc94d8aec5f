"""Sketched gradient windows (geometry.sketch_dim): memory, overhead per step and angle error.

    python benchmarks/sketch_window.py [--sketch-dim 65536] [--window 32] [--steps 4] \
        [--batch 16] [--seq 512] [--micro-batch 2]

1. Full-parameter tracking of a GPT-2-124M-sized model (random init, 12 layers, d = 768,
   D = 124,439,808) with a gradient window and an update window of W vectors, CountSketched to
   m coordinates: bytes held (hashes, windows, scratch) against the dense windows' 2·W·D·4,
   and the training step (forward, backward, AdamW) with and without the sketching, as a ratio.
2. On a model where the dense window fits (GPT-2 architecture, 2 layers, d = 128, D ≈ 6.9M),
   dense and sketched windows of the same W gradients at two points of a run: principal
   angles between the two top-k bases, dense (scipy) against sketched, and the top-k energy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from loclin.callbacks.parameter_vector import ParameterVector, SketchedParameterVector  # noqa: E402
from loclin.geometry.spectrum import spectrum_summary  # noqa: E402
from loclin.geometry.window import VectorWindow  # noqa: E402
from scipy.linalg import subspace_angles  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402


def model_and_batch(n_layer: int, n_embd: int, seed: int = 0, batch: int = 4, seq: int = 64):
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=max(1, n_embd // 64)))
    tokens = torch.randint(0, model.config.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(seed))
    groups = {
        f"block{i}": [(n, p) for n, p in model.named_parameters() if n.startswith(f"transformer.h.{i}.")]
        for i in range(n_layer)
    }
    groups["embed"] = [(n, p) for n, p in model.named_parameters() if not n.startswith("transformer.h.")]
    return model, tokens, groups


def train_step(model, optimizer, tokens, micro_batch: int | None = None) -> None:
    """Forward and backward of ``tokens``, accumulated over micro-batches of ``micro_batch`` sequences
    (one optimizer step's gradient either way: what the windows take in once per step)."""
    optimizer.zero_grad(set_to_none=True)
    chunks = tokens.split(micro_batch or len(tokens))
    for chunk in chunks:
        (model(input_ids=chunk, labels=chunk).loss / len(chunks)).backward()


def timing_and_memory(args) -> None:
    model, tokens, groups = model_and_batch(12, 768, batch=args.batch, seq=args.seq)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    exact = ParameterVector(groups)
    dense_bytes = 2 * args.window * exact.dim * 4
    sketched = SketchedParameterVector(exact, args.sketch_dim, seed=0)
    windows = {s: VectorWindow(sketched.dim, args.window, sketched.slices) for s in ("grad", "update")}
    held = sketched.nbytes + sum(w.nbytes for w in windows.values())
    print(
        f"GPT-2-124M-sized: D = {exact.dim:,}; dense grad + update windows of W = {args.window}: "
        f"{dense_bytes / 2**30:.1f} GiB"
    )
    print(
        f"  sketched to m = {sketched.dim:,}: hashes {sketched.sketch.nbytes / 2**20:.0f} MiB, windows + scratch "
        f"{(held - sketched.sketch.nbytes) / 2**20:.1f} MiB, total {held / 2**30:.2f} GiB ({held / dense_bytes:.3f} of "
        "dense)"
    )
    plain, with_sketch = [], []
    for step in range(2 * args.steps + 2):
        measure = step % 2 == 1
        started = time.perf_counter()
        train_step(model, optimizer, tokens, args.micro_batch)
        if measure:
            sketched.write_grads(windows["grad"].next_slot())
            windows["grad"].commit(step)
            sketched.write_values(windows["update"].next_slot())
        optimizer.step()
        if measure:
            sketched.subtract_from_values(windows["update"].next_slot())
            windows["update"].commit(step)
        if step >= 2:
            (with_sketch if measure else plain).append(time.perf_counter() - started)
    base, on = statistics.median(plain), statistics.median(with_sketch)
    print(
        f"  step ({args.batch} × {args.seq} tokens in micro-batches of {args.micro_batch}, "
        f"{torch.get_num_threads()} threads): {base * 1000:.0f} ms without, {on * 1000:.0f} ms with the sketched "
        f"grad + update windows: ratio {on / base:.3f}"
    )


def angle_error(args) -> None:
    model, tokens, groups = model_and_batch(2, 128, seed=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    exact = ParameterVector(groups)
    sketched = SketchedParameterVector(exact, args.sketch_dim, seed=0)
    dense_window = VectorWindow(exact.dim, args.window, exact.slices)
    sketch_window = VectorWindow(sketched.dim, args.window, sketched.slices)
    bases = {"dense": [], "sketch": []}
    energies = {"dense": [], "sketch": []}
    data = torch.Generator().manual_seed(2)
    for step in range(3 * args.window):
        batch = torch.randint(
            0, 2000, (4, 64), generator=data
        )  # a 2,000-token slice of the vocabulary: a learnable task
        train_step(model, optimizer, batch)
        exact.write_grads(dense_window.next_slot())
        dense_window.commit(step)
        sketched.write_grads(sketch_window.next_slot())
        sketch_window.commit(step)
        optimizer.step()
        if (step + 1) % (args.window + args.window // 2) == 0:
            for name, window in (("dense", dense_window), ("sketch", sketch_window)):
                basis, singular = window.basis(args.k)
                bases[name].append(basis.double().numpy())
                energies[name].append(spectrum_summary(singular, args.k)["energy_topk"])
    dense_angles = np.sort(subspace_angles(*bases["dense"]))
    sketch_angles = np.sort(subspace_angles(*bases["sketch"]))
    print(
        f"dense-fitting model: D = {exact.dim:,}, m = {sketched.dim:,}, W = {args.window}, k = {args.k}, bases "
        f"{args.window + args.window // 2} steps apart"
    )
    print(f"  principal angles dense (scipy): {np.round(dense_angles, 4).tolist()}")
    print(f"  principal angles sketched:      {np.round(sketch_angles, 4).tolist()}")
    print(
        f"  max angle error {np.abs(dense_angles - sketch_angles).max():.4f} rad (target <= 0.02); top-{args.k} energy "
        f"dense {np.round(energies['dense'], 4).tolist()} sketched {np.round(energies['sketch'], 4).tolist()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sketch-dim", type=int, default=65536)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per variant (124M model)")
    parser.add_argument("--batch", type=int, default=16, help="sequences per step (124M model)")
    parser.add_argument("--seq", type=int, default=512, help="tokens per sequence (124M model)")
    parser.add_argument("--micro-batch", type=int, default=2, help="sequences per forward (gradient accumulation)")
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args()
    angle_error(args)
    if not args.skip_timing:
        timing_and_memory(args)


if __name__ == "__main__":
    main()
