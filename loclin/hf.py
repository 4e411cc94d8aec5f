"""loclin's gradient geometry in a Hugging Face ``transformers.Trainer`` (or TRL's ``SFTTrainer``,
a subclass), as one ``TrainerCallback``.

    from loclin.hf import GeometryTrainerCallback

    trainer = Trainer(model, args, train_dataset=data, callbacks=[GeometryTrainerCallback(window=32, k=8)])
    trainer.train()   # <output_dir>/summary.json; scalars in TensorBoard under <output_dir>/loclin

The measurements are GeometryMonitor's (loclin.monitor; its parts are built and summarised the same
way), so a run gives the numbers its Lightning twin gives on the same model, batches and seed.

**g before clipping.** loclin defines g_t as the gradient after backward and before clipping;
Lightning's ``on_before_optimizer_step`` runs before its clipping, but the Hugging Face Trainer clips
(``max_grad_norm``, 1.0 by default) before any callback sees the gradient. So this callback copies
each parameter's gradient into the window as backward accumulates it (a
``register_post_accumulate_grad_hook`` per parameter, ``ParameterVector.copy_grads_as_accumulated``)
and commits it at ``on_pre_optimizer_step``. θ_t is read there too, before the step; u_t and the
rolling bases move on at ``on_step_end``, after it.

**Resume.** At every checkpoint the callback's state (windows, bases, drift snapshots, running
means) is saved beside the Trainer's, as ``checkpoint-<step>/loclin_geometry.pt``; a run resumed with
``trainer.train(resume_from_checkpoint=...)`` from a checkpoint of ``output_dir`` loads it and gives
the numbers of an uninterrupted run. A resume that finds no such file stops with one line.

**Several processes** (``torchrun`` or ``accelerate launch``; DDP). The hooks see each rank's own
gradient, before DDP averages it, so at ``on_pre_optimizer_step`` the callback all-reduces the
window's new row and divides by the world size: g = (1/R) Σ_r g_r, the gradient DDP hands the
optimizer (before clipping). Every rank then holds the same windows and bases; rank 0 writes
summary.json and the scalars. Two ranks give the numbers of one process that accumulates the same
two batches (``gradient_accumulation_steps=2``), bit for bit.

Not yet: sketched windows and ``shard_windows``; each is refused with one line when training begins.
"""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from loclin.callbacks.gradient_window import gradient_stream
from loclin.monitor import GeometryMonitor
from loclin.runs.rundir import atomic_torch_save
from loclin.schema import GeometryConfig

STATE_FILE = "loclin_geometry.pt"


def checkpoint_dir(args, state) -> Path:
    """The Trainer's checkpoint folder of the current step: ``<output_dir>/checkpoint-<step>``."""
    return Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """The Trainer's checkpoint folders that hold loclin's state too, oldest first."""
    found = [p for p in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*") if (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name.rsplit("-", 1)[1]) if p.name.rsplit("-", 1)[1].isdigit() else -1)


def average_over_ranks(local_gradient: torch.Tensor, world_size: int) -> None:
    """In place: g ← (1/R) Σ_r g_r, as DDP averages (its halving and ours are exact in floating point,
    so the row is the optimizer's gradient bit for bit)."""
    torch.distributed.all_reduce(local_gradient, op=torch.distributed.ReduceOp.SUM)
    local_gradient.div_(world_size)


class TrainerView:
    """What loclin's measurement callbacks read of a Lightning Trainer, for a Hugging Face run: the
    optimizer step, the loggers, the ranks, and where summary.json goes."""

    def __init__(self, args, state, model, logger: Logger | None):
        self.args, self.state, self.lightning_module = args, state, model
        self.logger = logger
        self.loggers = [logger] if logger is not None else []
        self.callback_metrics: dict = {}
        self.world_size, self.global_rank = args.world_size, args.process_index
        self.log_dir = self.default_root_dir = args.output_dir

    @property
    def global_step(self) -> int:
        return self.state.global_step

    @property
    def max_steps(self) -> int:
        return self.state.max_steps

    @property
    def is_global_zero(self) -> bool:
        return self.state.is_world_process_zero


class GeometryTrainerCallback(TrainerCallback):
    def __init__(self, geometry: GeometryConfig | None = None, *, logger: Logger | None = None, **settings):
        """``geometry`` and ``settings`` as for GeometryMonitor (``groups``, ``summary_dir``, ``seed``
        and the geometry keys). ``logger``: any Lightning logger for the scalars and figures
        (default: TensorBoard in ``<output_dir>/loclin``)."""
        self.monitor = GeometryMonitor(geometry, **settings)
        self.logger = logger
        self.view: TrainerView | None = None
        self._hooks: list = []
        self._size_stated = False

    @property
    def summary_path(self) -> Path | None:
        return self.monitor.summary_path

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if args.world_size > 1 and self.monitor.geometry.shard_windows:
            raise ValueError("GeometryTrainerCallback: shard_windows is not supported yet; every rank keeps all of D")
        if self.monitor.geometry.sketch_dim:
            raise ValueError("GeometryTrainerCallback: sketched windows (sketch_dim) are not supported yet")
        logger = self.logger or TensorBoardLogger(args.output_dir, name="loclin", version="")
        if not state.is_world_process_zero:
            logger = None  # rank 0 logs; every rank measures (the same numbers)
        self.view = TrainerView(args, state, model, logger)
        self.monitor.parts = []
        self.monitor.setup(self.view, model, "fit")
        if state.global_step > 0:  # resumed: the Trainer restored its state before calling us
            saved = checkpoint_dir(args, state) / STATE_FILE
            if not saved.is_file():
                complete = complete_checkpoints(args.output_dir)
                hint = (
                    f"the last complete one is {complete[-1]} (resume_from_checkpoint={str(complete[-1])!r})"
                    if complete
                    else "no checkpoint in output_dir has it"
                )
                raise FileNotFoundError(
                    f"GeometryTrainerCallback: resuming at step {state.global_step}, but {saved} does not exist "
                    f"(the run was killed between the Trainer's save and loclin's); {hint}"
                )
            self.monitor.load_state_dict(torch.load(saved, weights_only=False))
        stream = gradient_stream(self.monitor.parts)
        if stream is not None and "grad" in stream.windows:
            window = stream.windows["grad"]
            self._hooks = stream.vector.copy_grads_as_accumulated(window.next_slot)

    def on_step_begin(self, args, state, control, **kwargs):
        stream = gradient_stream(self.monitor.parts)
        if stream is not None and "grad" in stream.windows:
            stream.windows["grad"].next_slot().zero_()  # a parameter backward does not reach has g = 0

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        stream = gradient_stream(self.monitor.parts)
        if stream is None:
            return
        if args.world_size > 1 and "grad" in stream.windows:
            average_over_ranks(stream.windows["grad"].next_slot(), args.world_size)
        stream.before_optimizer_step(self.view, grads_in_slot=True)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        for part in self.monitor.parts:
            part.on_train_batch_end(self.view, model, None, None, state.global_step - 1)

    def on_save(self, args, state, control, model=None, **kwargs):
        """The callback's state beside the Trainer's checkpoint (and the figures redrawn, as in
        Lightning runs, when ``live_figures_seconds`` have passed)."""
        if state.is_world_process_zero:
            folder = checkpoint_dir(args, state)
            folder.mkdir(parents=True, exist_ok=True)
            atomic_torch_save(self.monitor.state_dict(), folder / STATE_FILE)  # never a half-written file
            if not self._size_stated:
                size = (folder / STATE_FILE).stat().st_size
                rank_zero_info(
                    f"[loclin] GeometryTrainerCallback: {size / 2**20:.1f} MiB of geometry state in each checkpoint "
                    f"({STATE_FILE}: the windows of W vectors of D floats, and the bases); it goes with its "
                    "checkpoint folder, so save_total_limit bounds it too"
                )
                self._size_stated = True
        self.monitor.on_save_checkpoint(self.view, model, {})

    def on_train_end(self, args, state, control, model=None, **kwargs):
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        self.monitor.on_train_end(self.view, model)
        self.monitor.teardown(self.view, model, "fit")
        if self.view.logger is not None:
            self.view.logger.finalize("success")
