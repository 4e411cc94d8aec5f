"""Where a causal LM comes from: ``asset:NAME``, a local directory, or a Hugging Face hub id.

Resolved before anything is built or written (no torch import here), so an unreachable hub
id is one clear line at once rather than a minute of transformers' retries.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from loclin.assets import asset_path
from loclin.schema import ASSET_PREFIX


class ModelSourceError(ValueError):
    """A model reference that cannot be loaded here; the message is one line."""


def _hub_reachable(timeout: float = 3.0) -> str | None:
    """None if the hub's host answers on port 443, else the reason it does not."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return "HF_HUB_OFFLINE is set"
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as error:
        return f"{host} cannot be reached ({error.strerror or error})"
    return None


def resolve_model_source(name: str, marker: str = "config.json") -> tuple[str, bool]:
    """(what ``from_pretrained`` gets, whether to stay offline) for ``asset:NAME``, a local
    directory (holding ``marker``: config.json for a model, tokenizer_config.json for a
    tokenizer) or a hub id. A hub id that is neither cached nor reachable fails at once,
    instead of after transformers' retries."""
    if name.startswith(ASSET_PREFIX):
        return str(asset_path(name[len(ASSET_PREFIX) :])), True
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / marker).is_file():
            raise ModelSourceError(f"'{name}' is a directory without {marker}; save one there with save_pretrained")
        return str(path), True
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelSourceError(f"model directory '{name}' does not exist")
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, marker), str):
        return name, True
    reason = _hub_reachable()
    if reason is not None:
        raise ModelSourceError(
            f"model '{name}' is not a local directory or in the Hugging Face cache, and {reason}; "
            "give a local directory (save_pretrained) or an asset (python -m loclin.assets list)"
        )
    return name, False


def resolve_model_and_tokenizer(model: str, tokenizer: str | None = None) -> tuple[tuple[str, bool], tuple[str, bool]]:
    """The resolved sources of a model and of its tokenizer (the model's own unless named)."""
    source = resolve_model_source(model)
    return source, resolve_model_source(tokenizer, "tokenizer_config.json") if tokenizer else source
