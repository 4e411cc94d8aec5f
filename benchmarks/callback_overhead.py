"""Training-step time and memory of the geometry callbacks, on against off, in one process.

    python benchmarks/callback_overhead.py [--config conf/synthetic.yaml] [--steps 1000]
    python benchmarks/callback_overhead.py --config conf/lora_smollm2.yaml --steps 210 --warmup 20 \
        --variants default no-probe off-again
    python benchmarks/callback_overhead.py --json docs/results/performance/callback_overhead.json

Each variant trains the same model from the same seed for --steps steps. A step is timed
from on_train_batch_start (first callback) to on_train_batch_end (last callback), so it
includes forward, backward, optimizer and every measurement done at that step. Median and
mean per step are printed as ratios against the "off" baseline of this run: the median is
the typical step, the mean includes the strided work (basis refreshes, drift snapshots,
per-task probes) amortised. "In hooks" is the time spent inside the measurement callbacks'
per-step hooks, timed in the same run (on the training thread: with trainer.background_measurements, the
default, the windows and what reads them run on a second thread, which "on, measured in line" does not
use): its median over steps against off's median step (a
typical step) and its mean (strided work included) against off's mean step, 1 + hooks / off. These
are the overhead without the noise between separate runs, which ``off-again`` (the baseline
repeated last) shows: ±6% here. The hook time is then broken down by callback. The
refresh against the machine's floor and the SVDs is benchmarks/refresh_floor.py. Memory is
the bounded state the callbacks hold (exact bytes). ``--json`` also writes the times as a record
that ``python -m loclin results`` renders into the README's Performance section (loclin.reports.performance).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loclin.runs.allocator import use_huge_pages  # noqa: E402  (before torch: it reads the switch)

PAGES = use_huge_pages(enable="--small-pages" not in sys.argv)

import lightning as L  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402

from loclin.config import load_config  # noqa: E402
from loclin.protocols.train.build import build_geometry_callbacks, build_module_and_data  # noqa: E402
from loclin.protocols.train.config import phase_plan  # noqa: E402
from loclin.reports.performance import breakdown_lines, overhead_table, write_record  # noqa: E402


class StepClock:
    """Two callbacks sharing one clock: put ``start`` first and ``stop`` last in the list. Besides
    each step's duration it keeps the time the timed hooks (:func:`time_hooks`) spent in that step."""

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.durations: list[float] = []
        self.hook_durations: list[float] = []
        self.in_hooks = 0.0  # this step's time inside the timed hooks so far
        self._t0 = 0.0
        clock = self

        class Start(Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                clock._t0, clock.in_hooks = time.perf_counter(), 0.0

        class Stop(Callback):
            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                if trainer.global_step > clock.warmup:
                    clock.durations.append(time.perf_counter() - clock._t0)
                    clock.hook_durations.append(clock.in_hooks)

        self.start, self.stop = Start(), Stop()


HOOKS = ("on_train_batch_start", "on_after_backward", "on_before_optimizer_step", "on_train_batch_end")


def time_hooks(callbacks: list[Callback], clock: StepClock) -> dict[str, float]:
    """Wrap every per-step hook of ``callbacks`` with a timer; returns the running totals (s) by
    callback (its ``state_key``): the measurements' own time, free of the run-to-run noise
    between variants, and where it goes without a profiler. Each step's share goes to ``clock``."""
    totals: dict[str, float] = {}

    def timed(hook, name: str):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return hook(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - t0
                totals[name] = totals.get(name, 0.0) + elapsed
                clock.in_hooks += elapsed

        return wrapper

    for callback in callbacks:
        for hook in HOOKS:
            setattr(callback, hook, timed(getattr(callback, hook), callback.state_key))
    return totals


def background_seconds(measurements: list[Callback]) -> float:
    """Time the measurement thread spent on this run's steps (0 when measured in line)."""
    stream = measurements[0].stream if measurements else None
    return stream.worker.busy_seconds if stream is not None and stream.worker is not None else 0.0


def run_variant(config: str, overrides: list[str], steps: int, warmup: int, log_dir: str) -> dict:
    # the first phase of the config alone (no recovery), for exactly ``steps`` steps
    cfg = load_config(
        config,
        [
            "phases=[]",
            "protocol=train",
            f"trainer.max_steps={steps}",
            f"trainer.eval_every={steps}",
            *overrides,
        ],
    )
    if cfg.trainer.cpu_threads:  # as a config run takes it (protocols.train.runner)
        torch.set_num_threads(cfg.trainer.cpu_threads)
    L.seed_everything(cfg.seed, verbose=False)
    module, datamodule = build_module_and_data(cfg)
    datamodule.set_phase(0, list(cfg.data.train_tasks or cfg.data.tasks))
    measurements = build_geometry_callbacks(cfg, phase_plan(cfg)[0].steps)
    clock = StepClock(warmup)
    in_hooks = time_hooks(measurements, clock)
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        devices=1,
        logger=TensorBoardLogger(log_dir, name="bench"),
        callbacks=[clock.start, *measurements, clock.stop],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
    )
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)  # with the measurement thread's last steps, waited for at the end
    return {
        "fit_s": time.perf_counter() - started,
        "median_ms": 1e3 * statistics.median(clock.durations),
        "mean_ms": 1e3 * statistics.fmean(clock.durations),
        "hooks_ms": 1e3 * sum(in_hooks.values()) / steps,
        "hooks_median_ms": 1e3 * statistics.median(clock.hook_durations),
        "by_callback_ms": {name: 1e3 * total / steps for name, total in in_hooks.items()},
        "memory_mib": sum(cb.memory_bytes() for cb in measurements) / 2**20,
        "thread_ms": 1e3 * background_seconds(measurements) / steps,
        "dim": measurements[0].stream.input_dim if measurements else None,
    }


VARIANTS = {
    "off": ("off", ["geometry.enabled=false"]),
    "off-again": ("off, again (run-to-run noise)", ["geometry.enabled=false"]),
    "default": ("on (default)", []),
    "inline": ("on, measured in line", ["trainer.background_measurements=false"]),
    "no-probe": ("on, no per-task probe", ["geometry.per_task.enabled=false"]),
    "w64": ("on, W=64", ["geometry.window=64"]),
    "strides": (
        "on, strides 25/50",
        [
            "geometry.basis_stride=25",
            "geometry.drift_stride=50",
            "geometry.drift_lags=[50,100,200,400]",
            "geometry.per_task.stride=1000",
        ],
    ),
    "grad-only": ("on, grad only", ["geometry.sources=[grad]", "geometry.drift_sources=[grad]"]),
    "stride1": ("on, basis stride 1 (streaming)", ["geometry.basis_stride=1"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="conf/synthetic.yaml")
    parser.add_argument(
        "--steps", type=int, default=1000, help="steps per variant (>= per-task stride to include a probe)"
    )
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--json", type=Path, help="also write the times here (rendered by python -m loclin results)")
    parser.add_argument(
        "--small-pages",
        action="store_true",
        help="large tensors on 4 KiB pages, not on the 2 MiB pages train.py asks for (loclin.runs.allocator)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=[v for v in VARIANTS if v != "off-again"],
        help="which variants to time, in order ('off' always runs first)",
    )
    args = parser.parse_args()
    print(f"large tensors on {PAGES} pages")
    chosen = ["off", *(v for v in args.variants if v != "off")]
    with tempfile.TemporaryDirectory() as log_dir:
        results = {
            VARIANTS[v][0]: run_variant(args.config, VARIANTS[v][1], args.steps, args.warmup, log_dir) for v in chosen
        }
    dims = [r["dim"] for r in results.values() if r["dim"]]
    print(f"\n{args.config}: {args.steps} steps per variant, D = {dims[0] if dims else 0:,}")
    record = {
        "pages": PAGES,
        "config": args.config,
        "steps": args.steps,
        "dim": dims[0] if dims else 0,
        "variants": results,
    }
    print("\n".join(overhead_table(record)))
    print("\nwhere the time in hooks goes (ms per step, share of the variant's hook time):")
    for line in breakdown_lines(record):
        print(f"  {line[2:]}")
    if args.json:
        write_record(args.json, "callback_overhead", record)


if __name__ == "__main__":
    main()
