"""Experiment configuration: a dataclass schema, YAML files and ``key=value`` overrides.

``load_config`` merges, in order, the schema defaults, the YAML file and the command-line
dotlist, then checks every value that could only fail later (window sizes, lags, task
names). Any problem raises :class:`ConfigError` with one line naming the key. The schema is the
common sections (loclin.schema) and each protocol's own, which registers itself
(loclin/protocols/<name>/config.py). This module imports only omegaconf, the schema and the
protocol registry, so a bad config fails in a fraction of a second, before torch or Lightning are
imported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import loclin.protocols  # noqa: F401  (each protocol registers its runner and config section)
from loclin.datamodules.sections import DataConfig
from loclin.lightning_modules.sections import DecoderConfig
from loclin.protocols import registry
from loclin.schema import (
    PROTOCOL_SECTIONS,
    ActivationShiftConfig,
    ConfigError,
    ForkConfig,
    GeometryConfig,
    LMConfig,
    OptimConfig,
    PhaseConfig,
    TrainerConfig,
    require,
)


@dataclass
class CommonConfig:
    """The keys of every config; each protocol's own section is added to it (ExperimentConfig)."""

    protocol: str = "train"  # what runs (loclin.protocols): train | recovery | random_search | quadratic | steer
    family: str = "synthetic"  # the phased protocols' model: synthetic (tiny transformer) | lora (LoRA on a causal LM)
    experiment: str = "synthetic"
    seed: int = 0
    output_root: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: DecoderConfig = field(default_factory=DecoderConfig)
    lm: LMConfig = field(default_factory=LMConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    phases: list[PhaseConfig] = field(default_factory=list)  # empty: one "train" phase of trainer.max_steps
    activation_shift: ActivationShiftConfig = field(default_factory=ActivationShiftConfig)
    fork: ForkConfig = field(default_factory=ForkConfig)


ExperimentConfig = make_dataclass(  # the whole schema: the common keys, then each protocol's registered section
    "ExperimentConfig",
    [(key, section, field(default_factory=section)) for key, section in PROTOCOL_SECTIONS.items()],
    bases=(CommonConfig,),
)


def _one_line(error: OmegaConfBaseException, origin: str) -> str:
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    key = getattr(error, "full_key", None)
    where = f" (key '{key}')" if key else ""
    return f"{origin}: {message}{where}"


def packaged_configs() -> dict[str, Path]:
    """The configs that ship with loclin, by name: the repository's conf/, which an installed
    wheel holds as loclin/conf (pyproject.toml)."""
    from importlib.resources import files

    try:
        folder = files("loclin.conf")
    except ModuleNotFoundError:
        return {}
    return {Path(str(item)).stem: Path(str(item)) for item in folder.iterdir() if item.name.endswith(".yaml")}


def config_path(path: str | Path) -> Path:
    """``path`` if it is a file; a bare name (``synthetic`` or ``synthetic.yaml``) that is not one,
    the packaged config of that name (so ``loclin-train --config synthetic`` works outside a checkout)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config '{path}' is a directory; give a YAML file, e.g. {path / 'synthetic.yaml'}")
    if path.is_file():
        return path
    packaged = packaged_configs()
    if path.parent == Path(".") and path.stem in packaged and path.suffix in ("", ".yaml"):
        return packaged[path.stem]
    raise ConfigError(f"config file '{path}' not found (packaged configs: {', '.join(sorted(packaged)) or 'none'})")


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> DictConfig:
    """Schema ← YAML file ← ``key=value`` overrides, validated. Raises ConfigError."""
    config = OmegaConf.structured(ExperimentConfig)
    if path is not None:
        path = config_path(path)
        try:
            file_config = OmegaConf.load(path)
        except Exception as error:  # yaml.YAMLError and friends
            raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
        if not isinstance(file_config, DictConfig):
            raise ConfigError(
                f"{path}: the top level must be a mapping of keys (experiment: ..., data: ...), not a list"
            )
        try:
            config = OmegaConf.merge(config, migrate(file_config))
        except OmegaConfBaseException as error:
            raise ConfigError(_one_line(error, str(path))) from None
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"command-line override '{item}' is not of the form key=value")
    for item in overrides or []:
        try:
            config = apply_override(config, legacy_override(config, item))
        except OmegaConfBaseException as error:
            raise ConfigError(_one_line(error, "command line")) from None
        except yaml.YAMLError as error:  # the value is parsed as YAML: quote text holding ': ' or newlines
            raise ConfigError(
                f"command line: '{item.split('=', 1)[0]}' has a value that is not valid YAML "
                f'({str(error).splitlines()[0]}); quote it: key="..."'
            ) from None
        except (TypeError, ValueError, IndexError) as error:
            raise ConfigError(
                f"command line: cannot apply '{item}' ({error}); give a list as a whole, e.g. phases=[...]"
            ) from None
    validate(config)
    return config


LEGACY_PROTOCOL_KINDS = ("quadratic", "steer")  # the other old kinds (synthetic, lora) are model families


def migrate(file_config: DictConfig) -> DictConfig:
    """A config written before ``protocol`` and ``family`` existed (run directories and fork
    parents keep their config.yaml), in today's keys. ``kind: quadratic|steer`` is a protocol,
    ``kind: synthetic|lora`` a family; ``random_search.enabled`` then ``recovery.enabled`` named
    the protocol in the old registry's order. A config that already says ``protocol`` keeps it."""
    if not isinstance(file_config, DictConfig) or not {"kind", "recovery", "random_search"} & set(file_config):
        return file_config
    raw = OmegaConf.to_container(file_config)
    kind = raw.pop("kind", None)
    switched_on = [
        s for s in ("random_search", "recovery") if isinstance(raw.get(s), dict) and raw[s].pop("enabled", False)
    ]
    if kind in LEGACY_PROTOCOL_KINDS:
        raw.setdefault("protocol", kind)
    elif kind is not None:
        raw.setdefault("family", kind)
    if switched_on:
        raw.setdefault("protocol", switched_on[0])
    return OmegaConf.create(raw)


def legacy_override(config: DictConfig, item: str) -> str:
    """``kind=…``, ``recovery.enabled=…`` and ``random_search.enabled=…`` in today's keys (see migrate)."""
    key, value = item.split("=", 1)
    if key == "kind":
        return f"{'protocol' if value in LEGACY_PROTOCOL_KINDS else 'family'}={value}"
    if key in ("recovery.enabled", "random_search.enabled"):
        protocol = key.split(".")[0]
        if yaml.safe_load(value) is True:
            return f"protocol={protocol}"
        return f"protocol={'train' if config.protocol == protocol else config.protocol}"
    return item


PHASE_KEY = re.compile(r"^phases\.(\d+)\.(.+)$")


def apply_override(config: DictConfig, item: str) -> DictConfig:
    """Merge one ``key=value``. ``phases.<i>.<key>=value`` edits phase i in place (a merge would
    replace the whole list), through the typed schema of a phase, so a wrong key or type still
    fails; ``phases.<i>`` must exist."""
    key, value = item.split("=", 1)
    match = PHASE_KEY.match(key)
    if not match:
        return OmegaConf.merge(config, OmegaConf.from_dotlist([item]))
    index, rest = int(match.group(1)), match.group(2)
    if index >= len(config.phases):
        raise IndexError(f"there are {len(config.phases)} phases")
    phase = OmegaConf.merge(config.phases[index], OmegaConf.from_dotlist([f"{rest}={value}"]))
    phases = list(config.phases)
    phases[index] = phase
    return OmegaConf.merge(config, {"phases": phases})


# Lightning's accepted precision values (lightning.fabric.connector._PRECISION_INPUT), written out
# so that a bad one fails here, before lightning is imported; tests/test_config.py keeps them equal
PRECISIONS = (
    "transformer-engine", "transformer-engine-float16", "16-true", "16-mixed", "bf16-true", "bf16-mixed",
    "32-true", "64-true", "64", "32", "16", "bf16",
)  # fmt: skip

ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "tpu", "auto")

SEED_BOUND = 2**32  # numpy's and torch's seeds are 32-bit unsigned


def validate(c: DictConfig) -> None:
    """Checks that the schema's types cannot express: the run's own keys, then by the protocol the
    config selects (loclin.protocols: each protocol names its own check). One ConfigError per first
    problem."""
    known = list(registry.PROTOCOLS)
    require(c.protocol in known, f"protocol='{c.protocol}' must be one of {known}")
    require(0 <= c.seed < SEED_BOUND, f"seed={c.seed} must be in [0, 2**32)")
    where = Path(c.experiment)
    require(
        c.experiment.strip() != "" and not where.is_absolute() and ".." not in where.parts,
        f"experiment='{c.experiment}' must be a name (or relative path) under output_root, not absolute or with '..'",
    )
    validate_trainer_device(c.trainer)
    registry.protocol_for(c).check(c)


def validate_trainer_device(t: DictConfig) -> None:
    """Precision and accelerator by name, and a GPU accelerator only where torch sees enough GPUs
    (torch is imported only then)."""
    require(str(t.precision) in PRECISIONS, f"trainer.precision='{t.precision}' must be one of {list(PRECISIONS)}")
    require(t.accelerator in ACCELERATORS, f"trainer.accelerator='{t.accelerator}' must be one of {list(ACCELERATORS)}")
    if t.accelerator in ("gpu", "cuda"):
        import torch

        found = torch.cuda.device_count()
        require(
            found >= t.devices,
            f"trainer.accelerator={t.accelerator} needs trainer.devices={t.devices} GPU(s); torch sees {found} "
            "(use trainer.accelerator=cpu)",
        )
