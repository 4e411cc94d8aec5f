"""Do two versions of the code give the same numbers? Run every tiny config, then compare.

    python benchmarks/summary_equality.py run OUT [--configs tiny_recovery,tiny_lora]
    python benchmarks/summary_equality.py compare BEFORE AFTER

``run`` trains each ``conf/tiny_*.yaml`` (one thread, progress bar off) and keeps its
summary.json as ``OUT/<config>.json``. ``compare`` walks the two summaries of each config leaf by
leaf and prints, per config: the numeric leaves, how many are equal bit for bit, the largest
relative difference of the rest, and the keys that exist on one side only. Wall-clock time, paths
and thread counts are not results and are left out. Exit 0 when every shared leaf is equal within
``--rtol`` (default 0: bit for bit) and no key is missing, 1 otherwise.

A refactor (issue 15) or a faster kernel (issue 17) runs ``run`` on the commit before and the
commit after, in two checkouts, and reports ``compare``'s table in its closing note.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOT_RESULTS = {"run_dir", "wall_seconds_this_process", "torch_threads", "path", "log_dir", "parent", "fork"}


def leaves(node, prefix: str = ""):
    """(dotted key, value) of every number, string or bool under ``node``, lists by index."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in NOT_RESULTS:
                yield from leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from leaves(value, f"{prefix}[{i}]")
    else:
        yield prefix, node


def relative_difference(a: float, b: float) -> float:
    if a == b or (math.isnan(a) and math.isnan(b)):
        return 0.0
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def compare(before: dict, after: dict) -> dict:
    """Counts of equal leaves, the largest relative difference and where, and one-sided keys."""
    a, b = dict(leaves(before)), dict(leaves(after))
    shared = sorted(set(a) & set(b))
    numeric = [
        k
        for k in shared
        if isinstance(a[k], (int, float)) and isinstance(b[k], (int, float)) and not isinstance(a[k], bool)
    ]
    differences = {k: relative_difference(float(a[k]), float(b[k])) for k in numeric}
    other_unequal = [k for k in shared if k not in differences and a[k] != b[k]]
    worst = max(differences, key=differences.get, default=None)
    return {
        "numbers": len(numeric),
        "bit_equal": sum(d == 0.0 for d in differences.values()),
        "max_rel": differences.get(worst, 0.0) if worst else 0.0,
        "worst_key": worst,
        "other_unequal": other_unequal,
        "only_before": sorted(set(a) - set(b)),
        "only_after": sorted(set(b) - set(a)),
    }


def run(out: Path, configs: list[str]) -> int:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in configs:
        with tempfile.TemporaryDirectory() as root:
            command = [
                sys.executable,
                str(REPO / "train.py"),
                "--config",
                str(REPO / "conf" / f"{name}.yaml"),
                f"output_root={root}",
                "trainer.progress_bar=false",
                "trainer.cpu_threads=1",
            ]
            print(f"[equality] {name}", flush=True)
            done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
            if done.returncode:
                print(
                    f"[equality] {name} failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}",
                    file=sys.stderr,
                )
                return 1
            (summary,) = Path(root).glob("*/version_0/summary.json")
            (out / f"{name}.json").write_text(summary.read_text())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="train every tiny config and keep the summaries")
    run_parser.add_argument("out", type=Path)
    run_parser.add_argument("--configs", default=",".join(sorted(p.stem for p in (REPO / "conf").glob("tiny_*.yaml"))))
    compare_parser = sub.add_parser("compare", help="compare two folders of summaries")
    compare_parser.add_argument("before", type=Path)
    compare_parser.add_argument("after", type=Path)
    compare_parser.add_argument("--rtol", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args.out, args.configs.split(","))
    ok = True
    print(f"{'config':<22}{'numbers':>9}{'bit-equal':>11}{'max rel. diff':>15}  where / one-sided keys")
    for path in sorted(args.before.glob("*.json")):
        other = args.after / path.name
        if not other.is_file():
            print(f"{path.stem:<22}  missing in {args.after}")
            ok = False
            continue
        result = compare(json.loads(path.read_text()), json.loads(other.read_text()))
        one_sided = result["only_before"] + result["only_after"] + result["other_unequal"]
        ok &= result["max_rel"] <= args.rtol and not one_sided
        where = result["worst_key"] if result["max_rel"] else ""
        extra = f" {len(one_sided)} keys differ in kind or presence: {one_sided[:3]}" if one_sided else ""
        print(
            f"{path.stem:<22}{result['numbers']:>9}{result['bit_equal']:>11}{result['max_rel']:>15.2e}  {where}{extra}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
