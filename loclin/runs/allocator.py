"""Large tensors on pages already mapped: glibc's malloc tuned for a run that allocates the same
large blocks again and again.

glibc serves an allocation above its mmap threshold (at most 32 MiB by default) with fresh pages
from ``mmap``, and gives them back with ``munmap`` when the tensor is freed; the kernel then faults
in and zeroes every page on first touch. A rolling-basis refresh allocates its D×k basis each time
(147 MB at D = 4.6M, k = 8): on this machine those page faults cost about as much as the product
that fills it (``benchmarks/refresh_floor.py``: ``torch.empty(k, D).fill_(1)`` 68 ms fresh against
9 ms on mapped pages). ``reuse_freed_pages`` raises the mmap threshold and the trim threshold
(``mallopt``), so a freed block stays in the heap and the next one of its size reuses its pages.

The cost: memory the run frees stays with its process until it ends (resident at its peak), which a
training process holds anyway. It changes no number. ``train.py`` calls it for a config run; the
drop-in callbacks (``GeometryMonitor``, the Hugging Face callback) leave the user's process as it
is. Elsewhere than glibc (macOS, musl) it does nothing and says so by returning False.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
KEPT_BYTES = 1 << 30  # blocks up to 1 GiB come from the heap and stay there when freed


def reuse_freed_pages(limit: int = KEPT_BYTES) -> bool:
    """Set glibc's mmap and trim thresholds to ``limit`` bytes; True if glibc took both."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, limit)) and bool(mallopt(M_TRIM_THRESHOLD, limit))
