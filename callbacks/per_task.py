"""Per-task gradient geometry, the primary object for claim C1 (docs/science.md 1, 3).

Every ``stride`` steps, at the current θ, for each task T: the gradients of T's loss on
``n_batches`` + ``n_heldout`` fresh single-task batches. The first n_batches form G_T; its
top-k basis B_T gives the spectrum (energy, effective rank); the held-out gradients, which
were not in G_T, give cap(B_T, g_T^held) against k/D. Across tasks: the overlap matrix
ov(B_T, B_T') (do tasks share one plane?) and the cross-capture matrix cap(B_T, g_T'^held).
Against the previous probe: ov(B_T(t − stride), B_T(t)) and the stale capture of today's
held-out gradient by last probe's basis.

Gradients come from ``torch.autograd.grad`` on ``pl_module.loss(batch)``, so the training
gradients in ``.grad`` are never touched. Cost per probe: (n_batches + n_heldout)·K
forward/backward passes. When the stream measures on its background thread (callbacks.measurement_worker)
and the module draws no random numbers in its loss (no active dropout), the probe runs there too, on a
replica of the module taken at θ_step: the trainable parameters copied, the frozen ones shared. The
same calls on the same values give the in-line probe's numbers bit for bit.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from loclin.callbacks.base import Averages, MeasurementCallback, metric
from loclin.callbacks.gradient_stream import GradientStream
from loclin.callbacks.parameter_vector import ParameterVector
from loclin.geometry.angles import compare_subspaces
from loclin.geometry.capture import capture, random_capture_baseline
from loclin.geometry.spectrum import spectrum_summary
from loclin.geometry.subspace import finite_rows, topk_basis
from torch import nn


def task_gradient(
    module: L.LightningModule, vector: ParameterVector, batch: dict, params: Sequence[nn.Parameter] | None = None
) -> torch.Tensor:
    """Flat gradient of ``module.loss(batch)`` w.r.t. the measured parameters (.grad untouched):
    ``vector.params``, or their counterparts ``params`` in a replica of the module."""
    batch = {key: value.to(module.device) for key, value in batch.items()}
    with torch.enable_grad():
        loss = module.loss(batch)
        grads = torch.autograd.grad(loss, vector.params if params is None else params, allow_unused=True)
    return vector.flatten(grads)


def draws_random_numbers(module: nn.Module) -> bool:
    """Whether the module's forward in its current mode draws random numbers (active dropout: a dropout
    layer, or a float attribute named ``*dropout`` such as attention's ``dropout_p`` rate, above 0): then
    a probe on another thread would interleave its draws with training's, and it stays in line."""
    for sub in module.modules():
        if not sub.training:
            continue
        rates = [sub.p] if isinstance(sub, nn.modules.dropout._DropoutNd) else []
        rates += [value for name, value in vars(sub).items() if name.endswith("dropout") and isinstance(value, float)]
        if any(rate > 0 for rate in rates):
            return True
    return False


def replica(module: L.LightningModule, measured: Sequence[nn.Parameter]) -> tuple[nn.Module, list[nn.Parameter]]:
    """A copy of ``module`` at its current values, for a probe on another thread while training goes
    on: every trainable parameter and buffer copied, the frozen parameters shared (a LoRA base model
    is not copied); with the copy's counterparts of ``measured``, in their order."""
    memo = {id(p): p for p in module.parameters() if not p.requires_grad}
    trainer = getattr(module, "_trainer", None)
    memo[id(trainer)] = trainer
    with torch.no_grad():
        copied = copy.deepcopy(module, memo)
    name_of = {id(p): name for name, p in module.named_parameters()}
    copied_by_name = dict(copied.named_parameters())
    return copied, [copied_by_name[name_of[id(p)]] for p in measured]


class PerTaskGradientCallback(MeasurementCallback):
    module_needs = ("loss",)
    data_needs = ("probe_batch",)

    def __init__(
        self,
        stream: GradientStream,
        tasks: Sequence[str],
        stride: int = 500,
        n_batches: int = 8,
        n_heldout: int = 2,
        k: int = 4,
    ):
        if not 1 <= k <= n_batches:
            raise ValueError(f"per-task k must be in 1..n_batches={n_batches}, got {k}")
        self.stream = stream
        self.tasks = list(tasks)
        self.stride = stride
        self.n_batches = n_batches
        self.n_heldout = n_heldout
        self.k = k
        self.bases: dict[str, torch.Tensor] = {}
        self.probe_step = -1
        self.averages = Averages()
        self.overlap_sum: torch.Tensor | None = None
        self.cross_capture_sum: torch.Tensor | None = None
        self.probes = 0
        self.skipped_probes = 0  # probes left out because a task's gradients were not finite

    @property
    def state_key(self) -> str:
        return "PerTaskGradient"

    def memory_bytes(self) -> int:
        per_task = self.k * self.stream.dim * 4
        transient = (self.n_batches + self.n_heldout) * self.stream.dim * 4
        return len(self.tasks) * per_task + transient

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step % self.stride or step == self.probe_step:
            return
        self.probe(trainer, pl_module, step)

    def probe(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        """One probe at θ_step: on the stream's background thread when it has one and the loss draws
        no random numbers, otherwise here."""
        batches = {
            task: [trainer.datamodule.probe_batch(task, (step, i)) for i in range(self.n_batches + self.n_heldout)]
            for task in self.tasks
        }
        vector = self.stream.vector
        if self.stream.worker is None or draws_random_numbers(pl_module):
            grads = {task: [task_gradient(pl_module, vector, batch) for batch in batches[task]] for task in self.tasks}
            measured = self.measure(grads, step)
            if measured is not None:
                self.log_scalars(trainer, *measured)
            return
        module, params = replica(pl_module, vector.params)
        grads = {task: [] for task in self.tasks}
        for task in self.tasks:  # one gradient per task of the thread's idle work: the steps go first
            for batch in batches[task]:
                self.stream.submit(
                    lambda task=task, batch=batch: grads[task].append(task_gradient(module, vector, batch, params)),
                    trainer,
                    idle=True,
                )
        self.stream.submit(lambda: self.measure(grads, step), trainer, idle=True)

    def measure(self, grads: dict[str, list[torch.Tensor]], step: int) -> tuple[dict[str, float], int] | None:
        """The probe's numbers from each task's gradients (n_batches, then n_heldout); the scalars and
        their step, or None when skipped (counted, and warned): a task with fewer than k finite window
        gradients or no finite held-out one, since a basis of NaNs measures nothing."""
        bases, heldout, logs, windows = {}, {}, {}, {}
        for task in self.tasks:
            grads_of_task = torch.stack(grads[task])
            windows[task] = finite_rows(grads_of_task[: self.n_batches])
            heldout[task] = finite_rows(grads_of_task[self.n_batches :])
            if len(windows[task]) < self.k or (self.n_heldout and not len(heldout[task])):
                self.skipped_probes += 1
                rank_zero_warn(
                    f"[loclin] per-task probe at step {step} skipped: task '{task}' has non-finite gradients "
                    f"({self.skipped_probes} skipped so far)"
                )
                return None
        for task in self.tasks:
            held = heldout[task]
            basis, singular_values = topk_basis(windows[task], self.k)
            bases[task] = basis
            stats = spectrum_summary(singular_values, self.k)
            stats["heldout_capture"] = float(torch.tensor([capture(basis, g) for g in held]).mean())
            if task in self.bases:
                stats["overlap_prev_probe"] = compare_subspaces(self.bases[task], basis)["overlap"]
                stats["stale_capture_prev_probe"] = float(
                    torch.tensor([capture(self.bases[task], g) for g in held]).mean()
                )
            for name, value in stats.items():
                self.averages.add(f"{task}/{name}", value)
                logs[f"pertask/{task}/{name}"] = value
        n = len(self.tasks)
        overlap = torch.zeros(n, n, dtype=torch.float64)
        cross = torch.zeros(n, n, dtype=torch.float64)
        for i, a in enumerate(self.tasks):
            for j, b in enumerate(self.tasks):
                overlap[i, j] = compare_subspaces(bases[a], bases[b])["overlap"] if i != j else 1.0
                cross[i, j] = float(torch.tensor([capture(bases[a], g) for g in heldout[b]]).mean())
        off_diagonal = ~torch.eye(n, dtype=torch.bool)
        if n > 1:
            logs["pertask/cross_task_overlap_mean"] = float(overlap[off_diagonal].mean())
            logs["pertask/cross_task_capture_mean"] = float(cross[off_diagonal].mean())
            self.averages.add("cross_task_overlap_mean", logs["pertask/cross_task_overlap_mean"])
            self.averages.add("cross_task_capture_mean", logs["pertask/cross_task_capture_mean"])
        self.overlap_sum = overlap if self.overlap_sum is None else self.overlap_sum + overlap
        self.cross_capture_sum = cross if self.cross_capture_sum is None else self.cross_capture_sum + cross
        self.bases, self.probe_step = bases, step
        self.probes += 1
        return logs, step

    def summary(self) -> dict:
        self.stream.wait()
        skipped = {"counts": {"pertask_skipped_probes": self.skipped_probes}} if self.skipped_probes else {}
        if not self.probes:
            return skipped
        baseline = random_capture_baseline(self.k, self.stream.dim)
        metrics = {}
        for task in self.tasks:
            metrics[f"pertask.{task}.heldout_capture"] = metric(
                self.averages.mean(f"{task}/heldout_capture"),
                f"heldout_capture (docs/science.md 3) of fresh task gradients by the top-{self.k} per-task basis, "
                "energy, mean over probes",
                baseline,
            )
            metrics[f"pertask.{task}.energy_topk"] = metric(
                self.averages.mean(f"{task}/energy_topk"),
                f"energy_topk (docs/science.md 1) of {self.n_batches} per-task gradients",
                self.k / self.n_batches,
            )
            if self.averages.count(f"{task}/overlap_prev_probe"):
                metrics[f"pertask.{task}.overlap_prev_probe"] = metric(
                    self.averages.mean(f"{task}/overlap_prev_probe"),
                    f"overlap (docs/science.md 4) of the per-task basis with the one {self.stride} steps earlier",
                    baseline,
                )
        heldout = [metrics[f"pertask.{t}.heldout_capture"]["value"] for t in self.tasks]
        metrics["pertask.heldout_capture_mean"] = metric(
            sum(heldout) / len(heldout),
            "heldout_capture (docs/science.md 3), per-task bases, mean over tasks and probes, energy",
            baseline,
        )
        if len(self.tasks) > 1:
            metrics["pertask.cross_task_overlap_mean"] = metric(
                self.averages.mean("cross_task_overlap_mean"),
                "overlap (docs/science.md 4) between different tasks' bases, mean off-diagonal",
                baseline,
            )
            metrics["pertask.cross_task_capture_mean"] = metric(
                self.averages.mean("cross_task_capture_mean"),
                "capture of task T' held-out gradients by task T's basis, mean off-diagonal",
                baseline,
            )
        return {
            "metrics": metrics,
            "curves": {
                "pertask": {
                    "tasks": self.tasks,
                    "overlap_matrix": (self.overlap_sum / self.probes).tolist(),
                    "cross_capture_matrix": (self.cross_capture_sum / self.probes).tolist(),
                    "probes": self.probes,
                }
            },
            **skipped,
        }

    def figures(self) -> dict:
        from loclin.callbacks.figures import matrix_figure

        self.stream.wait()
        if not self.probes:
            return {}
        return {
            "pertask/overlap_matrix": matrix_figure(
                (self.overlap_sum / self.probes).tolist(), self.tasks, "overlap of per-task bases"
            ),
            "pertask/cross_capture_matrix": matrix_figure(
                (self.cross_capture_sum / self.probes).tolist(), self.tasks, "cap(B_row, held-out g_col)"
            ),
        }

    def state_dict(self) -> dict:
        self.stream.wait()
        return {
            "bases": dict(self.bases),
            "probe_step": self.probe_step,
            "averages": self.averages.state_dict(),
            "overlap_sum": self.overlap_sum,
            "cross_capture_sum": self.cross_capture_sum,
            "probes": self.probes,
            "skipped_probes": self.skipped_probes,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self.bases = dict(state_dict["bases"])
        self.probe_step = state_dict["probe_step"]
        self.averages.load_state_dict(state_dict["averages"])
        self.overlap_sum = state_dict["overlap_sum"]
        self.cross_capture_sum = state_dict["cross_capture_sum"]
        self.probes = state_dict["probes"]
        self.skipped_probes = state_dict.get("skipped_probes", 0)
