"""The registry of protocols: what a config's ``protocol`` key names.

A protocol is a name, a runner ``run(cfg, run_dir, resume) -> summary`` named as ``module:function``
(its heavy imports, torch, Lightning, transformers, happen only once the config is valid), its config
check, the phase hooks it plugs into the phased runner, how a summary.json without a ``protocol``
key (written before the key existed) is recognised, and the model sources it must resolve before a
run directory exists. Each protocol's package registers itself here (``register``) when
``loclin.protocols`` is imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

Sources = list[tuple[str, str]]  # (model or tokenizer source, the file that marks it: config.json …)


def lm_sources(cfg: DictConfig) -> Sources:
    """A causal LM's model and tokenizer (the phased runner's ``family: lora``); none otherwise."""
    if cfg.family != "lora":
        return []
    return [(cfg.lm.model, "config.json"), *([(cfg.lm.tokenizer, "tokenizer_config.json")] if cfg.lm.tokenizer else [])]


def steer_sources(cfg: DictConfig) -> Sources:
    return [(cfg.steer.model, "config.json")]


def no_sources(cfg: DictConfig) -> Sources:
    return []


def never(_) -> bool:
    return False


@dataclass(frozen=True)
class Protocol:
    name: str
    runner: str  # "module:function" with the signature run(cfg, run_dir, resume) -> summary
    validate: Callable[[DictConfig], None]  # its config check, raising ConfigError
    sources: Callable[[DictConfig], Sources] = no_sources
    hooks: str | None = None  # "module:Class", a loclin.protocols.train.hooks.PhaseHooks the phased runner calls
    wrote: Callable[[dict], bool] = never  # does a summary.json without a "protocol" key come from it?
    whole_vectors: bool = False  # its measurements need whole, exact D-vectors (no sketched or sharded windows)

    def run(self, cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
        return named(self.runner)(cfg, run_dir, resume)

    def check(self, cfg: DictConfig) -> None:
        """The protocol's own config checks (loclin.config.validate calls this)."""
        self.validate(cfg)

    def hook_class(self) -> type:
        """Its loclin.protocols.train.hooks.PhaseHooks subclass (PhaseHooks itself, which adds nothing, if none)."""
        return named(self.hooks or "loclin.protocols.train.hooks:PhaseHooks")


def named(reference: str) -> Callable:
    """The function a ``"module:function"`` reference names (imported on first use)."""
    module, function = reference.split(":")
    return getattr(importlib.import_module(module), function)


PHASED = "loclin.protocols.train.runner:run_experiment"  # the phased runner: train, recovery, random_search
PROTOCOLS: dict[str, Protocol] = {}  # by name, in the order the packages register
RECOGNISED_IN_ORDER = ("quadratic", "steer", "random_search", "recovery")  # checked first, then any other registered


def register(protocol: Protocol) -> Protocol:
    """Adds ``protocol`` to the registry (each protocol package calls this once, on import)."""
    if protocol.name in PROTOCOLS:
        raise ValueError(f"protocol '{protocol.name}' is registered twice")
    PROTOCOLS[protocol.name] = protocol
    return protocol


def protocol_for(cfg: DictConfig) -> Protocol:
    """The protocol a validated config names."""
    return PROTOCOLS[cfg.protocol]


def protocol_of_summary(summary: dict) -> str:
    """The name of the protocol that wrote a summary.json: its ``protocol`` key, or for a summary
    written before that key existed, what it holds (the phased runner's plain train otherwise)."""
    if summary.get("protocol") in PROTOCOLS:
        return summary["protocol"]
    order = [*RECOGNISED_IN_ORDER, *(name for name in PROTOCOLS if name not in RECOGNISED_IN_ORDER)]
    return next((name for name in order if name in PROTOCOLS and PROTOCOLS[name].wrote(summary)), "train")
