"""The recovery protocol's section (``recovery:``) and its checks (docs/science.md 5–7)."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import DictConfig

from loclin.protocols.train.config import parameter_group_names, validate_phased
from loclin.schema import protocol_section, require


@protocol_section("recovery")
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


DEGRADATIONS = ("interference", "negation", "noise", "reset")


def validate_recovery(c: DictConfig) -> None:
    """The recovery protocol: the phased runner's checks, then the phases and measurements of docs/science.md 5–7."""
    validate_phased(c)
    r, names = c.recovery, [p.name for p in c.phases]
    for added, what in (
        (constrained_phase_name(c), "constrained re-run (recovery.constrained_m)"),
        (outside_phase_name(c), "projected-out re-run (recovery.outside_m)"),
        (replica_phase_name(c), "replica (recovery.replica)"),
    ):
        require(added not in names, f"phases: '{added}' is the name of recovery's {what}")
    require(r.target in c.data.tasks, f"recovery.target='{r.target}' is not in data.tasks {list(c.data.tasks)}")
    require(
        r.degradation in DEGRADATIONS, f"recovery.degradation='{r.degradation}' must be one of {list(DEGRADATIONS)}"
    )
    for key in ("degrade_phase", "recover_phase"):
        require(r[key] in names, f"recovery.{key}='{r[key]}' is not among the phases {names}")
    degrade, recover = names.index(r.degrade_phase), names.index(r.recover_phase)
    require(0 < degrade < recover, f"phases must run training, then '{r.degrade_phase}', then '{r.recover_phase}'")
    degrade_steps, recover_steps = c.phases[degrade].steps, c.phases[recover].steps
    if r.degradation == "interference":
        require(degrade_steps >= 1, f"recovery.degradation=interference needs phases[{degrade}].steps >= 1")
        tasks = c.phases[degrade].tasks
        require(
            tasks is None or r.target not in tasks,
            f"phases[{degrade}].tasks must not contain the target '{r.target}' for interference",
        )
    else:
        require(
            degrade_steps == 0,
            f"recovery.degradation={r.degradation} is applied at once: set phases[{degrade}].steps to 0",
        )
    if r.degradation == "reset":
        require(
            r.reset_group in parameter_group_names(c),
            f"recovery.reset_group='{r.reset_group}' is not a parameter group; the model has "
            f"{parameter_group_names(c)}",
        )
    require(r.k >= 1, f"recovery.k={r.k} must be >= 1")
    require(len(r.prefix_ms) > 0 and min(r.prefix_ms) >= 1, f"recovery.prefix_ms={list(r.prefix_ms)} must be positive")
    require(
        max(r.prefix_ms) <= recover_steps,
        f"recovery.prefix_ms up to {max(r.prefix_ms)} needs that many recovery steps; "
        f"phases[{recover}].steps={recover_steps}",
    )
    require(
        r.static_batches >= r.k,
        f"recovery.static_batches={r.static_batches} must be >= recovery.k={r.k} (S1 is a top-k basis of that many "
        "gradients)",
    )
    require(r.noise_scale > 0 and r.negation_scale > 0, "recovery.noise_scale and recovery.negation_scale must be > 0")
    require(
        r.constrained_m == 0 or r.constrained_m in r.prefix_ms,
        f"recovery.constrained_m={r.constrained_m} must be 0 or one of recovery.prefix_ms={list(r.prefix_ms)}",
    )
    require(
        r.outside_m == 0 or r.outside_m in r.prefix_ms,
        f"recovery.outside_m={r.outside_m} must be 0 or one of recovery.prefix_ms={list(r.prefix_ms)}",
    )
    require(
        r.offset_draws >= 0 and r.theta0_batches >= 0,
        f"recovery.offset_draws={r.offset_draws} and recovery.theta0_batches={r.theta0_batches} must be >= 0",
    )
    require(0 <= r.hurt_threshold <= 1, f"recovery.hurt_threshold={r.hurt_threshold} must be in [0, 1]")
    require(
        all(t >= 1 for t in r.capture_at_steps), f"recovery.capture_at_steps={list(r.capture_at_steps)} must be >= 1"
    )
    require(
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
