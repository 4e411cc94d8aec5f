"""The path a command's arguments take through loclin before anything runs: which files, how often
they come back to one they had left.

    python benchmarks/cli_path.py [--json F]

Runs ``loclin train`` in this process three ways (a new run of ``conf/tiny_recovery.yaml``, a fork
of a finished one after ``degrade``, a resume of that one with its summary removed) and traces
every call of a function in ``loclin/`` from ``main`` until the protocol's runner is called (where
assembly ends: the runner is stopped there), down to ``--depth`` calls below ``main`` (default 2: the steps ``main``
takes and what each of them asks for; deeper calls are a step's own work, such as a validator
calling its ``require`` helper). The trace is the sequence of files those calls are in, with
consecutive calls in one file counted once. Reported per command:

    files    the distinct files the arguments enter
    entries  the length of that sequence
    returns  entries − files: how often the path comes back to a file it had left
    away     the same, not counting returns to the command's own file (loclin/train.py), where
             ``main``'s steps are: the back-and-forth between the other files

The parent is made first by a real run (about 30 s on one thread).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from loclin import train  # noqa: E402

try:  # the registry's home since loclin/protocols/ became a package
    from loclin.protocols.registry import Protocol  # noqa: E402
except ImportError:  # an older checkout, for the "before" column
    from loclin.protocols import Protocol  # noqa: E402


class AssemblyDone(BaseException):  # not an Exception: train.main must not report it as a failure
    """Raised by the stopped runner: the command has resolved everything it needs."""


def depth_below_main(frame) -> int | None:
    """How many calls ``frame`` is below ``train.main`` (None: not under it)."""
    depth = 0
    while frame is not None:
        if frame.f_code is train.main.__code__:
            return depth
        frame, depth = frame.f_back, depth + 1
    return None


def traced_files(argv: list[str], max_depth: int) -> list[str]:
    """The loclin files of the calls from ``train.main(argv)`` to the runner, at most ``max_depth``
    below main, consecutive repeats once."""
    package = REPO / "loclin"
    sequence: list[str] = []

    def profile(frame, event, arg):
        if event != "call":
            return
        file = Path(frame.f_code.co_filename)
        if not file.is_relative_to(package) or (sequence and sequence[-1] == str(file)):
            return
        depth = depth_below_main(frame)
        if depth is not None and 1 <= depth <= max_depth:
            sequence.append(str(file))

    real_run = Protocol.run

    def stopped(self, cfg, run_dir, resume=False):
        sys.setprofile(None)
        raise AssemblyDone

    Protocol.run = stopped
    sys.setprofile(profile)
    try:
        train.main(argv)
    except AssemblyDone:
        pass
    finally:
        sys.setprofile(None)
        Protocol.run = real_run
    return [Path(f).relative_to(REPO).as_posix() for f in sequence]


def counted(sequence: list[str]) -> dict:
    returns = Counter(sequence) - Counter(set(sequence))
    return {
        "files": len(set(sequence)),
        "entries": len(sequence),
        "returns": len(sequence) - len(set(sequence)),
        "away": sum(n for file, n in returns.items() if file != "loclin/train.py"),
        "returns_by_file": dict(returns.most_common()),
        "path": sequence,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the counts here")
    parser.add_argument("--depth", type=int, default=2, help="calls below main that count (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        common = [f"output_root={root}", "trainer.progress_bar=false"]
        assert train.main(["--config", str(REPO / "conf" / "tiny_recovery.yaml"), *common, "experiment=parent"]) == 0
        parent = root / "parent" / "version_0"
        commands = {
            "new": ["--config", str(REPO / "conf" / "tiny_recovery.yaml"), *common, "experiment=new"],
            "fork": ["--fork", str(parent), "--after", "degrade", *common, "experiment=forked"],
        }
        results = {name: counted(traced_files(argv, args.depth)) for name, argv in commands.items()}
        (parent / "summary.json").unlink()  # a run killed after its last phase, before its summary
        results["resume"] = counted(traced_files(["--resume", str(parent)], args.depth))
    for name, r in results.items():
        back = ", ".join(f"{file} {n}" for file, n in r["returns_by_file"].items()) or "none"
        counts = f"files {r['files']:2}  entries {r['entries']:3}  returns {r['returns']:3}  away {r['away']:3}"
        print(f"{name:7} depth {args.depth}  {counts}  ({back})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
