"""The registry of experiments: one entry per protocol, looked up by ``train.py`` and the reports.

    protocol       selected by                          runner
    train          kind: synthetic or lora (default)    loclin.experiment.run_experiment
    recovery       ... with recovery.enabled             run_experiment with the recovery phase hooks
    random_search  ... with random_search.enabled        loclin.random_search_experiment.run_random_search
    quadratic      kind: quadratic                       loclin.quadratic_experiment.run_quadratic
    steer          kind: steer                           loclin.steer_experiment.run_steering

A protocol is a name, a runner ``run(cfg, run_dir, resume) -> summary`` named as ``module:function``
(its heavy imports, torch, Lightning, transformers, happen only once the config is valid), what
selects it in a config, how its summary.json is recognised, and the model sources it must resolve
before a run directory exists. :func:`protocol_for` and :func:`protocol_of_summary` are the only
places that ask which protocol a config or a summary is; the model family (``kind: synthetic`` or
``lora``) is the phased runner's own setting (``loclin.experiment.MODEL_FAMILIES``). Adding a
protocol is one module with a ``run`` and one line in ``PROTOCOLS`` (docs/design.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from callbacks.keys import RANDOM_SEARCH_POINTS, RECOVERY_PREFIX, RECOVERY_TABLE

Sources = list[tuple[str, str]]  # (model or tokenizer source, the file that marks it: config.json …)


def lm_sources(cfg: DictConfig) -> Sources:
    """A causal LM's model and tokenizer (the phased runner's ``kind: lora``); none otherwise."""
    if cfg.kind != "lora":
        return []
    return [(cfg.lm.model, "config.json"), *([(cfg.lm.tokenizer, "tokenizer_config.json")] if cfg.lm.tokenizer else [])]


def steer_sources(cfg: DictConfig) -> Sources:
    return [(cfg.steer.model, "config.json")]


def no_sources(cfg: DictConfig) -> Sources:
    return []


def always(_) -> bool:
    return True


@dataclass(frozen=True)
class Protocol:
    name: str
    runner: str  # "module:function" with the signature run(cfg, run_dir, resume) -> summary
    selects: Callable[[DictConfig], bool]  # does a (validated) config ask for this protocol?
    wrote: Callable[[dict], bool]  # does a summary.json come from it?
    sources: Callable[[DictConfig], Sources] = no_sources
    validate: str = "loclin.config:validate_phased"  # "module:function" raising ConfigError

    def run(self, cfg: DictConfig, run_dir: Path, resume: bool = False) -> dict:
        return named(self.runner)(cfg, run_dir, resume)

    def check(self, cfg: DictConfig) -> None:
        """The protocol's own config checks (loclin.config.validate calls this)."""
        named(self.validate)(cfg)


def named(reference: str) -> Callable:
    """The function a ``"module:function"`` reference names (imported on first use)."""
    module, function = reference.split(":")
    return getattr(importlib.import_module(module), function)


# the first protocol that selects a config runs it (and the first that wrote a summary reports it)
PROTOCOLS = {
    p.name: p
    for p in (
        Protocol(
            "quadratic",
            "loclin.quadratic_experiment:run_quadratic",
            lambda c: c.kind == "quadratic",
            lambda s: "krylov_exact" in s.get("curves", {}).get(RECOVERY_PREFIX, {}),
            validate="loclin.config:validate_quadratic",
        ),
        Protocol(
            "steer",
            "loclin.steer_experiment:run_steering",
            lambda c: c.kind == "steer",
            lambda s: s.get("kind") == "steer",
            steer_sources,
            "loclin.config:validate_steer",
        ),
        Protocol(
            "random_search",
            "loclin.random_search_experiment:run_random_search",
            lambda c: c.random_search.enabled,
            lambda s: RANDOM_SEARCH_POINTS in s.get("curves", {}),
            lm_sources,
        ),
        Protocol(
            "recovery",
            "loclin.experiment:run_experiment",
            lambda c: c.recovery.enabled,
            lambda s: RECOVERY_TABLE in s.get("curves", {}),
            lm_sources,
        ),
        Protocol("train", "loclin.experiment:run_experiment", always, always, lm_sources),
    )
}


def protocol_for(cfg: DictConfig) -> Protocol:
    """The protocol a validated config selects."""
    return next(p for p in PROTOCOLS.values() if p.selects(cfg))


def protocol_of_summary(summary: dict) -> str:
    """The name of the protocol that wrote a summary.json (read from what the summary holds)."""
    return next(p.name for p in PROTOCOLS.values() if p.wrote(summary))
