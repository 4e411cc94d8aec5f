"""Where a map cell's wall time goes: one ``train.py`` command (a fork, as a map's point is, or a
new run), timed from the process's start, by phase.

    python benchmarks/cell_cost.py -- --fork RUN --after degrade phases.2.steps=200 recovery.replica=true ...
    python benchmarks/cell_cost.py --json OUT.json -- --config conf/tiny_recovery.yaml output_root=/tmp/cell

Everything after ``--`` is train.py's own command line. The parts:

- **start-up**: the process's start until the first phase's trainer is built (imports, the config and
  its checks, the fork's copies, the model and data);
- per phase, **steps**: inside ``Trainer.fit`` less the two parts below it;
- **checkpoints**: ``Trainer.save_checkpoint`` (inside fit);
- **end of phase**: the measurement callbacks' ``finish_phase`` (the recovery's captures, static
  bases and prefix basis), inside or after fit, and the protocol's ``after_phase``;
- **figures**: the TensorBoard figures drawn at the phase's end and at checkpoints
  (``trainer.figures=false`` draws none);
- **validation**: ``Trainer.validate`` at the phase's end;
- **the rest**: the summary, its writes, and whatever the parts above do not cover.

The shares are of this run's own wall time, so a loaded machine scales them together.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loclin.runs.allocator import use_huge_pages  # noqa: E402  (before torch, as train.py does)

use_huge_pages()

import lightning as L  # noqa: E402
from loclin.callbacks.base import MeasurementCallback  # noqa: E402

import loclin.protocols.train.runner as runner  # noqa: E402
from loclin import train  # noqa: E402
from loclin.protocols.train.hooks import PhaseHooks  # noqa: E402


class Clock:
    """Seconds by (phase, part), with nested parts subtracted from the part they run inside."""

    def __init__(self):
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.phase = "start-up"
        self.first_phase_at: float | None = None
        self.stack: list[list[float]] = []  # [start, seconds of nested parts]

    def wrap(self, owner, name: str, part: str) -> None:
        original = getattr(owner, name)
        clock = self

        def timed(*args, **kwargs):
            clock.stack.append([time.perf_counter(), 0.0])
            try:
                return original(*args, **kwargs)
            finally:
                start, nested = clock.stack.pop()
                spent = time.perf_counter() - start
                clock.seconds[(clock.phase, part)] += spent - nested
                if clock.stack:
                    clock.stack[-1][1] += spent

        setattr(owner, name, timed)

    def follow_phases(self) -> None:
        original, clock = runner.build_trainer, self

        def build_trainer(cfg, phase_dir, *args, **kwargs):
            if clock.first_phase_at is None:
                clock.first_phase_at = time.perf_counter()
            clock.phase = Path(phase_dir).name
            return original(cfg, phase_dir, *args, **kwargs)

        runner.build_trainer = build_trainer


def rows(clock: Clock, total: float) -> list[dict]:
    startup = (clock.first_phase_at or STARTED) - STARTED
    table = [{"phase": "-", "part": "start-up", "seconds": startup}]
    for (phase, part), seconds in clock.seconds.items():
        table.append({"phase": phase, "part": part, "seconds": seconds})
    table.append({"phase": "-", "part": "the rest", "seconds": total - sum(r["seconds"] for r in table)})
    for row in table:
        row["share"] = row["seconds"] / total
    return table


def main() -> int:
    argv = sys.argv[1:]
    own, train_args = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=None, help="also write the table as JSON here")
    args = parser.parse_args(own)
    if not train_args:
        parser.error("give train.py's command line after --")
    clock = Clock()
    clock.follow_phases()
    clock.wrap(L.Trainer, "fit", "steps")
    clock.wrap(L.Trainer, "save_checkpoint", "checkpoints")
    clock.wrap(L.Trainer, "validate", "validation")
    clock.wrap(MeasurementCallback, "finish_phase", "end of phase")
    clock.wrap(MeasurementCallback, "log_figures", "figures")
    for hooks in {PhaseHooks, *PhaseHooks.__subclasses__()}:
        if "after_phase" in vars(hooks):
            clock.wrap(hooks, "after_phase", "end of phase")
    code = train.main(train_args)
    total = time.perf_counter() - STARTED
    table = rows(clock, total)
    print(f"\ncell wall time {total:.1f} s (exit {code}): train.py {' '.join(train_args)}")
    print(f"{'phase':22s} {'part':14s} {'seconds':>9s} {'share':>7s}")
    for row in table:
        print(f"{row['phase']:22s} {row['part']:14s} {row['seconds']:9.1f} {row['share']:7.1%}")
    by_part: dict[str, float] = defaultdict(float)
    for row in table:
        by_part[row["part"]] += row["share"]
    print("by part: " + ", ".join(f"{part} {share:.0%}" for part, share in by_part.items()))
    if args.json:
        args.json.write_text(json.dumps({"command": train_args, "wall_seconds": total, "rows": table}, indent=1))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
