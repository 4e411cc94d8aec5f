"""The measurement thread: its tasks run in order, its errors reach the training thread, and a stream
measured on it gives the numbers and scalars measured in line, bit for bit."""

import os
import threading

import pytest
import torch
from loclin.callbacks.drift import DriftCallback
from loclin.callbacks.gradient_stream import STAGED_STEPS, GradientStream
from loclin.callbacks.gradient_window import GradientWindowCallback
from loclin.callbacks.measurement_worker import MeasurementWorker
from loclin.callbacks.rolling_basis import RollingBasisCallback
from torch import nn

from tests.callbacks.conftest import StepDriver, ToyModule


def test_tasks_run_in_the_order_submitted_on_one_other_thread():
    worker, seen = MeasurementWorker(), []
    for i in range(50):
        worker.submit(lambda i=i: seen.append((i, threading.get_ident())))
    worker.wait()
    assert [i for i, _ in seen] == list(range(50))
    assert {ident for _, ident in seen} != {threading.get_ident()} and len({ident for _, ident in seen}) == 1
    worker.close()


def test_idle_work_runs_only_while_no_step_waits_each_queue_in_its_order():
    worker, seen, release = MeasurementWorker(), [], threading.Event()
    worker.submit(release.wait)  # hold the thread while both queues fill
    for name, idle in (("probe 1", True), ("step 1", False), ("probe 2", True), ("step 2", False)):
        worker.submit(lambda name=name: seen.append(name), idle=idle)
    release.set()
    worker.wait()
    assert seen == ["step 1", "step 2", "probe 1", "probe 2"]
    worker.close()


def test_an_error_is_raised_on_the_training_thread_and_the_tasks_after_it_are_skipped():
    worker, seen = MeasurementWorker(), []
    worker.submit(lambda: seen.append(1))
    worker.submit(lambda: 1 / 0)
    worker.submit(lambda: seen.append(3))
    with pytest.raises(ZeroDivisionError):
        worker.wait()
    assert seen == [1]
    worker.submit(lambda: seen.append(4))  # raised once: the worker goes on
    worker.wait()
    assert seen == [1, 4]
    worker.close()


def test_a_closed_worker_starts_a_new_thread_for_the_next_fit():
    worker, seen = MeasurementWorker(), []
    worker.submit(lambda: seen.append(1))
    worker.close()
    assert not worker.alive and seen == [1]
    worker.submit(lambda: seen.append(2))
    worker.wait()
    assert worker.alive and seen == [1, 2]
    worker.close()


D_IN, D_OUT = 40, 10
D = D_IN * D_OUT + D_OUT + 1


@pytest.fixture
def one_thread(monkeypatch):
    """Training on one thread, as the configs run, so a second core is free for the measurements (the
    suite's workers are each told they have one core: the test says this one has two)."""
    from loclin.callbacks.measurement_worker import CORES_ENV

    monkeypatch.setenv(CORES_ENV, "2")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def measured(background: bool, steps: int = 130):
    """Window, bases and drift of grad and update on a toy module under SGD (so u_t is −lr·g_t, and
    the update window is measured too), fed one fixed stream of gradients; returns the callbacks,
    every scalar logged as (step, tag, value), and the stream."""
    torch.manual_seed(0)
    module = ToyModule(D_IN, D_OUT)
    stream = GradientStream(window=16, sources=["grad", "update"], background=background)
    rolling = [RollingBasisCallback(stream, s, k=3, stride=4, heldout_lags=(1, 2, 4)) for s in ("grad", "update")]
    drift = [DriftCallback(stream, r.basis, stride=4, lags=(8, 16, 32)) for r in rolling]
    callbacks = [GradientWindowCallback(stream), *rolling, *drift]
    driver = StepDriver(module, callbacks, lr=0.05)
    logged = []
    driver.trainer.loggers = [
        type(
            "L",
            (),
            {"log_metrics": lambda self, m, step: logged.extend((step, tag, value) for tag, value in m.items())},
        )()
    ]
    g = torch.Generator().manual_seed(1)
    directions = torch.randn(D, 3, generator=g)
    for _ in range(steps):
        driver.step(directions @ torch.randn(3, generator=g) + 0.1 * torch.randn(D, generator=g))
    summaries = [cb.summary() for cb in callbacks]
    states = [cb.state_dict() for cb in callbacks]
    stream.close(driver.trainer)
    return summaries, states, sorted(logged), stream


def test_the_background_thread_measures_the_numbers_measured_in_line_bit_for_bit(one_thread):
    inline_summaries, inline_states, inline_logged, inline = measured(background=False)
    summaries, states, logged, stream = measured(background=True)
    assert inline.worker is None and stream.worker is not None  # one training thread: a core is free
    assert summaries == inline_summaries
    assert logged == inline_logged and len(logged) > 500
    for state, expected in zip(states, inline_states):
        torch.testing.assert_close(state, expected, rtol=0, atol=0)


def test_training_runs_ahead_of_the_measurements_by_at_most_the_staging_rows(one_thread):
    stream = GradientStream(window=4, sources=["grad"], background=True)
    driver = StepDriver(ToyModule(), [GradientWindowCallback(stream)], lr=0.0)
    release = threading.Event()
    stream.worker.submit(release.wait)  # hold the measurement thread
    for _ in range(STAGED_STEPS):
        driver.step(torch.randn(sum(p.numel() for p in driver.params)))
    blocked = threading.Thread(target=driver.step, args=(torch.randn(sum(p.numel() for p in driver.params)),))
    blocked.start()
    blocked.join(timeout=0.5)
    assert blocked.is_alive()  # every staging row holds a step not yet measured: training waits
    release.set()
    blocked.join(timeout=10)
    assert not blocked.is_alive()
    stream.wait()
    assert stream.windows["grad"].count == STAGED_STEPS + 1
    stream.close()


def test_a_probe_replica_copies_what_training_changes_and_shares_the_frozen_weights():
    from loclin.callbacks.per_task import replica

    module = ToyModule(6, 4)
    module.second.bias.requires_grad_(False)
    copied, params = replica(module, [module.first.weight, module.second.weight])
    assert copied.second.bias is module.second.bias  # frozen: shared, not copied
    assert params == [copied.first.weight, copied.second.weight]
    assert all(p is not q and torch.equal(p, q) for p, q in zip(params, [module.first.weight, module.second.weight]))
    with torch.no_grad():
        module.first.weight.add_(1.0)  # training moves on: the replica keeps θ_step
    assert not torch.equal(copied.first.weight, module.first.weight)


def test_a_module_with_active_dropout_is_probed_in_line():
    from loclin.callbacks.per_task import draws_random_numbers
    from loclin.lightning_modules.transformer import TinyDecoder

    assert not draws_random_numbers(ToyModule())
    model = TinyDecoder(20, 8, 1, 16, 2, 32, dropout=0.1)
    assert draws_random_numbers(model.train()) and not draws_random_numbers(model.eval())
    assert not draws_random_numbers(TinyDecoder(20, 8, 1, 16, 2, 32, dropout=0.0).train())
    attention = nn.Module()
    attention.attention_dropout = 0.1  # a rate read inside forward, as Hugging Face attention keeps it
    assert draws_random_numbers(attention.train()) and not draws_random_numbers(attention.eval())


def test_a_background_stream_refuses_gradients_written_into_its_slot(one_thread):
    stream = GradientStream(window=4, sources=["grad"], background=True)
    driver = StepDriver(ToyModule(), [GradientWindowCallback(stream)], lr=0.0)
    with pytest.raises(ValueError, match="takes g_t from .grad"):
        stream.before_optimizer_step(driver.trainer, grads_in_slot=True)
    stream.close()


def test_a_core_is_free_only_beside_training_threads_in_a_process_alone(one_thread, monkeypatch):
    from types import SimpleNamespace

    from loclin.callbacks.gradient_stream import free_core
    from loclin.callbacks.measurement_worker import CORES_ENV

    alone, ranked = SimpleNamespace(world_size=1), SimpleNamespace(world_size=2)
    monkeypatch.setenv(CORES_ENV, "2")
    assert free_core(alone) and not free_core(ranked)  # DDP ranks share the cores: in line
    monkeypatch.setenv(CORES_ENV, "1")  # a sweep point's share of the machine: one core, training's
    assert not free_core(alone)


def test_a_sweep_tells_each_point_its_share_of_the_cores(tmp_path):
    import sys

    from loclin.runs.launchers import launch_local

    jobs = [
        ([sys.executable, "-c", "import os; print(os.environ['LOCLIN_CORES'])"], str(tmp_path / f"{i}.log"))
        for i in range(2)
    ]
    assert launch_local(jobs, workers=2) == [0, 0]
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    assert [(tmp_path / f"{i}.log").read_text().strip() for i in range(2)] == [str(share)] * 2


def test_a_failed_measurement_stops_training_with_its_error_instead_of_a_hang(one_thread):
    """Training waits for a staging row while the thread fails: the rows of the steps it then skips never
    come back, so the wait must end in the thread's error."""
    stream = GradientStream(window=4, sources=["grad", "update"], background=True)
    driver = StepDriver(ToyModule(), [GradientWindowCallback(stream)], lr=0.1)
    fail = threading.Event()

    def failing():
        fail.wait()
        raise ZeroDivisionError

    stream.worker.submit(failing)
    outcome = []

    def train():
        try:
            for _ in range(STAGED_STEPS + 1):  # the last step waits for a row
                driver.step(torch.randn(sum(p.numel() for p in driver.params)))
        except ZeroDivisionError:
            outcome.append("raised")

    thread = threading.Thread(target=train, daemon=True)
    thread.start()
    thread.join(timeout=1.0)
    assert thread.is_alive() and not outcome  # every row holds a step the thread has not taken in
    fail.set()
    thread.join(timeout=30)
    assert outcome == ["raised"]
