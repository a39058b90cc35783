"""Digits: real images, fixed stratified split. Synthetic: deterministic by seed, any shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_compress.data import DigitsDataModule, SyntheticDataModule
from lightning_compress.data.digits import load_digit_images


def _rows(images: torch.Tensor) -> list[bytes]:
    return [img.numpy().tobytes() for img in images]


def test_digits_split_sizes_stratified_and_covering_all_images():
    dm = DigitsDataModule()
    dm.setup()
    train, val, test = dm.split("train"), dm.split("val"), dm.split("test")
    assert (len(train), len(val), len(test)) == (1077, 360, 360)
    images, labels = load_digit_images()
    full = np.bincount(labels, minlength=10)
    for split in (val, test):
        counts = torch.bincount(split.labels, minlength=10).numpy()
        assert np.all(np.abs(counts - full * 360 / 1797) <= 1)  # every class in proportion
    joined = sorted(_rows(torch.cat([train.images, val.images, test.images])))
    assert joined == sorted(_rows(torch.from_numpy(images)))  # a partition of the 1,797 images


def test_digits_pixels_and_fixed_split():
    dm, again = DigitsDataModule(), DigitsDataModule(batch_size=7)
    dm.setup()
    again.setup()
    train = dm.split("train")
    assert train.images.dtype == torch.uint8 and train.images.shape[1:] == (1, 8, 8)
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    assert torch.equal(train.images, again.split("train").images)
    other = DigitsDataModule(split_seed=1)
    other.setup()
    assert not torch.equal(other.split("test").labels, dm.split("test").labels)
    assert len(dm.mean) == 1 and 0.2 < dm.mean[0] < 0.4  # computed from the training split


def test_digits_augmentation_is_off_by_default():
    dm = DigitsDataModule()
    dm.setup()
    raw = next(iter(dm.train_dataloader()))
    assert torch.equal(dm.transform_batch(raw, train=True)[0], dm.transform_batch(raw, train=False)[0])


@pytest.mark.parametrize(("classes", "channels", "size"), [(2, 1, 4), (10, 3, 32), (7, 5, 9)])
def test_synthetic_shapes_and_balance(classes, channels, size):
    dm = SyntheticDataModule(num_classes=classes, in_channels=channels, image_size=size, train_size=70,
                             val_size=14, test_size=21)
    dm.setup()
    train = dm.split("train")
    assert train.images.shape == (70, channels, size, size) and train.images.dtype == torch.uint8
    counts = torch.bincount(train.labels, minlength=classes)
    assert counts.max() - counts.min() <= 1 and int(train.labels.max()) == classes - 1
    assert (len(dm.split("val")), len(dm.split("test"))) == (14, 21)


def test_synthetic_is_deterministic_by_seed_and_splits_differ():
    a, b, c = SyntheticDataModule(seed=3), SyntheticDataModule(seed=3), SyntheticDataModule(seed=4)
    for dm in (a, b, c):
        dm.setup()
    assert torch.equal(a.split("train").images, b.split("train").images)
    assert not torch.equal(a.split("train").images, c.split("train").images)
    assert not set(_rows(a.split("train").images)) & set(_rows(a.split("test").images))


def test_synthetic_rejects_bad_sizes():
    with pytest.raises(ValueError, match="`train_size` must be an int >= 1, got 0"):
        SyntheticDataModule(train_size=0)
    with pytest.raises(ValueError, match="`noise` must be >= 0"):
        SyntheticDataModule(noise=-1.0)
