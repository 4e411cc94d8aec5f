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
from pathlib import Path

from omegaconf import OmegaConf

from loclin.config import ConfigError, load_config, packaged_configs
from loclin.fork import fork_config, populate_fork
from loclin.model_source import ModelSourceError, resolve_model_source
from loclin.protocols import protocol_for
from loclin.rundir import (
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


def check_model_sources(cfg) -> None:
    """The protocol's models and tokenizers must be loadable before a run directory is made."""
    for source, marker in protocol_for(cfg).sources(cfg):
        resolve_model_source(source, marker)


def resolved_config(args: argparse.Namespace):
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


def prepare_run_dir(args: argparse.Namespace, cfg) -> Path:
    """The run directory: a resumed run's, or a new one (a fork's filled with its parent's phases)
    that data-parallel ranks launched later find in the environment."""
    if args.resume is not None:
        return args.resume
    launched = launched_run_dir()
    run_dir = launched or create_run_dir(cfg.output_root, cfg.experiment)
    if args.fork is not None and not launched:
        populate_fork(args.fork, Path(run_dir), cfg)
    os.environ[RUN_DIR_ENV] = str(run_dir)  # data-parallel ranks launched later write nothing, read it
    return run_dir


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = resolved_config(args)
        if args.print_config:
            print(OmegaConf.to_yaml(cfg), end="")
            return 0
        check_model_sources(cfg)
        run_dir = prepare_run_dir(args, cfg)
        lock_run_dir(run_dir)  # a second live process on this run directory stops here
    except (ConfigError, RunDirError, ModelSourceError) as error:
        print(f"loclin: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if cfg.trainer.cpu_threads:
        # read by torch when it is imported below, by every data-parallel rank launched later,
        # and by Lightning, which otherwise gives each CPU rank cores / devices threads
        os.environ["OMP_NUM_THREADS"] = str(cfg.trainer.cpu_threads)

    fresh = args.resume is None and global_rank() == 0  # this process made the run directory
    try:  # heavy imports only now that the config is valid; a fork's reused phases count as done
        summary = protocol_for(cfg).run(cfg, Path(run_dir), resume=args.resume is not None)
    except ConfigError as error:  # found only once the data is tokenized (a steering template): nothing kept
        if fresh:
            shutil.rmtree(run_dir, ignore_errors=True)
        print(f"loclin: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (KeyboardInterrupt, SystemExit) as error:  # Lightning turns Ctrl-C in fit into sys.exit(1)
        if not (isinstance(error, KeyboardInterrupt) or isinstance(error.__context__, KeyboardInterrupt)):
            raise
        print(
            f"loclin: error: interrupted; what was written is kept: {commands()[0]} --resume {run_dir}", file=sys.stderr
        )
        return EXIT_INTERRUPTED
    except OSError as error:  # a full disk, a vanished file system: a fault, not a mistake in the command
        if os.environ.get("LOCLIN_TRACEBACK"):
            raise
        where = f" ({error.filename})" if error.filename else ""
        print(
            f"loclin: error: {error.strerror or error}{where}; what was written is kept: once that is fixed, "
            f"{commands()[0]} --resume {run_dir} (LOCLIN_TRACEBACK=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAULT
    diverged = (summary or {}).get("diverged")
    if diverged:
        if global_rank() == 0:
            print(
                f"loclin: error: {diverged['message']} (phase '{diverged['phase']}', stopped at run step "
                f"{diverged.get('stopped_at', diverged['step'])}); "
                f"{Path(run_dir) / 'summary.json'} marks the run as diverged",
                file=sys.stderr,
            )
        return EXIT_FAULT
    if global_rank() == 0:
        print_ending(Path(run_dir), summary)
    return 0


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
    (report.run_verdict), then where to look next: the summary, TensorBoard and analyze.py."""
    if summary and summary.get("metrics"):
        from loclin.report import headline_table, render_markdown, run_verdict
        from loclin.tables import bound_reading

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
