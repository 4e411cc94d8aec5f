"""One background thread that runs the gradient stream's measurements in the order they were submitted.

Training needs nothing back from the geometry: a refresh, a drift snapshot or a held-out capture
only reads the window and writes its own running state. So the stream hands each step's work to
this thread and training goes on with the next batch while the measurement runs on a free core.
The work is the same calls on the same tensors in the same order, with the thread count training
has (a new thread inherits it), so every number is bit for bit the one measured in line
(tests/callbacks/test_measurement_worker.py). Whoever reads the measured state from the training
thread calls :meth:`wait` first; an error raised in the thread is raised again there.

Two queues: the steps' own work, and ``idle`` work that reads nothing the steps write (a per-task
probe's gradients on a replica of the module), which runs only while no step waits. Each queue keeps
its order. A long probe then never holds the steps back while training waits for staging rows.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable

CORES_ENV = "LOCLIN_CORES"  # the cores a process may use where it shares the machine (a sweep's points)


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


LIVE: weakref.WeakSet[MeasurementWorker] = weakref.WeakSet()


@atexit.register
def close_all() -> None:
    """At the interpreter's exit, let every thread finish its task and end: a thread still inside a
    torch call while the process tears down aborts it ("terminate called without an active
    exception"). A fit that raised (Lightning calls no callback's teardown then) ends up here."""
    for worker in list(LIVE):
        worker.close(raise_error=False)


class MeasurementWorker:
    def __init__(self, name: str = "loclin-measurements"):
        self.name = name
        self._steps: deque[Callable[[], None]] = deque()
        self._idle: deque[Callable[[], None]] = deque()
        self._changed = threading.Condition()
        self._pending = 0  # submitted and not yet finished
        self._closing = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.busy_seconds = 0.0  # time spent running tasks (what training no longer waits for)

    def _next(self) -> Callable[[], None] | None:
        with self._changed:
            while not (self._steps or self._idle or self._closing):
                self._changed.wait()
            if self._steps:
                return self._steps.popleft()
            return self._idle.popleft() if self._idle else None  # None: closing, nothing left

    def _run(self) -> None:
        while (task := self._next()) is not None:
            try:
                if self._error is None:  # after a failure the rest is skipped: its inputs may be half-made
                    started = time.perf_counter()
                    task()
                    self.busy_seconds += time.perf_counter() - started
            except BaseException as error:  # noqa: BLE001 - raised again on the training thread
                self._error = error
            finally:
                with self._changed:
                    self._pending -= 1
                    self._changed.notify_all()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, task: Callable[[], None], idle: bool = False) -> None:
        """Queue ``task`` (``idle``: behind every step's work, see the module's docstring), starting the
        thread if none runs (after :meth:`close`, the next fit starts another); first raise any error
        an earlier task raised."""
        self.check()
        if not self.alive:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
            LIVE.add(self)
        with self._changed:
            (self._idle if idle else self._steps).append(task)
            self._pending += 1
            self._changed.notify_all()

    def wait(self) -> None:
        """Block until every submitted task has run; raise the first error one of them raised."""
        with self._changed:
            while self._pending:
                self._changed.wait()
        self.check()

    def close(self, raise_error: bool = True) -> None:
        """Run what is queued, then end the thread (idempotent); with ``raise_error`` false, a task's
        error is dropped (training has already failed with its own)."""
        if self.alive:
            with self._changed:
                self._closing = True
                self._changed.notify_all()
            self._thread.join()
            self._closing = False
        LIVE.discard(self)
        if raise_error:
            self.check()
        self._error = None

    def check(self) -> None:
        """Raise the error a task raised, once."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
