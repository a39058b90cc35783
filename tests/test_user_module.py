"""The app trains and compresses a user's own LightningModule given as ``module._target_`` (issue 29, item 6)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf, open_dict
from torch import nn

from lightning_compress.pipeline import run
from lightning_compress.pipeline.builders import build_classifier

QUICK = ["method.baseline.epochs=1", "method.finetune.epochs=1", "+trainer.limit_train_batches=2",
         "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1"]


class UserLit(pl.LightningModule):
    """A user's module: keeps the network as ``self.model``, its own optimizer settings, logs ``test/acc``."""

    def __init__(self, net: nn.Module, lr: float = 0.05) -> None:
        super().__init__()
        self.model, self.lr = net, lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("test/acc", (self(x).argmax(1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


class NoNet(UserLit):
    def __init__(self, lr: float = 0.05) -> None:
        super().__init__(nn.Linear(1, 1), lr)


class Elsewhere(UserLit):
    def __init__(self, net: nn.Module) -> None:
        super().__init__(nn.Identity())
        self.inner = net


class NoAccuracy(UserLit):
    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.log("test/loss", F.cross_entropy(self(batch[0]), batch[1]))


def with_module(cfg: Any, target: str, **kwargs: Any) -> Any:
    with open_dict(cfg):
        cfg.module = {"_target_": f"tests.test_user_module.{target}", **kwargs}
    return cfg


def test_the_app_prunes_the_users_module(compose_config, tmp_path: Path) -> None:
    cfg = with_module(compose_config("+method=l1_filter", *QUICK), "UserLit", lr=0.02)
    module = build_classifier(cfg, nn.Linear(2, 2))
    assert type(module).__name__ == "UserLit" and module.lr == 0.02  # only the keys its __init__ takes
    run(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["final"]["params"] < results["baseline"]["params"] and 0 <= results["final"]["test_acc"] <= 1


@pytest.mark.parametrize(("target", "error", "message"), [
    ("NoNet", TypeError, "must take the network as `net`"),
    ("Elsewhere", TypeError, "keeping the network it is given as `self.net` or `self.model`"),
])
def test_a_module_outside_the_contract_is_refused(target: str, error: type, message: str) -> None:
    cfg = OmegaConf.create({"module": {"_target_": f"tests.test_user_module.{target}"}, "data": {"num_classes": 4}})
    with pytest.raises(error, match=message):
        build_classifier(cfg, nn.Linear(2, 2))


def test_a_module_without_test_accuracy_is_named(compose_config) -> None:
    cfg = with_module(compose_config("+method=l1_filter", *QUICK), "NoAccuracy")
    with pytest.raises(ValueError, match=r"NoAccuracy must log 'test/acc' in its test_step.*test/loss"):
        run(cfg)
