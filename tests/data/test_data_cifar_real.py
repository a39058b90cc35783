"""The real CIFAR-10 JPEG copy in ../shared/datasets/cifar10-jpeg (skipped where absent; decoded once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from data_writers import REAL_CIFAR

from lightning_compress.data import CIFAR10_CLASSES, CIFAR10DataModule
from lightning_compress.data import cifar10 as cifar10_module
from lightning_compress.data.base import channel_stats

pytestmark = [pytest.mark.cifar, pytest.mark.filterwarnings(r"ignore:CIFAR10DataModule\(val_split=0\)")]


@pytest.fixture(scope="module")
def real_dm(real_cifar_cache: Path) -> CIFAR10DataModule:
    dm = CIFAR10DataModule(REAL_CIFAR, cache_dir=real_cifar_cache)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_real_cifar_sizes_classes_and_stratified_validation(real_dm):
    assert real_dm.classes == CIFAR10_CLASSES
    expected = {"train": 4500, "val": 500, "test": 1000}
    for name, per_class in expected.items():
        split = real_dm.split(name)
        assert split.images.shape == (10 * per_class, 3, 32, 32) and split.images.dtype == torch.uint8
        assert torch.bincount(split.labels, minlength=10).tolist() == [per_class] * 10


def test_real_cifar_pixel_statistics_match_the_readme(real_dm):
    images = torch.cat([real_dm.split("train").images, real_dm.split("val").images])
    mean, std = channel_stats(images)
    assert mean == pytest.approx((0.4913, 0.4821, 0.4465), abs=1e-3)
    assert std == pytest.approx((0.2452, 0.2428, 0.2606), abs=1e-3)


def test_real_cifar_second_load_comes_from_the_cache(real_dm, real_cifar_cache, monkeypatch):
    def no_decode(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(cifar10_module, "read_source", no_decode)
    again = CIFAR10DataModule(REAL_CIFAR, cache_dir=real_cifar_cache, val_split=0)
    again.setup()
    assert len(again.split("train")) == 50_000
    assert torch.equal(again.split("test").images, real_dm.split("test").images)


def test_real_cifar_training_batch_is_normalised_and_augmented(real_dm):
    raw = next(iter(real_dm.train_dataloader()))
    x, y = real_dm.transform_batch(raw, train=True)
    assert x.shape == (128, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.mean().abs() < 0.3 and 0.7 < x.std() < 1.3
