"""Run ``train.py`` with one injected fault, as a separate process (not a test module).

    python tests/fault_injection.py '<fault as JSON>' --config conf/tiny_recovery.yaml ...

The fault fires at its instant and either kills the process with SIGKILL (nothing after it
runs: no ``finally``, no handler; ``"signal": "SIGINT"`` sends Ctrl-C instead) or makes one
write fail as a full disk does (ENOSPC):

- ``{"kill": "step", "phase": P, "step": n}``: once phase P's global step reaches n;
- ``{"kill": "replace", "path": S, "when": "before" | "after"}``: around the rename that puts a
  file whose path ends in S in place (every atomic write of loclin ends in one), i.e. with the
  whole temporary file on disk but not yet renamed, or just after;
- ``{"kill": "save", "path": S}``: half-way through Lightning writing a checkpoint file whose
  path ends in S (half its bytes on disk);
- ``{"kill": "call", "target": "module:function", "phase": P}``: on entering that function
  while phase P runs (end-of-phase work: static bases, the prefix basis);
- ``{"enospc": S}``: a Lightning checkpoint write to a path ending in S fails with ENOSPC after
  half its bytes.

The phase is the one whose Trainer was built last (``loclin.protocols.train.runner.build_trainer``'s
phase directory), so an instant is keyed on the phase's name.
"""

from __future__ import annotations

import errno
import importlib
import io
import json
import os
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


SIGNAL = signal.SIGKILL  # or SIGINT (Ctrl-C): {"signal": "SIGINT"} in the fault


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), SIGNAL)


def install(fault: dict) -> None:
    import lightning as L
    import lightning.fabric.plugins.io.torch_io as torch_io
    import torch

    import loclin.protocols.train.runner as experiment

    state = {"phase": None}
    build_trainer = experiment.build_trainer

    class KillAtStep(L.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            if state["phase"] == fault["phase"] and trainer.global_step >= fault["step"]:
                die()

    def tracked_build_trainer(cfg, phase_dir, logger, callbacks, steps):
        state["phase"] = Path(phase_dir).name
        if fault.get("kill") == "step":
            callbacks = [*callbacks, KillAtStep()]
        return build_trainer(cfg, phase_dir, logger, callbacks, steps)

    experiment.build_trainer = tracked_build_trainer

    if fault.get("kill") == "replace":
        replace = os.replace

        def killing_replace(source, target, *args, **kwargs):
            hit = str(target).endswith(fault["path"])
            if hit and fault["when"] == "before":
                die()
            replace(source, target, *args, **kwargs)
            if hit:
                die()

        os.replace = killing_replace

    if fault.get("kill") == "save" or "enospc" in fault:
        suffix = fault.get("path") or fault["enospc"]
        atomic_save = torch_io._atomic_save

        def failing_save(checkpoint, filepath):
            if not str(filepath).endswith(suffix):
                return atomic_save(checkpoint, filepath)
            buffer = io.BytesIO()
            torch.save(checkpoint, buffer)
            with open(filepath, "wb") as handle:
                handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            if "enospc" in fault:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filepath))
            die()

        torch_io._atomic_save = failing_save

    if fault.get("kill") == "call":
        module_name, function_name = fault["target"].split(":")
        module = importlib.import_module(module_name)
        function = getattr(module, function_name)

        def killing_call(*args, **kwargs):
            if state["phase"] == fault["phase"]:
                die()
            return function(*args, **kwargs)

        setattr(module, function_name, killing_call)


if __name__ == "__main__":
    fault = json.loads(sys.argv[1])
    SIGNAL = getattr(signal, fault.get("signal", "SIGKILL"))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a test runner may start us with SIGINT ignored
    install(fault)
    import train

    sys.exit(train.main(sys.argv[2:]))
