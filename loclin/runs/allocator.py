"""Large tensors on huge pages: torch's own switch, set for a config run before torch is imported.

A freshly allocated tensor of many MiB comes from new pages, and the kernel faults in and zeroes
each one on first touch. A rolling-basis refresh allocates its D×k basis each time (147 MB at
D = 4.6M, k = 8): with 4 KiB pages that is 36k page faults, which on this machine cost about as
much as the product that fills the basis (``benchmarks/refresh_floor.py``). With
``THP_MEM_ALLOC_ENABLE=1`` torch aligns every allocation of 2 MiB or more to 2 MiB and asks the
kernel for transparent huge pages there (``madvise(MADV_HUGEPAGE)``), so the same basis takes about
70 faults.

The cost: up to 2 MiB more per large tensor, and a kernel that may compact memory to find huge
pages. It changes no number. ``train.py`` asks for it in a config run unless the variable is
already set (``THP_MEM_ALLOC_ENABLE=0`` keeps 4 KiB pages); the drop-in callbacks
(``GeometryMonitor``, the Hugging Face callback) leave the user's process as it is. Where the
kernel has transparent huge pages off (``never``), the switch does nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

TORCH_SWITCH = "THP_MEM_ALLOC_ENABLE"  # read by torch's CPU allocator (c10/core/alloc_cpu.cpp)
KERNEL_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def kernel_allows_huge_pages() -> bool:
    """The kernel's transparent-huge-page mode is ``always`` or ``madvise`` (the one torch uses)."""
    try:
        mode = KERNEL_SETTING.read_text()
    except OSError:
        return False
    return "[never]" not in mode


def use_huge_pages(enable: bool = True) -> str:
    """Set torch's switch (before torch allocates; a value already set wins) and say which pages
    large tensors get: ``"2 MiB"`` or ``"4 KiB"``."""
    os.environ.setdefault(TORCH_SWITCH, "1" if enable else "0")
    return "2 MiB" if os.environ[TORCH_SWITCH] == "1" and kernel_allows_huge_pages() else "4 KiB"
