"""Code as users write it, shared by the tests of users' code: a LightningModule whose network is ``self.model``."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from tests.callbacks.conftest import tiny_vgg


class NetSteps:
    """The forward and training step of a user's module whose network is ``self.net``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)


class UserSteps:
    """The steps of a user's classifier module (SGD with momentum); mixed into either Lightning package's module."""

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = tiny_vgg()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("test_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)


class LitUser(UserSteps, L.LightningModule):
    """The user's module written for ``import lightning as L`` (module level: spawned workers unpickle it)."""


def user_module_class(ns: ModuleType) -> type:
    """The same module written for the Lightning namespace ``ns`` (``pytorch_lightning`` or ``lightning.pytorch``)."""
    return type("LitUser", (UserSteps, ns.LightningModule), {})


def one_thread_fixture():
    """One intra-op thread for tiny models (with other jobs on the cores, 2 threads spin and run ~10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
