"""scikit-learn's bundled 8x8 handwritten digits (1,797 real images, no download) as a datamodule."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.datasets import load_digits

from lightning_compress.data.base import ImageSplit, InMemoryImageDataModule, check_declared
from lightning_compress.data.splits import stratified_holdout

DIGITS_TEST_SIZE = 360
DIGITS_VAL_SIZE = 360


def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as uint8 (N, 1, 8, 8) images (0..16 scaled to 0..255) and int64 labels."""
    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]
    return images, bunch.target.astype(np.int64)


class DigitsDataModule(InMemoryImageDataModule):
    """The embedded default data: 10 classes, 1 channel, 8x8.

    Fixed stratified split (seeded by ``split_seed``): 360 test, 360 validation, 1,077 training images (about
    60/20/20), every class in each split in proportion. Mean/std: computed from the training split unless given.
    Augmentation is off by default (``augment: true`` with ``crop_padding: 1`` is a sensible small-image setting).

    Args:
        batch_size: training batch size (``eval_batch_size``: validation/test, default the same).
        split_seed: seed of the stratified split (keep 0 to compare runs).
        num_classes, in_channels, image_size: optional; if given they must be 10, 1 and 8 (configs declare them).
        Others: see :class:`~lightning_compress.data.base.InMemoryImageDataModule`.
    """

    def __init__(self, batch_size: int = 64, eval_batch_size: int | None = None, num_workers: int = 0,
                 pin_memory: bool = False, augment: bool = False, crop_padding: int = 1, flip: bool = False,
                 split_seed: int = 0, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 num_classes: int | None = None, in_channels: int | None = None,
                 image_size: int | None = None) -> None:
        check_declared("num_classes", num_classes, 10)
        check_declared("in_channels", in_channels, 1)
        check_declared("image_size", image_size, 8)
        if isinstance(split_seed, bool) or not isinstance(split_seed, int):
            raise TypeError(f"`split_seed` must be an int, got {split_seed!r}.")
        super().__init__(num_classes=10, in_channels=1, image_size=8, mean=mean, std=std, batch_size=batch_size,
                         eval_batch_size=eval_batch_size, num_workers=num_workers, pin_memory=pin_memory,
                         augment=augment, crop_padding=crop_padding, flip=flip)
        self.split_seed = split_seed

    def load_splits(self) -> dict[str, ImageSplit]:
        images, labels = load_digit_images()
        rest, test = stratified_holdout(labels, DIGITS_TEST_SIZE, self.split_seed)
        train_in_rest, val_in_rest = stratified_holdout(labels[rest], DIGITS_VAL_SIZE, self.split_seed)
        full = ImageSplit(torch.from_numpy(images), torch.from_numpy(labels))
        return {
            "train": full.subset(torch.from_numpy(rest[train_in_rest])),
            "val": full.subset(torch.from_numpy(rest[val_in_rest])),
            "test": full.subset(torch.from_numpy(test)),
        }
