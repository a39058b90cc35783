"""Tiny, deterministic, learnable random images for tests and debug runs."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lightning_compress.data.base import ImageSplit, InMemoryImageDataModule


def make_synthetic_split(size: int, num_classes: int, in_channels: int, image_size: int, noise: float,
                         seed: int, split_seed: int) -> ImageSplit:
    """``size`` uint8 images: a class prototype (seeded by ``seed``) plus per-image noise (seeded by ``split_seed``).

    Prototype of a class: a per-channel colour plus a coarse 4x4 pattern scaled up to the image size; both survive
    crops and flips, so a small CNN learns the classes quickly. Labels are balanced and shuffled.
    """
    proto_gen = torch.Generator().manual_seed(seed)
    colour = 0.25 + 0.5 * torch.rand(num_classes, in_channels, 1, 1, generator=proto_gen)
    cells = min(4, image_size)
    pattern = torch.rand(num_classes, in_channels, cells, cells, generator=proto_gen) - 0.5
    pattern = torch.nn.functional.interpolate(pattern, size=(image_size, image_size), mode="nearest")
    prototypes = colour + 0.4 * pattern
    gen = torch.Generator().manual_seed(seed * 1_000_003 + split_seed)
    labels = (torch.arange(size) % num_classes)[torch.randperm(size, generator=gen)]
    noise_img = noise * torch.randn(size, in_channels, image_size, image_size, generator=gen)
    images = ((prototypes[labels] + noise_img).clamp(0, 1) * 255).round().to(torch.uint8)
    return ImageSplit(images, labels.to(torch.int64))


class SyntheticDataModule(InMemoryImageDataModule):
    """Random images of any shape, identical for the same ``seed`` on every process.

    Args:
        num_classes, in_channels, image_size: the data's shape.
        train_size, val_size, test_size: number of images per split.
        noise: per-pixel Gaussian noise std (pixels in [0, 1]); larger is harder.
        seed: seed of the class prototypes and of the images.
        Others: see :class:`~lightning_compress.data.base.InMemoryImageDataModule` (mean/std None: computed).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32, train_size: int = 512,
                 val_size: int = 128, test_size: int = 128, batch_size: int = 64, eval_batch_size: int | None = None,
                 num_workers: int = 0, pin_memory: bool = False, augment: bool = False, crop_padding: int = 4,
                 flip: bool = True, noise: float = 0.2, seed: int = 0, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> None:
        for name, value in (("train_size", train_size), ("val_size", val_size), ("test_size", test_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an int >= 1, got {value!r}.")
        if not noise >= 0:
            raise ValueError(f"`noise` must be >= 0, got {noise!r}.")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"`seed` must be an int, got {seed!r}.")
        super().__init__(num_classes=num_classes, in_channels=in_channels, image_size=image_size, mean=mean,
                         std=std, batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
                         pin_memory=pin_memory, augment=augment, crop_padding=crop_padding, flip=flip)
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.noise = float(noise)
        self.seed = seed

    def load_splits(self) -> dict[str, ImageSplit]:
        return {name: make_synthetic_split(size, self.num_classes, self.in_channels, self.image_size, self.noise,
                                           self.seed, split_seed)
                for split_seed, (name, size) in enumerate(self.sizes.items())}
