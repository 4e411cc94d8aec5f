"""Train one experiment and measure its local linear geometry.

    python train.py --config conf/synthetic.yaml [key=value ...]
    python train.py --resume runs/synthetic/version_0
    python train.py --fork runs/recovery_synthetic/version_0 --after degrade phases.2.optim.name=sgd

Writes runs/<experiment>/version_<n>/: config.yaml, TensorBoard events, checkpoints/,
summary.json. A configuration mistake is one line on stderr and exit code 2, before anything
is imported, built or written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from loclin.config import ConfigError, load_config, packaged_configs
from loclin.model_source import ModelSourceError, resolve_model_source
from loclin.protocols.registry import protocol_for
from loclin.runs.allocator import use_huge_pages
from loclin.runs.fork import fork_config, populate_fork
from loclin.runs.rundir import (
    RUN_DIR_ENV,
    RunDirError,
    check_resumable,
    create_run_dir,
    global_rank,
    launched_run_dir,
    lock_run_dir,
)

EXIT_USAGE = 2
EXIT_FAULT = 1  # the run itself failed (diverged, a full disk): not a mistake in the command
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as a shell reports it


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="packaged configs (--config NAME): " + ", ".join(sorted(packaged_configs())),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="experiment YAML, or the name of a packaged config")
    source.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a killed run from its last checkpoint")
    source.add_argument(
        "--fork",
        type=Path,
        metavar="RUN_DIR",
        help="a new run reusing RUN_DIR's phases up to --after; only later phases run",
    )
    parser.add_argument("--after", metavar="PHASE", help="with --fork: the last of the parent's phases to reuse")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. trainer.max_steps=500"
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config (YAML) and exit; nothing is written"
    )
    return parser.parse_args(argv)


@dataclass(frozen=True)
class RunPlan:
    """What ``train`` will run, resolved once before anything is written: the validated config and
    where it came from (``new``: a YAML and its overrides; ``resume``: a killed run's own config and
    directory; ``fork``: the parent's config with the overrides, and the parent to copy from)."""

    cfg: DictConfig
    kind: str
    resume_dir: Path | None = None
    parent: Path | None = None

    @property
    def fresh(self) -> bool:
        """This process makes the run directory (rank 0 of a new run or fork)."""
        return self.kind != "resume" and global_rank() == 0


def resolved_config(args: argparse.Namespace) -> DictConfig:
    """The run's config: a resumed run's own, a fork's (the parent's with the overrides), or the
    YAML with the overrides, validated (ConfigError otherwise)."""
    if args.resume is not None:
        if args.overrides:
            raise ConfigError("--resume takes no overrides: a resumed run keeps the config it started with")
        return load_config(check_resumable(args.resume))
    if args.fork is not None:
        if not args.after:
            raise ConfigError("--fork needs --after PHASE: the last of the parent's phases to reuse")
        launched = launched_run_dir()
        return (
            load_config(Path(launched) / "config.yaml")
            if launched
            else fork_config(args.fork, args.after, args.overrides)
        )
    if args.after:
        raise ConfigError("--after goes with --fork")
    return load_config(args.config, args.overrides)


def plan_run(args: argparse.Namespace) -> RunPlan:
    """Step 1: the config, resume or fork parent and overrides resolved and checked (ConfigError or
    RunDirError otherwise); the models are checked next, unless only the config is printed."""
    cfg = resolved_config(args)
    kind = "resume" if args.resume is not None else "fork" if args.fork is not None else "new"
    return RunPlan(cfg, kind, args.resume, args.fork)


def check_model_sources(cfg: DictConfig) -> None:
    """The protocol's models and tokenizers must be loadable before a run directory is made."""
    for source, marker in protocol_for(cfg).sources(cfg):
        resolve_model_source(source, marker)


def open_run_dir(plan: RunPlan) -> Path:
    """Step 2: the run directory, made (a fork's filled with its parent's phases) or taken over for a
    resume, and locked: a second live process on it stops here. Data-parallel ranks launched later
    find it in the environment."""
    if plan.resume_dir is not None:
        run_dir = plan.resume_dir
    else:
        launched = launched_run_dir()
        run_dir = Path(launched or create_run_dir(plan.cfg.output_root, plan.cfg.experiment))
        if plan.parent is not None and not launched:
            populate_fork(plan.parent, run_dir, plan.cfg)
        os.environ[RUN_DIR_ENV] = str(run_dir)  # data-parallel ranks launched later write nothing, read it
    lock_run_dir(run_dir)
    return Path(run_dir)


def execute(plan: RunPlan, run_dir: Path) -> tuple[int, dict | None]:
    """Step 3: the protocol runs (heavy imports only now; a fork's reused phases count as done).
    Returns the exit code and the summary; a mistake found only once the data is tokenized removes
    what a fresh run wrote."""
    if plan.cfg.trainer.cpu_threads:
        # read by torch when it is imported below, by every data-parallel rank launched later,
        # and by Lightning, which otherwise gives each CPU rank cores / devices threads
        os.environ["OMP_NUM_THREADS"] = str(plan.cfg.trainer.cpu_threads)
    use_huge_pages()  # before torch is imported: a refresh's D×k basis on 2 MiB pages (loclin.runs.allocator)
    try:
        summary = protocol_for(plan.cfg).run(plan.cfg, run_dir, resume=plan.kind == "resume")
    except ConfigError as error:  # found only once the data is tokenized (a steering template): nothing kept
        if plan.fresh:
            shutil.rmtree(run_dir, ignore_errors=True)
        print(f"loclin: error: {error}", file=sys.stderr)
        return EXIT_USAGE, None
    except (KeyboardInterrupt, SystemExit) as error:  # Lightning turns Ctrl-C in fit into sys.exit(1)
        if not (isinstance(error, KeyboardInterrupt) or isinstance(error.__context__, KeyboardInterrupt)):
            raise
        print(
            f"loclin: error: interrupted; what was written is kept: {commands()[0]} --resume {run_dir}", file=sys.stderr
        )
        return EXIT_INTERRUPTED, None
    except OSError as error:  # a full disk, a vanished file system: a fault, not a mistake in the command
        if os.environ.get("LOCLIN_TRACEBACK"):
            raise
        where = f" ({error.filename})" if error.filename else ""
        print(
            f"loclin: error: {error.strerror or error}{where}; what was written is kept: once that is fixed, "
            f"{commands()[0]} --resume {run_dir} (LOCLIN_TRACEBACK=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAULT, None
    diverged = (summary or {}).get("diverged")
    if diverged:
        if global_rank() == 0:
            print(
                f"loclin: error: {diverged['message']} (phase '{diverged['phase']}', stopped at run step "
                f"{diverged.get('stopped_at', diverged['step'])}); "
                f"{run_dir / 'summary.json'} marks the run as diverged",
                file=sys.stderr,
            )
        return EXIT_FAULT, summary
    return 0, summary


def main(argv: list[str] | None = None) -> int:
    """Plan, open the run directory, run the protocol, print the ending: each once, in that order."""
    args = parse_args(argv)
    try:
        plan = plan_run(args)
        if args.print_config:
            print(OmegaConf.to_yaml(plan.cfg), end="")
            return 0
        check_model_sources(plan.cfg)
        run_dir = open_run_dir(plan)
    except (ConfigError, RunDirError, ModelSourceError) as error:
        print(f"loclin: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    code, summary = execute(plan, run_dir)
    if code == 0 and global_rank() == 0:
        print_ending(run_dir, summary)
    return code


def commands() -> tuple[str, str]:
    """The train and analyze commands of the entry point in use: ``loclin train`` or ``loclin-train``
    (installed), ``python -m loclin.train`` (a sweep's points) or a checkout's ``python train.py``."""
    launched = Path(sys.argv[0])
    if launched.name.startswith("loclin "):  # the loclin command (loclin/cli.py)
        return "loclin train", "loclin analyze"
    if launched.name == "loclin-train":
        return "loclin-train", "loclin-analyze"
    if launched.suffix == ".py" and launched.resolve() == Path(__file__).resolve():
        return "python -m loclin.train", "python -m loclin.analyze"
    return "python train.py", "python analyze.py"


def print_ending(run_dir: Path, summary: dict | None) -> None:
    """The run's headline numbers (analyze.py's table, when the protocol has one) and their reading
    (readings.run_verdict), then where to look next: the summary, TensorBoard and analyze.py."""
    if summary and summary.get("metrics"):
        from loclin.reports.readings import run_verdict
        from loclin.reports.run_tables import headline_table
        from loclin.reports.tables import bound_reading, render_markdown

        try:
            table = headline_table([summary])
            print(render_markdown(table))
            if bound_reading(table):
                print(f"\n{bound_reading(table)}")
            reading = run_verdict(summary)
            if reading:
                print(f"\n{reading}\n")
        except (KeyError, TypeError, ValueError):  # a protocol whose summary the table does not cover
            pass
    print(f"[loclin] run directory: {run_dir}")
    print(f"[loclin] summary: {run_dir / 'summary.json'}")
    print(f"[loclin] live panels: tensorboard --logdir {run_dir}")
    print(f"[loclin] tables, plots and report.md: {commands()[1]} {run_dir}")


if __name__ == "__main__":
    sys.exit(main())
