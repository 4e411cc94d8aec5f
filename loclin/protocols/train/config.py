"""The phased runner's config checks (protocols train, recovery and random_search share them): the
model family, tasks, model, optimizers, phases, trainer and geometry, and the phase plan they
resolve to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from loclin.assets import AssetError
from loclin.datamodules.sections import CONTRAST_SOURCES
from loclin.datamodules.tasks import TASK_NAMES, TASKS, heldout_problem
from loclin.datamodules.text_tasks import CORPUS_TASKS, TEXT_TASK_NAMES
from loclin.lightning_modules.optim import OptimizerSpec, spec_problem
from loclin.protocols import registry
from loclin.schema import (
    ConfigError,
    PhaseConfig,
    check_asset,
    require,
    resolve_asset_file,
    validate_geometry,
)


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


def whole_vector_users(c: DictConfig) -> list[str]:
    """Enabled measurements that need whole, exact D-vectors (no sketched or sharded windows)."""
    protocol = registry.protocol_for(c)
    used = (("geometry.per_task", c.geometry.per_task.enabled), (f"protocol: {protocol.name}", protocol.whole_vectors))
    return [name for name, on in used if on]


def validate_phased(c: DictConfig) -> None:
    """The phased runner's config (train, recovery, random search), for its model family."""
    d, m, t, g = c.data, c.model, c.trainer, c.geometry
    require(c.family in FAMILIES, f"family='{c.family}' must be one of {list(FAMILIES)}")
    family = FAMILIES[c.family]
    unknown = [name for name in d.tasks if name not in family.tasks]
    require(not unknown, f"data.tasks: unknown task(s) {unknown}; known {c.family} tasks are {list(family.tasks)}")
    require(len(d.tasks) > 0, "data.tasks is empty; name at least one of " + str(list(family.tasks)))
    twice = sorted({name for name in d.tasks if list(d.tasks).count(name) > 1})
    require(not twice, f"data.tasks={list(d.tasks)} names {twice} more than once")
    a = c.activation_shift
    if a.enabled:
        require(family.text, "activation_shift needs family: lora (a causal LM with a tokenizer)")
        require(
            a.source in CONTRAST_SOURCES,
            f"activation_shift.source='{a.source}' must be one of {list(CONTRAST_SOURCES)}",
        )
        require(
            a.n_items >= 1 and a.stride >= 1 and a.batch_size >= 1,
            "activation_shift.n_items, stride and batch_size must be >= 1",
        )
        check_asset(a.data, "activation_shift.data")
    if d.train_tasks is not None:
        outside = [name for name in d.train_tasks if name not in d.tasks]
        require(not outside, f"data.train_tasks: {outside} not in data.tasks {list(d.tasks)}")
        require(len(d.train_tasks) > 0, "data.train_tasks is empty; use null to train on all tasks")
    require(d.modulus >= 2, f"data.modulus={d.modulus} must be >= 2")
    require(d.length >= 1, f"data.length={d.length} must be >= 1")
    require("majority" not in d.tasks or d.length % 2 == 1, f"data.length={d.length} must be odd for the majority task")
    require(d.batch_size >= 1, f"data.batch_size={d.batch_size} must be >= 1")
    require(d.batch_mode in ("mixed", "single"), f"data.batch_mode='{d.batch_mode}' must be 'mixed' or 'single'")
    require(0 < d.heldout_fraction < 1, f"data.heldout_fraction={d.heldout_fraction} must be in (0, 1)")
    require(d.heldout_size >= 1, f"data.heldout_size={d.heldout_size} must be >= 1")
    family.check(c)
    require(
        m.n_layers >= 1 and m.d_model >= 1 and m.d_ff >= 1, "model.n_layers, model.d_model and model.d_ff must be >= 1"
    )
    require(
        m.n_heads >= 1 and m.d_model % m.n_heads == 0,
        f"model.d_model={m.d_model} must be divisible by model.n_heads={m.n_heads}",
    )
    require(0 <= m.dropout < 1, f"model.dropout={m.dropout} must be in [0, 1)")
    validate_optimizers(c)
    require(t.max_steps >= 1, f"trainer.max_steps={t.max_steps} must be >= 1")
    validate_phases(c)
    first_steps = phase_plan(c)[0].steps
    require(t.eval_every >= 1, f"trainer.eval_every={t.eval_every} must be >= 1")
    require(t.devices >= 1, f"trainer.devices={t.devices} must be >= 1")
    require(
        d.batch_size % t.devices == 0,
        f"data.batch_size={d.batch_size} is the global batch: it must split evenly over trainer.devices={t.devices}",
    )
    require(t.cpu_threads is None or t.cpu_threads >= 1, f"trainer.cpu_threads={t.cpu_threads} must be >= 1 (or null)")
    require(
        t.divergence_patience >= 0, f"trainer.divergence_patience={t.divergence_patience} must be >= 0 (0: never stop)"
    )
    require(0 < t.divergence_share <= 1, f"trainer.divergence_share={t.divergence_share} must be in (0, 1]")
    require(
        t.live_figures_seconds is None or t.live_figures_seconds >= 0,
        f"trainer.live_figures_seconds={t.live_figures_seconds} must be >= 0 (0: every checkpoint) or null",
    )
    if t.grad_shards is not None:
        require(
            t.grad_shards >= 1 and d.batch_size % t.grad_shards == 0,
            f"trainer.grad_shards={t.grad_shards} must be >= 1 and split data.batch_size={d.batch_size} evenly",
        )
    if not g.enabled:
        return
    sharding = next((name for name in ("fsdp", "deepspeed", "model_parallel") if name in str(t.strategy).lower()), None)
    require(
        sharding is None,
        f"trainer.strategy={t.strategy}: the geometry reads whole parameters and gradients, which {sharding} shards; "
        "use trainer.strategy=ddp (geometry.shard_windows=true splits the windows across ranks) or "
        "geometry.enabled=false",
    )
    if g.groups:
        unknown_groups = [name for name in g.groups if name not in parameter_group_names(c)]
        require(
            not unknown_groups,
            f"geometry.groups: unknown group(s) {unknown_groups}; the model has {parameter_group_names(c)}",
        )
    validate_geometry(g, first_steps)
    users = whole_vector_users(c)
    if g.sketch_dim is not None:
        require(
            not users,
            f"geometry.sketch_dim sketches the windows, bases and drift only; {', '.join(users)} need exact D-vectors: "
            "disable them (protocol: train) or set geometry.sketch_dim=null",
        )
    if g.shard_windows:
        require(
            not users,
            f"geometry.shard_windows shards the windows, bases and drift only; {', '.join(users)} need whole "
            "D-vectors: disable them (protocol: train) or set geometry.shard_windows=false",
        )
    p = g.per_task
    if p.enabled:
        require(p.stride >= 1, f"geometry.per_task.stride={p.stride} must be >= 1")
        require(p.n_batches >= 1 and p.n_heldout >= 1, "geometry.per_task.n_batches and n_heldout must be >= 1")
        require(
            1 <= p.k <= p.n_batches,
            f"geometry.per_task.k={p.k} must be between 1 and geometry.per_task.n_batches={p.n_batches}",
        )
        require(
            p.stride <= first_steps,
            f"geometry.per_task.stride={p.stride} is longer than the first phase ({first_steps} steps)",
        )


def validate_optimizers(c: DictConfig) -> None:
    """Every phase's resolved optimizer, named by its phase when an override is at fault."""
    problem = spec_problem(phase_optimizer(c, OmegaConf.create({"steps": 1, "optim": {}})))
    require(problem is None, problem or "")
    previous = None
    for i, phase in enumerate(phase_plan(c)):
        spec = phase_optimizer(c, phase)
        problem = spec_problem(spec, frozen_ok=True)
        require(problem is None, f"phases[{i}] ({phase.name}): {problem}")
        if previous is not None and not phase.fresh_optimizer:
            require(
                spec.name == previous.name,
                f"phases[{i}].fresh_optimizer=false carries {previous.name}'s state, but the phase runs {spec.name}",
            )
        previous = spec


def validate_phases(c: DictConfig) -> None:
    names = [p.name for p in c.phases]
    require(len(set(names)) == len(names), f"phases: names must be unique, got {names}")
    for i, p in enumerate(c.phases):
        require(p.steps >= 0, f"phases[{i}].steps={p.steps} must be >= 0")
        require(p.lr is None or p.lr >= 0, f"phases[{i}].lr={p.lr} must be >= 0 (0: θ frozen, fresh batches)")
        if p.batch_size is not None:
            shards = max(c.trainer.devices, c.trainer.grad_shards or 1)
            require(
                p.batch_size >= 1 and p.batch_size % shards == 0,
                f"phases[{i}].batch_size={p.batch_size} must be >= 1 and split evenly over {shards} devices or "
                "gradient shards",
            )
        for key in ("starts_from", "replays"):
            require(
                p[key] is None or p[key] in names[:i],
                f"phases[{i}].{key}='{p[key]}' must name an earlier phase, one of {names[:i]}",
            )
        require(
            p.starts_from is None or p.fresh_optimizer,
            f"phases[{i}].starts_from needs fresh_optimizer=true (the previous phase's state is not its start's)",
        )
        if p.tasks is not None:
            outside = [t for t in p.tasks if t not in c.data.tasks]
            require(not outside, f"phases[{i}].tasks: {outside} not in data.tasks {list(c.data.tasks)}")
            require(len(p.tasks) > 0, f"phases[{i}].tasks is empty")
    if c.phases:
        require(c.phases[0].steps >= 1, f"phases[0].steps={c.phases[0].steps} must be >= 1 (the first phase trains)")


def validate_lm(c: DictConfig) -> None:
    """The LoRA section and the files it needs (assets, corpus); the hub is checked at load."""
    lm, lora = c.lm, c.lm.lora
    require(bool(lm.model), "lm.model is empty; give asset:NAME, a local directory or a hub id")
    require(
        lora.rank >= 1 and lora.alpha > 0, f"lm.lora.rank={lora.rank} must be >= 1 and lm.lora.alpha={lora.alpha} > 0"
    )
    require(0 <= lora.dropout < 1, f"lm.lora.dropout={lora.dropout} must be in [0, 1)")
    require(
        len(lora.target_modules) > 0,
        "lm.lora.target_modules is empty; e.g. [q_proj, v_proj] (Llama) or [c_attn] (GPT-2)",
    )
    for key in ("model", "tokenizer"):
        check_asset(lm[key], f"lm.{key}")
    if any(name in CORPUS_TASKS for name in c.data.tasks):
        try:
            corpus = resolve_asset_file(c.data.corpus, "brown.txt")
        except AssetError as error:
            raise ConfigError(f"data.corpus: {error}") from None
        require(
            corpus.is_file(),
            f"data.corpus='{c.data.corpus}': file {corpus} not found (tasks {list(CORPUS_TASKS)} need it)",
        )


def validate_synthetic(c: DictConfig) -> None:
    """Every task's held-out split leaves inputs to train on (datamodules.tasks.heldout_problem)."""
    d = c.data
    for name in d.tasks:
        problem = heldout_problem(TASKS[name], d.modulus, d.length, d.heldout_size, d.heldout_fraction)
        require(problem is None, f"data.modulus={d.modulus}, data.length={d.length}: {problem}")


def no_check(c: DictConfig) -> None:
    """A family with no section of its own to check."""


@dataclass(frozen=True)
class ModelFamily:
    """A model family of the phased runner as config validation sees it (the module and datamodule
    are built by loclin.protocols.train.runner.MODEL_FAMILIES, which needs torch)."""

    tasks: tuple[str, ...]  # the task names its datamodule knows
    groups: Callable[[DictConfig], list[str]]  # its parameter groups, as parameter_groups() names them
    check: Callable[[DictConfig], None] = no_check  # its own section (lm.* for a causal LM)
    text: bool = False  # a causal LM with a tokenizer (what activation_shift needs)
    widths: bool = False  # random_search.widths can rebuild it at other widths


FAMILIES = {
    "synthetic": ModelFamily(tuple(TASK_NAMES), transformer_groups, validate_synthetic, widths=True),
    "lora": ModelFamily(tuple(TEXT_TASK_NAMES), lora_groups, validate_lm, text=True),
}
