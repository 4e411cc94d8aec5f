"""The recovery protocol across phases (docs/science.md 5–7): θ_init, the degradations D2–D4, the
static bases frozen at θ*, and the RecoveryCallback of the recover phase. Pure geometry lives
in ``geometry/``; this module reads the model only through ``parameter_groups()``,
``loss(batch)``, ``forward`` and ``answer_loss``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from omegaconf import DictConfig, OmegaConf
from torch.nn.attention import SDPBackend, sdpa_kernel

from loclin.callbacks.base import MeasurementCallback, metric
from loclin.callbacks.divergence import Diverged
from loclin.callbacks.gradient_window import gradient_stream
from loclin.callbacks.keys import RECOVERY_TABLE
from loclin.callbacks.parameter_vector import ParameterVector
from loclin.callbacks.per_task import task_gradient
from loclin.callbacks.recovery import RecoveryCallback
from loclin.callbacks.recovery_reruns import ConstrainedRecovery, ReplicaPrefix
from loclin.geometry.hessian import flat_hvp, lanczos_top_eigenpairs
from loclin.geometry.lora import LoraFactors
from loclin.geometry.static_bases import mean_gradient_plane, random_basis, task_vector_basis
from loclin.geometry.subspace import finite_rows, orthonormalize, topk_basis
from loclin.protocols.recovery.config import constrained_phase_name, outside_phase_name, replica_phase_name
from loclin.protocols.train.config import phase_plan
from loclin.protocols.train.hooks import PhaseHooks
from loclin.runs.rundir import PHASES_DIR, RECOVERY_DIR, atomic_torch_save

CONSTRAINED_BASIS = "prefix_basis.pt"  # P_M of the recovery (M = max prefix_ms): the re-runs' P_m
REPLAY_LINE = re.compile(r"recovery\.capture_at_T(\d+)\.(P8_replica|constrained_P8_updates_acc|outside_P8_updates_acc)")
DELTAS = "deltas.pt"  # Δ_T = θ_T − θ_0 of the recovery for every T of capture_at_steps: the replica's targets


def degrade(kind: str, module, vector: ParameterVector, theta_init: torch.Tensor, cfg, seed: int) -> None:
    """Apply D2 (negation), D3 (noise kick) or D4 (reset) in place; D1 is a training phase."""
    theta_star = vector.values()
    generator = torch.Generator().manual_seed(seed + 17)
    if kind == "negation":
        vector.load_values(theta_star - cfg.negation_scale * (theta_star - theta_init))
    elif kind == "noise":
        xi = torch.randn(vector.dim, generator=generator)
        vector.load_values(theta_star + cfg.noise_scale * theta_star.norm() * xi / xi.norm())
    elif kind == "reset":
        groups = module.parameter_groups()
        if cfg.reset_group not in groups:
            raise ValueError(
                f"recovery.reset_group='{cfg.reset_group}' is not a parameter group; the module has {list(groups)}"
            )
        module.reset_group(cfg.reset_group, generator)
    else:
        raise ValueError(f"unknown degradation '{kind}'")


def freeze_static_bases(
    module,
    datamodule,
    vector: ParameterVector,
    cfg,
    theta_init: torch.Tensor,
    rolling_basis: torch.Tensor | None,
    tasks: list[str],
    seed: int,
    at_step: int = 0,
) -> dict[str, torch.Tensor]:
    """S1–S5 and S7 at θ* (S6 needs θ_0 and is added when recovery starts), θ* being the end
    (phase step ``at_step``) of the phase before the degradation."""
    target, k = cfg.target, cfg.k
    theta_star = vector.values()
    key = 10**6  # probe keys disjoint from the per-task callback's (step, i)

    def finite_gradients(task: str) -> torch.Tensor:
        """The task's static_batches gradients at θ*, the non-finite ones left out; none at all
        finite means training had diverged by θ* (the guard was off): a Diverged stop."""
        batches = [datamodule.probe_batch(task, (key, i)) for i in range(cfg.static_batches)]
        grads = finite_rows(torch.stack([task_gradient(module, vector, batch) for batch in batches]))
        if not len(grads):
            message = f"training diverged: no finite gradient of task '{task}' at θ* for the static bases"
            raise Diverged(message, at_step, 0, at_step)
        return grads

    target_grads = finite_gradients(target)
    s1, _ = topk_basis(target_grads, k)
    means = [target_grads.mean(0) if t == target else finite_gradients(t).mean(0) for t in tasks]
    bases = {
        "S1_task_gradients": s1,
        "S2_mean_gradient_plane": mean_gradient_plane(means),
        "S3_task_vector": task_vector_basis(theta_star - theta_init, vector.layout(), k),
        "S5_hessian": hessian_basis(module, datamodule, vector, target, k, cfg.hessian_iterations, seed),
        "S7_random": random_basis(vector.dim, k, seed + 7),
    }
    if rolling_basis is not None:
        bases["S4_rolling_end_of_training"] = orthonormalize(rolling_basis[:, :k])
    rank_zero_info(f"[loclin] froze static bases at θ*: {', '.join(f'{n} (k={b.shape[1]})' for n, b in bases.items())}")
    return {name: basis.float() for name, basis in bases.items()}


def hessian_basis(
    module, datamodule, vector: ParameterVector, task: str, k: int, iterations: int, seed: int
) -> torch.Tensor:
    """S5: top-k eigenvectors of the Hessian of task T's loss at θ (Lanczos on HVPs)."""
    batch = datamodule.probe_batch(task, (10**6 + 1, 0))

    def loss_of(call, params):
        return module.answer_loss(call(batch["input"], batch.get("attention_mask")), batch["target"])

    hvp = flat_hvp(module, loss_of, vector.names)
    # the fused CPU attention kernels have no forward-mode AD; the math kernel does
    with sdpa_kernel(SDPBackend.MATH):
        _, eigenvectors = lanczos_top_eigenpairs(hvp, vector.dim, k, iterations=iterations, seed=seed)
    return eigenvectors


def lora_factors(module, vector: ParameterVector) -> list[LoraFactors]:
    """Where each adapted layer's A and B sit in the measured vector (none for other modules)."""
    if not hasattr(module, "lora_layers"):
        return []
    where = {name: placement for name, placement in zip(vector.names, vector.layout())}
    return [
        LoraFactors(where[a][0], where[a][1], where[b][0], where[b][1], scale)
        for a, b, scale in module.lora_layers()
        if a in where and b in where
    ]


class Recovery(PhaseHooks):
    """The recovery protocol's phase hooks: θ_init, θ*, static bases, D2–D4, the recover phase's callback."""

    def __init__(self, cfg: DictConfig, run_dir: Path, module, datamodule):
        super().__init__(cfg, run_dir, module, datamodule)
        self.r = cfg.recovery
        self.run_dir = run_dir
        self.callback: RecoveryCallback | None = None  # the recover phase's, once it runs in this process
        self.datamodule = datamodule
        self.dir = run_dir / RECOVERY_DIR
        self.dir.mkdir(exist_ok=True)
        self.module = module
        self.vector = ParameterVector(
            module.parameter_groups(), list(cfg.geometry.groups) if cfg.geometry.groups else None
        )
        init_file = self.dir / "theta_init.pt"
        if not init_file.is_file():
            atomic_torch_save(self.vector.values(), init_file)
        self.theta_init = torch.load(init_file, weights_only=True)
        self.names = [p.name for p in phase_plan(cfg)]
        self.star_phase = self.names[self.names.index(self.r.degrade_phase) - 1]

    @classmethod
    def tasks(cls, cfg: DictConfig, phase: DictConfig) -> list[str] | None:
        """D1 trains on every task but the target T; the recover phase on T alone."""
        r = cfg.recovery
        if phase.name == r.degrade_phase:
            return [t for t in cfg.data.tasks if t != r.target]
        if phase.name == r.recover_phase:
            return [r.target]
        return None

    def phases(self, plan: list[DictConfig]) -> list[DictConfig]:
        """After the recover phase, from its start θ_0 (the end of the phase before it): the
        constrained re-run (``constrained_m`` > 0) and the projected-out re-run (``outside_m`` > 0)
        on its batches with a fresh optimizer of its settings, then the replica (``replica``): its
        first max(prefix_ms) steps in another data order, from the recover phase's optimizer state.
        A run begun before the constrained re-run was a phase has its row in the recover part already."""
        names = [p.name for p in plan]
        recover = names.index(self.r.recover_phase)
        start = {"starts_from": names[recover - 1], "replays": self.r.recover_phase}
        part = self.run_dir / PHASES_DIR / f"{self.r.recover_phase}.json"
        old_constrained = part.is_file() and any(
            name.startswith("constrained_") for name in json.loads(part.read_text())["curves"][RECOVERY_TABLE]
        )
        added = []
        if self.r.constrained_m and not old_constrained:
            added.append({"name": constrained_phase_name(self.cfg), **start, "fresh_optimizer": True})
        if self.r.outside_m:
            added.append({"name": outside_phase_name(self.cfg), **start, "fresh_optimizer": True})
        if self.r.replica:
            replica_steps = max(m for m in self.r.prefix_ms if m <= plan[recover].steps)
            added.append({"name": replica_phase_name(self.cfg), **start, "reorders": True, "steps": replica_steps})
        reruns = [OmegaConf.merge(plan[recover], extra) for extra in added]
        return [*plan[: recover + 1], *reruns, *plan[recover + 1 :]]

    def before_phase(self, phase: DictConfig, index: int, measurements: list) -> list[MeasurementCallback]:
        """Apply an instant degradation (D2–D4), attach the RecoveryCallback, the projection step
        of a re-run, or the replica's prefix."""
        if phase.name == self.r.degrade_phase and self.r.degradation != "interference":
            degrade(self.r.degradation, self.module, self.vector, self.theta_init, self.r, self.cfg.seed)
        lengths = list(self.r.capture_at_steps)
        for name, m, outside in (
            (constrained_phase_name(self.cfg), self.r.constrained_m, False),
            (outside_phase_name(self.cfg), self.r.outside_m, True),
        ):
            if phase.name == name:
                basis = torch.load(self.dir / CONSTRAINED_BASIS, weights_only=True)[:, :m].contiguous()
                row = f"{'outside' if outside else 'constrained'}_P{m}_updates"
                return [ConstrainedRecovery(self.vector, basis, self.r.target, row, outside, lengths)]
        if phase.name == replica_phase_name(self.cfg):
            deltas = torch.load(self.dir / DELTAS, weights_only=True)
            return [ReplicaPrefix(self.vector, list(self.r.prefix_ms), deltas)]
        if phase.name == self.r.recover_phase:
            frozen = torch.load(self.dir / "static.pt", weights_only=True)
            self.callback = RecoveryCallback(
                self.vector,
                frozen["bases"],
                frozen["theta_star"],
                self.r.target,
                list(self.r.prefix_ms),
                lora_factors(self.module, self.vector),
                steps=phase.steps,
                control_m=self.r.control_m,
                control_draws=self.r.control_draws,
                seed=self.cfg.seed,
                capture_at_steps=lengths,
                offset_draws=self.r.offset_draws,
                theta0_batches=self.r.theta0_batches,
            )
            return [self.callback]
        return []

    def after_phase(self, phase: DictConfig, measurements: list[MeasurementCallback]) -> None:
        """At the end of the phase before the degradation (θ*): freeze the static bases. At the end
        of the recover phase: keep P_m for the constrained re-run."""
        if phase.name == self.r.recover_phase and self.callback is not None:
            if self.r.constrained_m or self.r.outside_m:
                atomic_torch_save(self.callback.prefix_updates_basis, self.dir / CONSTRAINED_BASIS)
            if self.r.replica:
                atomic_torch_save(self.callback.deltas, self.dir / DELTAS)
        if phase.name != self.star_phase:
            return
        stream = gradient_stream(measurements)
        if stream is not None:
            stream.wait()
        rolling = stream.bases.get("grad") if stream is not None else None
        rolling_basis = rolling.current_basis if rolling is not None else None
        bases = freeze_static_bases(
            self.module,
            self.datamodule,
            self.vector,
            self.r,
            self.theta_init,
            rolling_basis,
            list(self.cfg.data.tasks),
            self.cfg.seed,
            phase.steps,
        )
        atomic_torch_save({"bases": bases, "theta_star": self.vector.values()}, self.dir / "static.pt")

    def replay_lines(self, summary: dict) -> dict[int, dict[str, float]]:
        """The replica's P8 and the re-runs' accuracies after T steps, as ``recovery_by_T/…`` at the
        recover phase's step T, beside the lines the recover phase drew there."""
        offset = 0
        for phase in summary["phases"]:
            if phase["name"] == self.r.recover_phase:
                break
            offset += 0 if phase.get("replays") else phase["steps"]
        lines: dict[int, dict[str, float]] = {}
        for name, entry in summary["metrics"].items():
            found = REPLAY_LINE.fullmatch(name)
            if found:
                lines.setdefault(offset + int(found[1]), {})[f"recovery_by_T/{found[2]}"] = entry["value"]
        return lines

    def finish(self, summary: dict) -> None:
        """Say plainly whether the degradation hurt T; name θ*, θ_0, θ_R's phases."""
        m, target = summary["metrics"], self.r.target
        before = m.get("recovery.theta_star.acc", {}).get("value")
        after = m.get("recovery.theta_0.acc", {}).get("value")
        if before is None or after is None:
            return
        hurt = before - after >= self.r.hurt_threshold
        m["recovery.degradation_hurt"] = metric(
            float(hurt), f"1 if task-{target} accuracy fell by >= {self.r.hurt_threshold} from θ* to θ_0"
        )
        if not hurt:
            rank_zero_warn(
                f"[loclin] the degradation did not hurt task '{target}': accuracy {before:.3f} at θ* -> {after:.3f} at "
                f"θ_0 (threshold {self.r.hurt_threshold})"
            )
