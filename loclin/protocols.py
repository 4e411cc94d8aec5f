"""The registry of experiments: one entry per protocol, named by a config's ``protocol`` key.

    protocol       runner                                              phase hooks
    train          loclin.experiment:run_experiment (the phased runner)   none
    recovery       loclin.experiment:run_experiment                        loclin.recovery:Recovery
    random_search  loclin.random_search_experiment:run_random_search       loclin.random_search_experiment:Probe
    quadratic      loclin.quadratic_experiment:run_quadratic               (not phased)
    steer          loclin.steer_experiment:run_steering                    (not phased)

A protocol is a name, a runner ``run(cfg, run_dir, resume) -> summary`` named as ``module:function``
(its heavy imports, torch, Lightning, transformers, happen only once the config is valid), its config
check, the phase hooks it plugs into the phased runner, how a summary.json without a ``protocol``
key (written before the key existed) is recognised, and the model sources it must resolve before a
run directory exists. The model family (``family: synthetic`` or ``lora``) is a separate setting of
the phased protocols (``loclin.config.FAMILIES``, ``loclin.experiment.MODEL_FAMILIES``). Adding a
protocol is one module with a ``run`` and one line in ``PROTOCOLS`` (docs/design.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from loclin.callbacks.keys import RANDOM_SEARCH_POINTS, RECOVERY_PREFIX, RECOVERY_TABLE

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
    validate: str  # "module:function" raising ConfigError
    sources: Callable[[DictConfig], Sources] = no_sources
    hooks: str | None = None  # "module:Class", a loclin.phase_hooks.PhaseHooks the phased runner calls
    wrote: Callable[[dict], bool] = never  # does a summary.json without a "protocol" key come from it?
    whole_vectors: bool = False  # its measurements need whole, exact D-vectors (no sketched or sharded windows)

    def run(self, cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
        return named(self.runner)(cfg, run_dir, resume)

    def check(self, cfg: DictConfig) -> None:
        """The protocol's own config checks (loclin.config.validate calls this)."""
        named(self.validate)(cfg)

    def hook_class(self) -> type:
        """Its loclin.phase_hooks.PhaseHooks subclass (PhaseHooks itself, which adds nothing, if none)."""
        return named(self.hooks or "loclin.phase_hooks:PhaseHooks")


def named(reference: str) -> Callable:
    """The function a ``"module:function"`` reference names (imported on first use)."""
    module, function = reference.split(":")
    return getattr(importlib.import_module(module), function)


PHASED = "loclin.experiment:run_experiment"
PROTOCOLS = {  # a summary.json without "protocol" is recognised in this order
    p.name: p
    for p in (
        Protocol(
            "quadratic",
            "loclin.quadratic_experiment:run_quadratic",
            "loclin.config:validate_quadratic",
            wrote=lambda s: "krylov_exact" in s.get("curves", {}).get(RECOVERY_PREFIX, {}),
        ),
        Protocol(
            "steer",
            "loclin.steer_experiment:run_steering",
            "loclin.config:validate_steer",
            steer_sources,
            wrote=lambda s: s.get("kind") == "steer",
        ),
        Protocol(
            "random_search",
            "loclin.random_search_experiment:run_random_search",
            "loclin.config:validate_random_search",
            lm_sources,
            "loclin.random_search_experiment:Probe",
            lambda s: RANDOM_SEARCH_POINTS in s.get("curves", {}),
            whole_vectors=True,
        ),
        Protocol(
            "recovery",
            PHASED,
            "loclin.config:validate_recovery",
            lm_sources,
            "loclin.recovery:Recovery",
            lambda s: RECOVERY_TABLE in s.get("curves", {}),
            whole_vectors=True,
        ),
        Protocol("train", PHASED, "loclin.config:validate_phased", lm_sources),
    )
}


def protocol_for(cfg: DictConfig) -> Protocol:
    """The protocol a validated config names."""
    return PROTOCOLS[cfg.protocol]


def protocol_of_summary(summary: dict) -> str:
    """The name of the protocol that wrote a summary.json: its ``protocol`` key, or for a summary
    written before that key existed, what it holds (the phased runner's plain train otherwise)."""
    if summary.get("protocol") in PROTOCOLS:
        return summary["protocol"]
    return next((p.name for p in PROTOCOLS.values() if p.wrote(summary)), "train")
