"""Whether numpy's BLAS would make a refresh's Gram rows faster than torch's, on one thread, in one run.

    python benchmarks/second_blas.py [--dim 4600000] [--window 40] [--new 10] [--repeats 3]

The Gram rows of a refresh are the ``new`` newest window vectors against all W, taken as float32
products over 4,096-column blocks and summed in float64 (geometry.subspace.column_gram's blocks).
Here the same products run through torch and through numpy, alternately, each pinned to one thread,
and the ratio numpy ÷ torch is printed: above 1, the second BLAS loses. On this machine's numpy
(scipy-openblas) it was 1.09–1.15× with OPENBLAS_CORETYPE as set here and 1.20× with it unset, so loclin
keeps torch's alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

BLOCK = 4096


def torch_rows(window: torch.Tensor, new: int) -> np.ndarray:
    out = torch.zeros(new, window.shape[0], dtype=torch.float64)
    for start in range(0, window.shape[1], BLOCK):
        block = window[:, start : start + BLOCK]
        out += (block[:new] @ block.T).double()
    return out.numpy()


def numpy_rows(window: np.ndarray, new: int) -> np.ndarray:
    out = np.zeros((new, window.shape[0]))
    for start in range(0, window.shape[1], BLOCK):
        block = window[:, start : start + BLOCK]
        out += block[:new] @ block.T
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=4_600_000)
    parser.add_argument("--window", type=int, default=40)
    parser.add_argument("--new", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    window = torch.randn(args.window, args.dim, generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {"torch": [], "numpy": []}
    for _ in range(args.repeats):
        for name, rows in (
            ("torch", lambda: torch_rows(window, args.new)),
            ("numpy", lambda: numpy_rows(window.numpy(), args.new)),
        ):
            start = time.perf_counter()
            rows()
            times[name].append(time.perf_counter() - start)
    agree = np.abs(torch_rows(window, args.new) - numpy_rows(window.numpy(), args.new)).max()
    medians = {name: statistics.median(values) for name, values in times.items()}
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    print(f"Gram rows, D = {args.dim:,}, {args.new} × {args.window}, one thread (OPENBLAS_CORETYPE={coretype})")
    for name, seconds in medians.items():
        print(f"  {name:5s} {seconds * 1e3:7.1f} ms")
    print(f"  numpy ÷ torch: {medians['numpy'] / medians['torch']:.2f}×; largest difference {agree:.1e}")


if __name__ == "__main__":
    main()
