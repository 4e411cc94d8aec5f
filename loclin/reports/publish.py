"""Publish the regime maps into docs/results, all or nothing, then regenerate the results page.

    python -m loclin publish [MAPS=runs/maps] [--root docs/results] [--separate] [--replace NAME ...]

For each map folder ``MAPS/<name>/`` (a folder of sweeps or steering runs), its records are merged
into the published ``<root>/maps/<name>/cells.json`` (loclin.reports.maps.records ``merge_records``: a point
is replaced only by one of the same digest, so a sweep of another model, parent or config in the
folder is refused with one line naming the difference, or kept as its own cell with
``--separate``). Every map is merged before any file is written: one refusal leaves every
published record and the results page as they were. A verdict the merge changes is printed,
before and after. ``command.txt`` (how the map was run) is written once, where it is missing.
``--replace NAME`` publishes a map re-made from scratch (new parents, new seeds): its published
records are dropped, never merged, and the line says how many and made by what.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from loclin.reports.map_report import verdict_changes
from loclin.reports.maps.records import CELLS_FILE, collect, merge_records, read_records
from loclin.runs.rundir import RunDirError, atomic_write_text

EXIT_USAGE = 2


def merged_maps(
    maps: Path, root: Path, separate: bool, replace: tuple[str, ...] = ()
) -> dict[str, tuple[list[dict], list[dict]]]:
    """name -> (published records, merged records) for every map folder with a finished point; the
    maps named in ``replace`` take the folder's records alone."""
    if not maps.is_dir():
        raise RunDirError(f"maps folder '{maps}' not found")
    merged = {}
    for folder in sorted(p for p in maps.iterdir() if p.is_dir()):
        try:
            records = collect(folder)
        except RunDirError as error:
            if "no finished point" not in str(error):
                raise
            print(f"[publish] {folder.name}: no finished point")
            continue
        published = root / "maps" / folder.name / CELLS_FILE
        earlier = read_records(published, "publish") if published.is_file() else []
        if folder.name in replace:
            makers = sorted({json.dumps(r["made_by"], sort_keys=True) for r in earlier if r.get("made_by")})
            made = f"made by {'; '.join(makers)}" if makers else "their makers not recorded"
            print(f"[publish] {folder.name}: replaces {len(earlier)} published records ({made})")
            merged[folder.name] = (earlier, merge_records([], records, separate))
        else:
            merged[folder.name] = (earlier, merge_records(earlier, records, separate))
    unknown = sorted(set(replace) - set(merged))
    if unknown:
        raise RunDirError(f"--replace {', '.join(unknown)}: no such map with a finished point under '{maps}'")
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("maps", nargs="?", type=Path, default=Path("runs/maps"), help="folder of map folders")
    parser.add_argument("--root", type=Path, default=Path("docs/results"), help="the published results")
    parser.add_argument("--out", type=Path, default=None, help="the results page (default: <root>/../results.md)")
    parser.add_argument("--separate", action="store_true", help="keep a point made by another run as its own cell")
    parser.add_argument(
        "--replace",
        nargs="+",
        default=[],
        metavar="NAME",
        help="a map re-made from scratch: drop its published records",
    )
    args = parser.parse_args(argv)
    try:
        merged = merged_maps(args.maps, args.root, args.separate, tuple(args.replace))
    except RunDirError as error:
        print(f"loclin: error: {error}; nothing was published", file=sys.stderr)
        return EXIT_USAGE
    for name, (earlier, records) in merged.items():
        for line in verdict_changes(earlier, records):
            print(f"[publish] {name}: {line.removeprefix('[loclin] ')}")
        target = args.root / "maps" / name
        target.mkdir(parents=True, exist_ok=True)
        text = json.dumps(records, indent=1)
        if not (target / CELLS_FILE).is_file() or (target / CELLS_FILE).read_text() != text:
            atomic_write_text(target / CELLS_FILE, text)
        if not (target / "command.txt").is_file():
            atomic_write_text(target / "command.txt", f"bash docs/maps/{name}.sh {args.maps / name}\n")
        print(f"[publish] {name}: {len(records)} records; {(target / 'command.txt').read_text().strip()}")
    from loclin.reports import results

    out = args.out or args.root.parent / "results.md"
    performance = args.root.parent / "performance.md"
    return results.main(["--root", str(args.root), "--out", str(out), "--performance", str(performance)])


if __name__ == "__main__":
    sys.exit(main())
