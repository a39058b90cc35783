"""Fixtures of the distillation tests: tiny ResNet/VGG students and teachers, tiny data, a quiet Trainer (their
settings, ``NUM_CLASSES``, ``OPTIM``, ``SCHEDULER``, are in ``tests/helpers.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import pytorch_lightning as pl

from lightning_compress.data.synthetic import SyntheticDataModule
from lightning_compress.models.resnet_cifar import CifarResNet
from lightning_compress.models.vgg import VGG
from tests.helpers import NUM_CLASSES, one_thread_fixture, quiet_trainer

one_thread = pytest.fixture(autouse=True)(one_thread_fixture)


@pytest.fixture
def resnet() -> Callable[[int], CifarResNet]:
    """``resnet(depth)``: a CIFAR ResNet on 1x8x8 inputs with 4 classes."""
    return lambda depth=8: CifarResNet(depth, num_classes=NUM_CLASSES, in_channels=1)


@pytest.fixture
def vgg() -> Callable[..., VGG]:
    """``vgg(widths)``: a two-section VGG (w1, w1, M, w2, w2) on 1x8x8 inputs."""
    return lambda w1=8, w2=16: VGG((w1, w1, "M", w2, w2), num_classes=NUM_CLASSES, in_channels=1)


@pytest.fixture
def data() -> SyntheticDataModule:
    return SyntheticDataModule(num_classes=NUM_CLASSES, in_channels=1, image_size=8, train_size=64, val_size=16,
                               test_size=16, batch_size=16, seed=0)


@pytest.fixture
def make_trainer(tmp_path) -> Callable[..., pl.Trainer]:
    def _make(**kwargs: Any) -> pl.Trainer:
        return quiet_trainer(tmp_path, **kwargs)

    return _make

