"""Image classification as a LightningModule: any ``nn.Module`` network, SGD/Adam + schedule from config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from lightning_compress._namespaces import LightningModuleBase
from lightning_compress.modules.optim import configure_optimization, validate_optim_config


class ImageClassifier(LightningModuleBase):
    """Trains ``net`` with cross-entropy; logs ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``, ``test/acc``.

    Args:
        net: the network (a plain ``nn.Module``); compression callbacks find it as ``module.net``.
        num_classes: classes of the task, for the accuracy metrics.
        optim: ``name`` (sgd|adam|adamw), ``lr``, ``momentum``, ``nesterov``, ``weight_decay``.
        scheduler: ``name`` (constant|multistep|cosine|onecycle), ``milestones`` (fractions of the epochs), ``gamma``.
        channels_last: keep weights and inputs in channels-last memory format (what oneDNN and cuDNN prefer).
    """

    def __init__(self, net: nn.Module, num_classes: int, optim: Mapping[str, Any] | None = None,
                 scheduler: Mapping[str, Any] | None = None, channels_last: bool = False) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"`net` must be an nn.Module, got {type(net).__name__}.")
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"`num_classes` must be an int >= 2, got {num_classes!r}.")
        self.optim_config = dict(optim or {})
        self.scheduler_config = dict(scheduler or {})
        validate_optim_config(self.optim_config, self.scheduler_config)
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.channels_last = channels_last
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def on_fit_start(self) -> None:
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str, metric: MulticlassAccuracy) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        metric(logits.float(), labels)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=stage != "test")
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train", self.train_acc)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val", self.val_acc)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test", self.test_acc)

    def configure_optimizers(self) -> Any:
        return configure_optimization(self.trainer, self.net.parameters(), self.optim_config, self.scheduler_config)
