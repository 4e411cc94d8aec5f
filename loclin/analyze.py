"""Tables, plots and a Markdown report from one or more finished runs.

    python analyze.py runs/synthetic/version_0 [more runs or folders of runs] [--out DIR]
    python analyze.py SWEEP_DIR [--key recovery.capture.P8_updates ...]
    python analyze.py MAP_DIR     (a folder of sweeps or steering runs: docs/maps/*.sh)
    python analyze.py MAP_DIR --merge docs/results/maps/NAME/cells.json   (keep published points)

Prints the headline table, writes PNG plots and report.md (default: <first run>/analysis).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loclin.runs.rundir import RunDirError

EXIT_USAGE = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories, or folders holding them")
    parser.add_argument("--out", type=Path, help="where plots and report.md go")
    parser.add_argument("--key", action="append", default=None, help="a sweep: the summary key(s) to tabulate and plot")
    parser.add_argument("--merge", type=Path, help="a map: an earlier cells.json whose other points are kept")
    parser.add_argument(
        "--separate", action="store_true", help="with --merge: keep a point made by another run as its own cell"
    )
    args = parser.parse_args(argv)
    from loclin.reports.report import build_report, find_runs
    from loclin.runs.grid import MANIFEST

    if args.out is not None and args.out.exists() and not args.out.is_dir():
        print(f"loclin: error: --out '{args.out}' is a file; give a folder (made if missing)", file=sys.stderr)
        return EXIT_USAGE
    out = None
    try:
        from loclin.reports.map_report import build_map_report
        from loclin.reports.maps.records import is_map

        a_map = len(args.runs) == 1 and is_map(Path(args.runs[0]))
        if args.separate and not args.merge:
            raise RunDirError("--separate goes with --merge")
        if args.merge and not a_map:
            raise RunDirError("--merge applies to a map folder (a folder of sweeps or steering runs)")
        if a_map:
            out = args.out or Path(args.runs[0]) / "report"
            table = build_map_report(Path(args.runs[0]), out, args.merge, args.separate)
        elif len(args.runs) == 1 and (Path(args.runs[0]) / MANIFEST).is_file():
            from loclin.reports.sweep_report import build_sweep_report

            out = args.out or Path(args.runs[0]) / "analysis"
            table = build_sweep_report(Path(args.runs[0]), out, args.key)
        else:
            out = args.out or find_runs(args.runs)[0] / "analysis"
            table = build_report(args.runs, out)
    except RunDirError as error:
        print(f"loclin: error: {error}", file=sys.stderr)
        remove_if_empty(args.out or out)
        return EXIT_USAGE
    print(table)
    print(f"\n[loclin] plots and report: {out / 'report.md'}")
    return 0


def remove_if_empty(folder: Path | None) -> None:
    """A failed analysis leaves no empty output folder behind (a folder with files is kept)."""
    if folder is not None and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


if __name__ == "__main__":
    sys.exit(main())
