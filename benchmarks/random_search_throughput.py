"""Perturbed-loss evaluations per second: naive copy-and-evaluate against functional calls.

    python benchmarks/random_search_throughput.py [--config conf/random_search_synthetic.yaml] [--widths 8 32 128]
    python benchmarks/random_search_throughput.py --config conf/tiny_lora.yaml --samples 16

For each model (one per width for the synthetic family), the same ``--samples`` perturbations
θ + δ_i are evaluated on the same fixed loss (random_search.batch_size rows over the tasks) by:
- ``naive``: deep-copy the module, write θ + δ into the copy, run it (the baseline);
- ``loop``: torch.func.functional_call of the one module with θ + δ substituted, one δ at a time;
- ``vmap8`` / ``vmap32``: functional_call vectorised with vmap over chunks of 8 / 32 δ.
Samples per second and the ratio to ``naive`` in the same run are printed.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from loclin.callbacks.parameter_vector import ParameterVector  # noqa: E402
from loclin.geometry.perturbed_loss import PerturbedLoss  # noqa: E402

from loclin.config import load_config
from loclin.protocols.train.build import build_module_and_data  # noqa: E402
from loclin.protocols.train.config import FAMILIES


def naive(module, vector: ParameterVector, batches, deltas: torch.Tensor) -> torch.Tensor:
    theta, losses = vector.values(), []
    for delta in deltas:
        moved = copy.deepcopy(module)
        ParameterVector(moved.parameter_groups()).load_values(theta + delta)
        with torch.no_grad():
            losses.append(torch.stack([moved.answer_loss(moved.logits(b), b["target"]) for b in batches]).mean())
    return torch.stack(losses)


def timed(evaluate, deltas: torch.Tensor) -> tuple[float, torch.Tensor]:
    evaluate(deltas[:2])  # warm-up
    started = time.perf_counter()
    out = evaluate(deltas)
    return len(deltas) / (time.perf_counter() - started), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="conf/random_search_synthetic.yaml")
    parser.add_argument(
        "--widths", type=int, nargs="*", default=[8, 32, 128], help="d_model values (synthetic family only)"
    )
    parser.add_argument("--samples", type=int, default=64)
    args = parser.parse_args()
    base = load_config(args.config, [])
    widths = args.widths if FAMILIES[base.family].widths else [None]
    print(f"{'model':>14} {'D':>9}  {'variant':8} {'samples/s':>10} {'× naive':>8} {'max |Δ| vs naive':>17}")
    for width in widths:
        cfg = load_config(args.config, [f"model.d_model={width}", f"model.d_ff={4 * width}"] if width else [])
        torch.manual_seed(cfg.seed)
        module, datamodule = build_module_and_data(cfg)
        module.eval()
        tasks = datamodule.train_task_names
        batches = [datamodule.probe_batch(task, (1, 0), cfg.random_search.batch_size // len(tasks)) for task in tasks]
        vector = ParameterVector(module.parameter_groups())
        deltas = 1e-3 * torch.randn(args.samples, vector.dim, generator=torch.Generator().manual_seed(0))
        rate_naive, reference = timed(lambda d, m=module, v=vector, b=batches: naive(m, v, b, d), deltas)
        label = f"d_model={width}" if width else cfg.experiment
        print(f"{label:>14} {vector.dim:>9,}  {'naive':8} {rate_naive:>10.1f} {1.0:>8.2f} {0.0:>17.1e}", flush=True)
        for name, vectorize, chunk in (("loop", False, 1), ("vmap8", True, 8), ("vmap32", True, 32)):
            rate, out = timed(PerturbedLoss(module, vector.names, batches, chunk=chunk, vectorize=vectorize), deltas)
            print(
                f"{label:>14} {vector.dim:>9,}  {name:8} {rate:>10.1f} {rate / rate_naive:>8.2f} "
                f"{float((out - reference).abs().max()):>17.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
