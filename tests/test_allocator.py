"""loclin.runs.allocator: with torch's huge-page switch set as train.py sets it, filling a fresh
64 MiB tensor takes a few page faults per 2 MiB instead of one per 4 KiB page; with the switch off,
one per page. Counted by the kernel (getrusage minor faults), each in a fresh interpreter, since
torch reads the switch before its first allocation. A value the user set wins."""

import os
import subprocess
import sys

import pytest

from loclin.runs.allocator import TORCH_SWITCH, kernel_allows_huge_pages

FILL = """
import resource, sys
from loclin.runs.allocator import use_huge_pages
pages = use_huge_pages(enable=sys.argv[1] == "on")
import torch
n = 16 * 2**20  # floats: 64 MiB
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.empty(n).fill_(1.0)
print(pages, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
SMALL_PAGES = 64 * 2**20 // 4096


def faults_filling(switch: str, env: dict | None = None) -> tuple[str, int]:
    """Pages and faults in a fresh interpreter; without ``env``, this one's environment less the
    switch (a run in this process, train.main, sets it)."""
    if env is None:
        env = {key: value for key, value in os.environ.items() if key != TORCH_SWITCH}
    done = subprocess.run([sys.executable, "-c", FILL, switch], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    pages, faults = done.stdout.rsplit(maxsplit=1)
    return pages, int(faults)


@pytest.mark.skipif(not kernel_allows_huge_pages(), reason="transparent huge pages are off in this kernel")
def test_a_large_tensor_takes_a_fraction_of_the_page_faults_on_huge_pages():
    pages, huge = faults_filling("on")
    assert pages == "2 MiB" and huge < 0.1 * SMALL_PAGES
    pages, small = faults_filling("off")
    assert pages == "4 KiB" and small > 0.9 * SMALL_PAGES  # one fault per 4 KiB page


def test_a_switch_the_user_set_wins(monkeypatch):
    monkeypatch.setenv(TORCH_SWITCH, "0")
    pages, _ = faults_filling("on", env=dict(os.environ))
    assert pages == "4 KiB"
