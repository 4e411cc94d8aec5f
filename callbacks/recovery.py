"""Recovery capture (docs/science.md 5–7): how much of Δ = θ_R − θ_0 each basis explains.

The recovery protocol can also re-run the recovery from θ_0 inside θ_0 + span(P_m) ("can the
prefix basis alone recover the task?"): a phase of its own with a projection step,
:class:`ConstrainedRecovery` (callbacks.recovery_reruns), whose basis is this callback's ``prefix_updates_basis``.

During the recover phase this callback keeps θ_0 and the first M updates u_0 … u_{M−1} and
gradients g_0 … g_{M−1} (M = max(prefix_ms); 2·M·D·4 bytes). At the end it forms the prefix
bases P_m = orth(u_0 … u_{m−1}) (and the gradient variant), adds S6 = (θ* − θ_0)/‖·‖ to the
static bases frozen at θ*, and reports for every basis B: cap(B, Δ) (energy) against k/D,
and the function-space check, task-T held-out loss and accuracy at θ_0 + B Bᵀ Δ.

Every P_m carries its numerical determination, the smallest relative pivot of its vectors
(geometry.prefix). Controls (docs/science.md 7): is the *prefix* special? For m <= ``control_m``, the
capture of Δ by m updates at seeded random positions of the recovery (``control_draws`` draws,
nested: draw j's first m positions) and by the last m updates. Only the updates at those
positions are kept (at most control_draws·control_m + control_m vectors).

Capture against recovery length (``capture_at_steps``): at each step T of the list,
Δ_T = θ_T − θ_0 projected on the prefix basis (built once the first max(prefix_ms) updates are
in; k-sized work per T after that), cap(P_m, Δ_T) for every m <= T, the two controls at that
length (m updates at seeded random positions in [0, T), ``control_draws`` draws, and the last m
updates before T from a ring of ``control_m``), and T's held-out loss and accuracy at θ_T. At
T = the whole recovery the random positions are the end-of-recovery control's own.

For a LoRA adapter (``effective_layers`` given) the prefix capture is also measured in
effective weight space: the moves e_t = W(θ_{t+1}) − W(θ_t) of W = (α/r) B A against
W(θ_R) − W(θ_0), from an R factor accumulated layer by layer (geometry.lora.effective_step_r).

The module is one definition, RecoveryCallback, and reads better whole: its state (θ_0, the
prefix updates, the control positions), its hooks and its summary share every field. Its re-runs
live in callbacks.recovery_reruns and the helpers both use in callbacks.recovery_shared.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import lightning as L
import torch
from loclin.callbacks.base import MeasurementCallback, metric
from loclin.callbacks.keys import RECOVERY_PREFIX, RECOVERY_TABLE
from loclin.callbacks.parameter_vector import ParameterVector
from loclin.callbacks.recovery_shared import (
    control_positions,
    heldout_on_device,
    heldout_scores,
    length_metrics,
    length_scalars,
    no_sync,
)
from loclin.geometry.capture import capture, random_capture_baseline
from loclin.geometry.lora import LoraFactors, effective_step_r
from loclin.geometry.prefix import (
    PREFIX_DETERMINED_PIVOT,
    nested_prefix_basis,
    prefix_capture_curve,
    prefix_capture_from_r,
    smallest_pivots,
)
from loclin.geometry.recovery_progress import (
    cumulative_capture,
    displacement_share,
    offset_block_starts,
    path_share,
    steps_to_recover,
)
from loclin.geometry.static_bases import go_back_direction, project
from loclin.geometry.subspace import topk_basis

THETA0_KEY = 10**6 + 2  # probe keys of the fresh batches at θ_0, disjoint from the static bases' (10**6, i)


RECOVERED_FRACTIONS = (0.5, 0.9)  # steps_to_recover: the first step with this share of the final gain


class RecoveryCallback(MeasurementCallback):
    module_needs = ("evaluate_batch",)
    data_needs = ("heldout_batch",)

    def __init__(
        self,
        vector: ParameterVector,
        static_bases: dict[str, torch.Tensor],
        theta_star: torch.Tensor,
        target: str,
        prefix_ms: Sequence[int],
        effective_layers: list[LoraFactors] | None = None,
        steps: int = 0,
        control_m: int = 8,
        control_draws: int = 0,
        seed: int = 0,
        capture_at_steps: Sequence[int] = (),
        offset_draws: int = 0,
        theta0_batches: int = 0,
        evaluate: bool = True,
    ):
        """``evaluate``: held-out evaluations during the phase (progress, the rows at each T); off
        only for a driver without a datamodule, which reads the end-of-phase controls alone."""
        self.prefix_updates_basis: torch.Tensor | None = None  # P_M = orth(u_0 … u_{M−1}), at the end of the phase
        # every length T of the list and the whole recovery; held-out numbers also at 1, 2, 4, … and every m
        lengths = {*capture_at_steps, steps} if evaluate else set()
        self.capture_at_steps = sorted(t for t in lengths if 1 <= t <= steps)
        powers = {2**i for i in range(steps.bit_length()) if 2**i <= steps}
        early = powers | {m for m in prefix_ms if m <= steps} if evaluate else set()
        self.evaluate_at = sorted(early | set(self.capture_at_steps))
        self.evaluates = evaluate
        self.progress: list[dict] = []  # {"step", "acc", "loss"} at step 0 (θ_0) and every step of evaluate_at
        self.update_norms: list[float] = []  # ‖u_t‖ for every step taken
        self.deltas: dict[int, torch.Tensor] = {}  # Δ_T for every T of capture_at_steps (the replica's targets)
        self.theta0_batches = theta0_batches
        self.theta0_updates: torch.Tensor | None = None  # the optimizer's step-0 updates at θ_0 on fresh batches
        self.offset_m = min(control_m, steps) if offset_draws else 0
        self.offset_starts = (
            {t: offset_block_starts(t, self.offset_m, offset_draws, seed) for t in self.capture_at_steps}
            if offset_draws
            else {}
        )
        self.length_curve: list[dict] = []  # one row per T of capture_at_steps
        self._recent: list[torch.Tensor] = []  # the last control_m updates, oldest first
        self._prefix_basis: torch.Tensor | None = None  # Q of the first max(prefix_ms) updates, once complete
        self.effective_layers = effective_layers or []
        self.vector = vector
        self.static_bases = static_bases
        self.theta_star = theta_star
        self.target = target
        self.prefix_ms = sorted(prefix_ms)
        keep = self.prefix_ms[-1]
        self.updates = torch.zeros(keep, vector.dim)
        self.gradients = torch.zeros(keep, vector.dim)
        self.recorded = 0
        self.theta_zero: torch.Tensor | None = None
        self.results: dict = {}
        self.control_m = min(control_m, steps)
        self.random_positions = control_positions(steps, self.control_m, control_draws, seed)
        self.last_positions = list(range(steps - self.control_m, steps)) if control_draws else []
        self.control_updates: dict[int, torch.Tensor] = {}  # u_p for the positions the controls use
        self.length_positions = {t: self.positions_before(t, steps, control_draws, seed) for t in self.capture_at_steps}
        self._wanted = set(self.last_positions).union(
            *map(set, self.random_positions),
            *(set(p) for draws in self.length_positions.values() for p in draws),
            *(range(o, o + self.offset_m) for starts in self.offset_starts.values() for o in starts),
        )
        self._theta_before: torch.Tensor | None = None

    def positions_before(self, length: int, steps: int, draws: int, seed: int) -> list[list[int]]:
        """The random-position draws of the control at recovery length T = ``length``."""
        if length == steps:
            return self.random_positions
        return control_positions(length, min(self.control_m, length), draws, seed, salt=length)

    @property
    def state_key(self) -> str:
        return "Recovery"

    def memory_bytes(self) -> int:
        kept = 3 + len(self._wanted) + len(self.capture_at_steps) + self.theta0_batches
        return (self.updates.numel() + self.gradients.numel() + kept * self.vector.dim) * 4

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.theta_zero is None:
            self.theta_zero = self.vector.values()
            self.progress = [{"step": 0, **self.evaluate(trainer, pl_module)}] if self.evaluates else []
            if self.theta0_batches:
                self.theta0_updates = self.updates_at_theta_zero(trainer, pl_module)

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        return heldout_scores(trainer, pl_module, self.target)

    def updates_at_theta_zero(self, trainer: L.Trainer, pl_module: L.LightningModule) -> torch.Tensor:
        """S0's vectors: the update the recover phase's optimizer, in its state at step 0, would take
        from θ_0 on each of ``theta0_batches`` fresh batches of T (rows). θ and the optimizer's state
        are put back after each; the run's own batches and steps are untouched."""
        optimizer = trainer.optimizers[0]
        if getattr(pl_module, "carried_optimizer_state", None) is not None:  # the module loads it after us
            optimizer.load_state_dict(pl_module.carried_optimizer_state)
        state = copy.deepcopy(optimizer.state_dict())
        trainable = [p for p in pl_module.parameters() if p.requires_grad]
        start = [p.detach().clone() for p in trainable]
        rows = []
        for i in range(self.theta0_batches):
            batch = {
                key: value.to(pl_module.device)
                for key, value in trainer.datamodule.probe_batch(self.target, (THETA0_KEY, i)).items()
            }
            optimizer.zero_grad(set_to_none=True)
            with no_sync(trainer):  # every rank sees the same probe batch: nothing to all-reduce
                pl_module.loss(batch).backward()
            optimizer.step()
            rows.append(self.vector.values() - self.theta_zero)
            with torch.no_grad():
                for parameter, value in zip(trainable, start):
                    parameter.copy_(value)
            optimizer.load_state_dict(copy.deepcopy(state))
        optimizer.zero_grad(set_to_none=True)
        return torch.stack(rows)

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if self.recorded < len(self.updates):
            self.vector.write_grads(self.gradients[self.recorded])
            self.vector.write_values(self.updates[self.recorded])  # θ_t; the step makes it u_t
        if trainer.global_step in self._wanted or self.capture_at_steps:
            self._theta_before = self.vector.values()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        if self.recorded < len(self.updates):
            self.vector.subtract_from_values(self.updates[self.recorded])
            self.recorded += 1
        position = trainer.global_step - 1  # the step just taken
        if self._theta_before is None:
            return
        update = self.vector.values() - self._theta_before
        self._theta_before = None
        if position in self._wanted:
            self.control_updates[position] = update
        self.update_norms.append(float(update.double().norm()))
        self._recent = [*self._recent, update][-self.control_m :]
        if trainer.global_step in self.evaluate_at:
            self.progress.append({"step": trainer.global_step, **self.evaluate(trainer, pl_module)})
        if trainer.global_step in self.capture_at_steps:
            row = self.capture_at_length(trainer, pl_module, trainer.global_step)
            self.length_curve.append(row)
            self.log_scalars(trainer, length_scalars(row), trainer.global_step)

    def capture_at_length(self, trainer: L.Trainer, pl_module: L.LightningModule, steps_taken: int) -> dict:
        """At recovery length T: cap(P_m, Δ_T) for m <= T, the random-position, last-m and offset-block
        nulls, S0's capture, the shares and cap(P_m, θ_T − θ_m) (geometry.recovery_progress), θ_T's
        held-out numbers (the last progress entry), those at θ_0 + P_m P_mᵀ Δ_T (m = the controls' m)
        and steps_to_recover."""
        theta = self.vector.values()
        delta = theta - self.theta_zero
        self.deltas[steps_taken] = delta
        basis = self._prefix_basis
        if basis is None:
            basis = nested_prefix_basis(self.updates[: self.recorded]).float()
            if self.recorded == len(self.updates):  # complete: every later T reuses it
                self._prefix_basis = basis
        ms = [m for m in self.prefix_ms if m <= min(steps_taken, self.recorded)]
        cumulative = cumulative_capture(basis, delta)
        last = prefix_capture_curve(torch.stack(self._recent[::-1]), delta, [m for m in ms if m <= len(self._recent)])
        draws = self.length_positions.get(steps_taken, [])
        starts = self.offset_starts.get(steps_taken, [])
        if any(p not in self.control_updates for positions in draws for p in positions) or any(
            p not in self.control_updates for o in starts for p in range(o, o + self.offset_m)
        ):
            draws, starts = [], []  # a run resumed from a checkpoint that predates the length controls
        in_draws = [m for m in ms if draws and m <= len(draws[0])]
        random = [
            prefix_capture_curve(torch.stack([self.control_updates[p] for p in positions]), delta, in_draws)
            for positions in draws
        ]
        offsets = [
            prefix_capture_curve(
                torch.stack([self.control_updates[p] for p in range(o, o + self.offset_m)]), delta, [self.offset_m]
            )[self.offset_m]
            for o in starts
        ]
        before = [self.updates[:m].sum(0) for m in ms]  # θ_m − θ_0
        row = {
            "T": steps_taken,
            "m": ms,
            "prefix": [float(cumulative[m - 1]) for m in ms],
            "last": [last.get(m, float("nan")) for m in ms],
            "random": [[draw[m] for draw in random] if m in in_draws else [] for m in ms],
            "after_prefix": [float(cumulative_capture(basis[:, :m], delta - b)[-1]) for m, b in zip(ms, before)],
            "path_share": [path_share(self.update_norms, m, steps_taken) for m in ms],
            "displacement_share": [displacement_share(b, delta) for b in before],
            "delta_norm": float(delta.norm()),
            **self.progress[-1],
        }
        del row["step"]
        if starts:
            row["offset"] = {"m": self.offset_m, "starts": starts, "captures": offsets}
        if self.theta0_updates is not None:
            row["S0_theta0_updates"] = capture(self.theta0_basis(), delta)
        progress = [(p["step"], p["acc"]) for p in self.progress if p["step"] <= steps_taken]
        row["steps_to_recover"] = {f"{f:g}": steps_to_recover(progress, steps_taken, f) for f in RECOVERED_FRACTIONS}
        if self.control_m in ms:
            self.vector.load_values(self.theta_zero + project(basis[:, : self.control_m], delta))
            row["projected"] = {"m": self.control_m, **self.evaluate(trainer, pl_module)}
            self.vector.load_values(theta)
        return row

    def theta0_basis(self) -> torch.Tensor:
        """S0: an orthonormal basis of the step-0 updates at θ_0 (top-k of ``theta0_batches`` rows, k = all)."""
        return topk_basis(self.theta0_updates, len(self.theta0_updates))[0].float()

    def end_of_phase(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        theta_end = self.vector.values()
        delta = theta_end - self.theta_zero
        bases = dict(self.static_bases)
        bases["S6_go_back"] = go_back_direction(self.theta_star, self.theta_zero)
        if self.theta0_updates is not None:
            bases["S0_theta0_updates"] = self.theta0_basis()
        prefix_u = nested_prefix_basis(self.updates[: self.recorded]).float()
        self.prefix_updates_basis = prefix_u
        prefix_g = nested_prefix_basis(self.gradients[: self.recorded]).float()
        self.results["pivots"] = {
            "updates": smallest_pivots(self.updates[: self.recorded]).tolist(),
            "gradients": smallest_pivots(self.gradients[: self.recorded]).tolist(),
        }
        self.results["controls"] = self.control_captures(delta)
        for m in self.prefix_ms:
            if m <= self.recorded:
                bases[f"P{m}_updates"] = prefix_u[:, :m]
                bases[f"P{m}_gradients"] = prefix_g[:, :m]
        heldout = heldout_on_device(trainer, pl_module, self.target)
        rows = {}
        for name, basis in bases.items():
            self.vector.load_values(self.theta_zero + project(basis, delta))
            rows[name] = {
                "capture": capture(basis, delta),
                "k": int(basis.shape[1]),
                **pl_module.evaluate_batch(heldout),
            }
        for name, theta in (("theta_0", self.theta_zero), ("theta_R", theta_end), ("theta_star", self.theta_star)):
            self.vector.load_values(theta)
            rows[name] = pl_module.evaluate_batch(heldout)
        self.results.update(
            {
                "rows": rows,
                "delta_norm": float(delta.norm()),
                "go_back_norm": float((self.theta_star - self.theta_zero).norm()),
            }
        )
        if self.effective_layers:
            r = effective_step_r(self.theta_zero, self.updates[: self.recorded], theta_end, self.effective_layers)
            captures, pivots = prefix_capture_from_r(r)
            self.results["effective"] = captures.tolist()
            self.results["pivots"]["effective_updates"] = pivots.tolist()
            self.results["effective_dim"] = sum(f.a_shape[1] * f.b_shape[0] for f in self.effective_layers)
        self.vector.load_values(theta_end)
        headlines = {  # as scalars at the step they were measured, beside the figure (recovery/capture/P8_updates)
            name.replace(".", "/"): entry["value"]
            for name, entry in self.summary().get("metrics", {}).items()
            if name.startswith(("recovery.capture", "recovery.projected_acc"))
        }
        self.log_scalars(trainer, headlines, trainer.global_step)

    def control_captures(self, delta: torch.Tensor) -> dict:
        """cap(orth(u_p : p in a set), Δ) for the random-position draws and the last m updates,
        for every m in prefix_ms up to control_m (each draw's sets are nested in m)."""
        ms = [m for m in self.prefix_ms if m <= self.control_m]
        own = set(self.last_positions).union(*map(set, self.random_positions))
        if not ms or not self.random_positions or any(p not in self.control_updates for p in own):
            return {}
        draws = [
            prefix_capture_curve(torch.stack([self.control_updates[p] for p in positions]), delta, ms)
            for positions in self.random_positions
        ]
        # the last m updates are u_{T−m} … u_{T−1}: the nested sets grow backwards from the end
        last = prefix_capture_curve(
            torch.stack([self.control_updates[p] for p in reversed(self.last_positions)]), delta, ms
        )
        return {
            "m": ms,
            "random": [[draw[m] for draw in draws] for m in ms],
            "last": [last[m] for m in ms],
            "positions": self.random_positions,
        }

    def summary(self) -> dict:
        if not self.results:
            return {}
        rows, dim = self.results["rows"], self.vector.dim
        metrics = {}
        for name, row in rows.items():
            if "capture" in row:
                metrics[f"recovery.capture.{name}"] = metric(
                    row["capture"],
                    f"capture (docs/science.md 2) cap(B, Δ) of the recovery displacement, energy, k={row['k']}",
                    random_capture_baseline(row["k"], dim),
                )
                metrics[f"recovery.projected_acc.{name}"] = metric(
                    row["acc"], f"task-{self.target} held-out accuracy at θ_0 + P_B Δ (function-space check)"
                )
        for point in ("theta_star", "theta_0", "theta_R"):
            metrics[f"recovery.{point}.acc"] = metric(
                rows[point]["acc"], f"task-{self.target} held-out accuracy at {point}"
            )
            metrics[f"recovery.{point}.loss"] = metric(
                rows[point]["loss"], f"task-{self.target} held-out loss at {point}"
            )
        curve = {
            "m": [m for m in self.prefix_ms if f"P{m}_updates" in rows],
        }
        curve["updates"] = [rows[f"P{m}_updates"]["capture"] for m in curve["m"]]
        curve["gradients"] = [rows[f"P{m}_gradients"]["capture"] for m in curve["m"]]
        for source in ("updates", "gradients"):
            pivots = self.results["pivots"][source]
            curve[f"min_pivot_{source}"] = [pivots[m - 1] for m in curve["m"]]
            curve[f"determined_{source}"] = [pivots[m - 1] >= PREFIX_DETERMINED_PIVOT for m in curve["m"]]
        for m, pivot in zip(curve["m"], curve["min_pivot_updates"]):
            metrics[f"recovery.prefix_pivot.P{m}_updates"] = metric(
                pivot,
                f"smallest relative QR pivot of u_0 … u_{m - 1}; P_{m} is numerically determined when >= "
                f"{PREFIX_DETERMINED_PIVOT:g}",
            )
        controls = self.results.get("controls") or {}
        if controls:
            curve["controls"] = controls
            for m, draws, last in zip(controls["m"], controls["random"], controls["last"]):
                spread = torch.tensor(draws, dtype=torch.float64)
                metrics[f"recovery.capture.R{m}_random_positions"] = {
                    **metric(
                        float(spread.mean()),
                        f"control: capture of Δ by {m} updates at seeded random positions of the recovery, mean over "
                        f"{len(draws)} draws",
                        random_capture_baseline(m, dim),
                    ),
                    "spread": {
                        "std": float(spread.std()) if len(draws) > 1 else 0.0,
                        "min": float(spread.min()),
                        "max": float(spread.max()),
                        "draws": len(draws),
                    },
                }
                metrics[f"recovery.capture.L{m}_last_updates"] = metric(
                    last, f"control: capture of Δ by the last {m} recovery updates", random_capture_baseline(m, dim)
                )
        if self.length_curve:
            curve["by_length"] = self.length_curve
            for row in self.length_curve:
                if 8 in row["m"]:
                    i, at = row["m"].index(8), f"after T = {row['T']} recovery steps"
                    metrics[f"recovery.capture_at_T{row['T']}.P8_updates"] = metric(
                        row["prefix"][i], f"cap(P_8, Δ_T), Δ_T = θ_T − θ_0 {at}", random_capture_baseline(8, dim)
                    )
                    metrics[f"recovery.capture_at_T{row['T']}.L8_last_updates"] = metric(
                        row["last"][i],
                        f"control: cap of Δ_T by the last 8 updates before T, {at}",
                        random_capture_baseline(8, dim),
                    )
                    if row.get("random", [[]] * (i + 1))[i]:
                        mean = float(torch.tensor(row["random"][i], dtype=torch.float64).mean())
                        metrics[f"recovery.capture_at_T{row['T']}.R8_random_positions"] = metric(
                            mean,
                            "control: cap of Δ_T by 8 updates at random positions in [0, T), mean over "
                            f"{len(row['random'][i])} draws, {at}",
                            random_capture_baseline(8, dim),
                        )
                metrics[f"recovery.capture_at_T{row['T']}.acc"] = metric(
                    row["acc"], f"task-{self.target} held-out accuracy at θ_T, T = {row['T']}"
                )
                metrics.update(length_metrics(row, self.target, dim))
        for point in self.progress:
            if point["step"] in self.prefix_ms:
                metrics[f"recovery.progress.acc_at_step{point['step']}"] = metric(
                    point["acc"], f"task-{self.target} held-out accuracy at θ_{point['step']}, when the prefix ended"
                )
                metrics[f"recovery.progress.loss_at_step{point['step']}"] = metric(
                    point["loss"], f"task-{self.target} held-out loss at θ_{point['step']}, when the prefix ended"
                )
        if self.progress:
            curve["progress"] = self.progress
        if "effective" in self.results:
            curve["min_pivot_effective_updates"] = [
                self.results["pivots"]["effective_updates"][m - 1] for m in curve["m"]
            ]
            curve["effective_updates"] = [self.results["effective"][m - 1] for m in curve["m"]]
            curve["effective_dim"] = self.results["effective_dim"]
            for m, value in zip(curve["m"], curve["effective_updates"]):
                metrics[f"recovery.capture_effective.P{m}_updates"] = metric(
                    value,
                    f"capture of the effective-weight displacement W(θ_R) − W(θ_0), W = (α/r)BA, by the first {m} "
                    "effective moves",
                    random_capture_baseline(m, self.results["effective_dim"]),
                )
        delta_norm, go_back = self.results["delta_norm"], self.results["go_back_norm"]
        metrics["recovery.delta_norm"] = metric(delta_norm, "‖Δ‖ = ‖θ_R − θ_0‖, how far the recovery moved")
        metrics["recovery.go_back_norm"] = metric(go_back, "‖θ* − θ_0‖, how far the degradation moved")
        metrics["recovery.delta_over_go_back"] = metric(
            delta_norm / go_back if go_back else float("nan"),
            "‖Δ‖ / ‖θ* − θ_0‖: ≈ 1 with S6 capture ≈ 1 goes back; ≪ 1 finds a nearby solution",
        )
        return {
            "metrics": metrics,
            "curves": {
                RECOVERY_TABLE: rows,
                RECOVERY_PREFIX: curve,
                "recovery.norms": {"delta": delta_norm, "go_back": go_back},
            },
        }

    def figures(self) -> dict:
        from loclin.callbacks.figures import prefix_capture_figure

        part = self.summary()
        if not part:
            return {}
        curve = part["curves"][RECOVERY_PREFIX]
        statics = {n: r["capture"] for n, r in part["curves"][RECOVERY_TABLE].items() if n.startswith("S")}
        return {
            "recovery/prefix_capture": prefix_capture_figure(
                {"run": curve}, statics, random_capture_baseline(8, self.vector.dim)
            )
        }

    def state_dict(self) -> dict:
        return {
            "updates": self.updates,
            "gradients": self.gradients,
            "recorded": self.recorded,
            "theta_zero": self.theta_zero,
            "control_updates": self.control_updates,
            "theta_before": self._theta_before,
            "length_curve": self.length_curve,
            "recent": self._recent,
            "progress": self.progress,
            "update_norms": self.update_norms,
            "deltas": self.deltas,
            "theta0_updates": self.theta0_updates,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self.updates = state_dict["updates"]
        self.gradients = state_dict["gradients"]
        self.recorded = state_dict["recorded"]
        self.theta_zero = state_dict["theta_zero"]
        self.control_updates = dict(state_dict.get("control_updates", {}))
        self._theta_before = state_dict.get("theta_before")
        self.length_curve = list(state_dict.get("length_curve", []))
        self._recent = list(state_dict.get("recent", []))
        self.progress = list(state_dict.get("progress", []))
        self.update_norms = list(state_dict.get("update_norms", []))
        self.deltas = dict(state_dict.get("deltas", {}))
        self.theta0_updates = state_dict.get("theta0_updates")
