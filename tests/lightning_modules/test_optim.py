"""The phase optimizer: plain SGD is gradient descent (the Krylov toy, exactly), the schedules'
closed forms, and one-line errors for combinations that do not exist."""

import math
import re

import pytest
import torch
from loclin.geometry.prefix import prefix_capture_curve
from loclin.geometry.quadratic import gradient_descent, power_law_spectrum
from loclin.lightning_modules.optim import OptimizerSpec, build_optimizer, schedule_factor
from torch import nn

from loclin.config import ConfigError, load_config
from loclin.protocols.train.config import phase_optimizer


def test_plain_sgd_on_the_quadratic_is_gradient_descent_and_gives_its_krylov_capture():
    spectrum = power_law_spectrum(300)
    offset = torch.randn(300, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    reference = gradient_descent(spectrum, offset, steps=200, keep=16)
    theta = nn.Parameter(offset.clone().reshape(1, -1))  # θ − θ°, a matrix so weight decay would apply
    eta = 0.9 / float(spectrum.max())
    setup = build_optimizer([("w", theta)], OptimizerSpec("sgd", eta, weight_decay=0.0, warmup_steps=0))
    optimizer, schedule = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    updates = []
    for _ in range(200):
        before = theta.detach().clone()
        optimizer.zero_grad()
        (0.5 * (spectrum * theta.reshape(-1) ** 2).sum()).backward()
        optimizer.step()
        schedule.step()
        updates.append((theta.detach() - before).reshape(-1))
    updates = torch.stack(updates)
    torch.testing.assert_close(updates[:16], reference.updates, rtol=1e-12, atol=1e-15)
    ms = [1, 2, 4, 8]
    assert prefix_capture_curve(updates[:16], updates.sum(0), ms) == pytest.approx(
        prefix_capture_curve(reference.updates, reference.displacement, ms), abs=1e-10
    )


def test_schedules_follow_their_closed_forms():
    constant = schedule_factor(OptimizerSpec(warmup_steps=4, steps=20))
    assert [constant(t) for t in (0, 3, 10)] == [0.25, 1.0, 1.0]
    cosine = schedule_factor(OptimizerSpec(warmup_steps=4, steps=20, schedule="cosine"))
    assert cosine(1) == 0.5 and cosine(4) == 1.0
    assert cosine(12) == pytest.approx(0.5 * (1 + math.cos(math.pi * 8 / 16)))
    assert cosine(20) == pytest.approx(0.0, abs=1e-12)


def test_a_phase_overrides_the_run_optimizer():
    cfg = load_config(
        "conf/tiny_recovery.yaml", ["phases.2.optim.name=sgd", "phases.2.optim.momentum=0.9", "phases.2.lr=0.05"]
    )
    train, recover = (phase_optimizer(cfg, cfg.phases[i]) for i in (0, 2))
    assert (train.name, train.lr) == ("adamw", 3e-3)
    assert (recover.name, recover.momentum, recover.lr, recover.steps) == ("sgd", 0.9, 0.05, 60)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["optim.momentum=0.9"], "optim.momentum=0.9 is for sgd; adamw's momentum is optim.betas[0]"),
        (["optim.name=lion"], "optim.name='lion' must be one of"),
        (["optim.lr=-1"], "optim.lr=-1"),
        (["optim.name=sgd", "optim.nesterov=true"], "optim.nesterov needs optim.momentum > 0"),
        (["optim.schedule=linear"], "optim.schedule='linear' must be one of"),
        (
            ["phases.2.optim.name=adam", "phases.2.optim.momentum=0.5"],
            "phases[2] (recover): optim.momentum=0.5 is for sgd",
        ),
        (
            ["phases.2.optim.name=sgd", "phases.2.fresh_optimizer=false"],
            "phases[2].fresh_optimizer=false carries adamw's state, but the phase runs sgd",
        ),
    ],
)
def test_bad_optimizer_combinations_are_one_line(overrides, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)) as error:
        load_config("conf/tiny_recovery.yaml", overrides)
    assert "\n" not in str(error.value)
