"""Drive measurement callbacks by hand: a toy module, a fake trainer, one step at a time."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn


class ToyModule(nn.Module):
    """Two parameter groups of a linear map; the callbacks' view of a LightningModule."""

    def __init__(self, d_in: int = 6, d_out: int = 4):
        super().__init__()
        self.first = nn.Linear(d_in, d_out, bias=False)
        self.second = nn.Linear(d_out, 1)
        self.device = torch.device("cpu")

    def parameter_groups(self):
        return {"first": list(self.first.named_parameters()), "second": list(self.second.named_parameters())}

    def loss(self, batch):
        return ((self.second(self.first(batch["x"])) - batch["y"]) ** 2).mean()


class StepDriver:
    """Feeds chosen gradients to callbacks and applies plain SGD, mimicking Lightning's order."""

    def __init__(self, module: ToyModule, callbacks, lr: float = 0.1):
        self.module = module
        self.callbacks = callbacks
        self.lr = lr
        self.trainer = SimpleNamespace(
            global_step=0,
            logger=None,
            loggers=[],
            callback_metrics={},
            is_global_zero=True,
            datamodule=None,
            world_size=1,
        )
        self.params = [p for group in module.parameter_groups().values() for _, p in group]
        for cb in callbacks:
            cb.setup(self.trainer, module, "fit")

    def step(self, grad_vector: torch.Tensor) -> None:
        offset = 0
        for p in self.params:
            p.grad = grad_vector[offset : offset + p.numel()].view_as(p).clone()
            offset += p.numel()
        for cb in self.callbacks:
            cb.on_before_optimizer_step(self.trainer, self.module, None)
        with torch.no_grad():
            for p in self.params:
                p -= self.lr * p.grad
        self.trainer.global_step += 1
        for cb in self.callbacks:
            cb.on_train_batch_end(self.trainer, self.module, None, None, 0)


@pytest.fixture
def toy():
    torch.manual_seed(0)
    return ToyModule()
