"""Fixtures of the callback tests: a tiny VGG / ResNet, a tiny synthetic datamodule and a quiet Trainer factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import pytorch_lightning as pl
import torch

from lightning_compress.data.synthetic import SyntheticDataModule
from lightning_compress.models.resnet_cifar import CifarResNet
from lightning_compress.models.vgg import VGG
from lightning_compress.modules import ImageClassifier

TINY_VGG = (8, 8, "M", 16, 16)


def tiny_vgg(num_classes: int = 4) -> VGG:
    """4 convs (8, 8, M, 16, 16) + BN on 1x8x8 inputs."""
    return VGG(TINY_VGG, num_classes=num_classes, in_channels=1)


def tiny_resnet(num_classes: int = 4) -> CifarResNet:
    """ResNet-8 (one block per stage) on 1-channel inputs."""
    return CifarResNet(8, num_classes=num_classes, in_channels=1)


def tiny_module(net: torch.nn.Module | None = None, lr: float = 0.05, **optim: Any) -> ImageClassifier:
    net = net if net is not None else tiny_vgg()
    return ImageClassifier(net, num_classes=4, optim={"name": "sgd", "lr": lr, "momentum": 0.9, **optim},
                           scheduler={"name": "constant"})


def tiny_data(batch_size: int = 16, train_size: int = 64, image_size: int = 8, **kwargs: Any) -> SyntheticDataModule:
    return SyntheticDataModule(num_classes=4, in_channels=1, image_size=image_size, train_size=train_size,
                               val_size=32, test_size=32, batch_size=batch_size, seed=0, **kwargs)


def quiet_trainer(tmp_path, **kwargs: Any) -> pl.Trainer:
    defaults: dict[str, Any] = {
        "default_root_dir": str(tmp_path), "accelerator": "cpu", "devices": 1, "max_epochs": 1, "logger": False,
        "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False,
        "num_sanity_val_steps": 0, "limit_val_batches": 1,
    }
    defaults.update(kwargs)
    return pl.Trainer(**defaults)


@pytest.fixture
def make_trainer(tmp_path) -> Callable[..., pl.Trainer]:
    return lambda **kwargs: quiet_trainer(tmp_path, **kwargs)


