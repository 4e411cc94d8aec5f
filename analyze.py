"""Tables, plots and a Markdown report from one or more finished runs.

    python analyze.py runs/synthetic/version_0 [more runs or folders of runs] [--out DIR]

Prints the headline table, writes PNG plots and report.md (default: <first run>/analysis).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loclin.rundir import RunDirError

EXIT_USAGE = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories, or folders holding them")
    parser.add_argument("--out", type=Path, help="where plots and report.md go")
    args = parser.parse_args(argv)
    from loclin.report import build_report, find_runs

    try:
        out = args.out or find_runs(args.runs)[0] / "analysis"
        table = build_report(args.runs, out)
    except RunDirError as error:
        print(f"loclin: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(table)
    print(f"\n[loclin] plots and report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
