"""Data parallelism on CPU: wall time, geometry memory and equality of one process against DDP.

    python benchmarks/data_parallel.py [--config conf/synthetic.yaml] [--steps 1000]

Runs train.py as subprocesses on the same config and number of steps:

    one process, grad_shards 1, torch's threads    the baseline (what the config would be
                                                   without its grad_shards / cpu_threads)
    one process, grad_shards 2, 1 thread           what DDP on 2 CPU ranks reproduces
    DDP, 2 CPU ranks (1 thread each)
    DDP, 2 CPU ranks, sharded windows              (per-task probe off: it needs whole vectors)

and prints each run's wall time (with its ratio to the baseline's), the geometry state one
rank holds (the callbacks' own upper bound, MiB), and how many summary numbers equal the
second run's: exactly, and within 1e-5 relative.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DDP = ["trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu"]
VARIANTS = {
    "one process (baseline)": ["trainer.grad_shards=1", "trainer.cpu_threads=null"],
    "one process, 2 shards, 1 thread": ["trainer.grad_shards=2", "trainer.cpu_threads=1"],
    "DDP, 2 ranks": [*DDP, "trainer.cpu_threads=1"],
    "DDP, 2 ranks, sharded windows": [
        *DDP,
        "trainer.cpu_threads=1",
        "geometry.shard_windows=true",
        "geometry.per_task.enabled=false",
    ],
}
REFERENCE = "one process, 2 shards, 1 thread"


def run(config: Path, steps: int, root: Path, overrides: list[str]) -> tuple[float, float, dict]:
    command = [
        sys.executable,
        str(REPO / "train.py"),
        "--config",
        str(config),
        f"output_root={root}",
        f"trainer.max_steps={steps}",
        "trainer.progress_bar=false",
        *overrides,
    ]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode:
        sys.exit(f"{' '.join(overrides)} failed:\n{result.stderr[-2000:]}")
    state = re.search(r"geometry state \(MiB, upper bounds\).*total ([0-9.]+)", result.stdout + result.stderr)
    summary = next(root.glob("*/version_0/summary.json"))
    metrics = {name: entry["value"] for name, entry in json.loads(summary.read_text())["metrics"].items()}
    return seconds, float(state.group(1)) if state else float("nan"), metrics


def agreement(found: dict, expected: dict) -> tuple[int, int, int]:
    """(exactly equal, within 1e-5 relative, compared) over the numbers both summaries hold."""
    common = [name for name in expected if name in found and isinstance(expected[name], float)]
    exact = sum(found[name] == expected[name] for name in common)
    close = sum(abs(found[name] - expected[name]) <= 1e-5 * abs(expected[name]) + 1e-12 for name in common)
    return exact, close, len(common)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "conf" / "synthetic.yaml")
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for index, (name, overrides) in enumerate(VARIANTS.items()):
            results[name] = run(args.config, args.steps, Path(scratch) / str(index), overrides)
            print(f"  {name}: {results[name][0]:.1f} s", file=sys.stderr)
    baseline = results["one process (baseline)"][0]
    reference = results[REFERENCE][2]
    print(f"{args.config.name}, {args.steps} steps (wall time includes ~10 s of start-up)\n")
    print(
        f"| variant | wall s | ratio | geometry state per rank, MiB | equal to '{REFERENCE}' (exact / ≤1e-5 / "
        "compared) |"
    )
    print("|---|---|---|---|---|")
    for name, (seconds, state, metrics) in results.items():
        exact, close, compared = agreement(metrics, reference)
        print(f"| {name} | {seconds:.1f} | {seconds / baseline:.2f} | {state:.1f} | {exact} / {close} / {compared} |")


if __name__ == "__main__":
    main()
