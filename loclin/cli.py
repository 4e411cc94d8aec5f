"""loclin COMMAND …: one command for what loclin does, each command with its own ``--help``.

  loclin train --config synthetic [key=value …]    a run (also --resume RUN_DIR)
  loclin fork RUN_DIR --after PHASE [key=value …]  a run that reuses RUN_DIR's phases up to PHASE
  loclin analyze RUN_DIR [RUN_DIR …]               tables and figures over finished runs
  loclin sweep --config … --grid key=[a,b]         a grid of runs, resumable
  loclin publish [MAPS]                            merge map records into docs/results/maps
  loclin results                                   regenerate docs/results.md from the records
  loclin assets list | fetch NAME …                the offline models and data

``python train.py``, ``python analyze.py``, ``python -m loclin.sweep`` and the ``loclin-train`` /
``loclin-analyze`` entry points run the same code.
"""

import argparse
import importlib
import sys

COMMANDS = {  # command: (the module whose main() runs it, one line of help)
    "train": ("loclin.train", "a run from a config (or --resume a killed one)"),
    "fork": ("loclin.train", "a run reusing a parent's phases: RUN_DIR --after PHASE [key=value …]"),
    "analyze": ("loclin.analyze", "tables and figures over finished runs"),
    "sweep": ("loclin.sweep", "a grid of runs or forks, resumable"),
    "publish": ("loclin.reports.publish", "merge map records into the published results"),
    "results": ("loclin.reports.results", "regenerate the results page from the published records"),
    "assets": ("loclin.assets", "list or fetch the offline models and data"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="loclin",
        description=__doc__.split("\n\n")[0],
        epilog="\n".join(f"  {name:<8} {text}" for name, (_, text) in COMMANDS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=COMMANDS, metavar="COMMAND", help=", ".join(COMMANDS))
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.parse_args(argv[:1])  # help, or one line naming the unknown command; exits
    command, rest = argv[0], argv[1:]
    if command == "fork":  # loclin fork RUN_DIR … is loclin train --fork RUN_DIR …
        if not rest:
            print("loclin fork: error: name the parent: loclin fork RUN_DIR --after PHASE …", file=sys.stderr)
            return 2
        rest = ["--help"] if rest[0] in ("-h", "--help") else ["--fork", *rest]
    sys.argv[0] = f"loclin {command}"  # argparse's usage line, and the commands a run's ending names
    return importlib.import_module(COMMANDS[command][0]).main(rest)


if __name__ == "__main__":
    sys.exit(main())
