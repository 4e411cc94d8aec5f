"""loclin.runs.allocator: with glibc's thresholds raised, a freed large block's pages are reused (no
new page faults when the next block of its size is filled); left as glibc has them, every page of
the next block is faulted in again. Counted by the kernel (getrusage minor faults), each in a fresh
interpreter so the test process keeps its own malloc settings."""

import subprocess
import sys

import pytest

FILL_AGAIN = """
import resource, sys, torch
from loclin.runs.allocator import reuse_freed_pages
took = reuse_freed_pages() if sys.argv[1] == "reuse" else None
n = 16 * 2**20  # floats: 64 MiB, twice glibc's largest default mmap threshold
block = torch.empty(n).fill_(1.0)
del block
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.empty(n).fill_(2.0)
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES = 64 * 2**20 // 4096


def faults_filling_again(mode: str) -> tuple[str, int]:
    done = subprocess.run([sys.executable, "-c", FILL_AGAIN, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    took, faults = done.stdout.split()
    return took, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_freed_large_block_is_reused_without_page_faults_only_once_the_thresholds_are_raised():
    took, reused = faults_filling_again("reuse")
    if took != "True":
        pytest.skip("this libc has no mallopt thresholds (not glibc)")
    _, fresh = faults_filling_again("default")
    assert fresh > 0.9 * PAGES  # glibc's default: fresh pages from mmap, each faulted in on first touch
    assert reused < 0.05 * PAGES
