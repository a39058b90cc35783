"""The shared in-memory datamodule: uint8 tensors in memory, whole-batch loading, transforms on the device.

Loading: :class:`TensorImageDataset` implements ``__getitems__``, so a DataLoader (with its ordinary sampler, or the
``DistributedSampler`` Lightning swaps in under DDP) fetches a whole batch with one tensor index instead of calling
``__getitem__`` and collating per sample. Sharding is therefore exactly the sampler's: each rank gets its own
``DistributedSampler`` indices.

Transforms: batches leave the DataLoader as ``(uint8 images (N, C, H, W), int64 labels)``. ``on_after_batch_transfer``
(after the batch is on the accelerator) applies the training augmentation to training batches only, then normalises
every batch to float32 with the per-channel mean/std. The hook only runs when the Trainer is given this datamodule
(``trainer.fit(model, datamodule=dm)``); with bare DataLoaders call :meth:`InMemoryImageDataModule.transform_batch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lightning_compress._namespaces import LightningDataModuleBase
from lightning_compress.data.augment import augment as augment_batch
from lightning_compress.data.augment import normalize

Batch = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class ImageSplit:
    """One split held in memory: ``images`` uint8 (N, C, H, W) and ``labels`` int64 (N,)."""

    images: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"`images` must be a uint8 tensor (N, C, H, W), got {self.images.dtype} "
                             f"of shape {tuple(self.images.shape)!r}.")
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"`labels` must be an int64 tensor of shape ({self.images.shape[0]},), "
                             f"got {self.labels.dtype} of shape {tuple(self.labels.shape)!r}.")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: Tensor) -> ImageSplit:
        """The images at ``index`` (a copy)."""
        return ImageSplit(self.images[index].contiguous(), self.labels[index].contiguous())


class TensorImageDataset(Dataset):
    """Map-style dataset over an :class:`ImageSplit` that also serves whole batches (``__getitems__``)."""

    def __init__(self, split: ImageSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> Batch:
        return self.split.images[index], self.split.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return self.split.images[idx], self.split.labels[idx]


def collate_batch(data: Batch | list[Batch]) -> Batch:
    """Pass through a batch from ``__getitems__``; stack a list of samples otherwise (e.g. a wrapping dataset)."""
    if isinstance(data, tuple):
        return data
    images, labels = zip(*data)
    return torch.stack(images), torch.stack(labels)


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value!r}.")


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images (N, C, H, W), in units of [0, 1] pixels.

    Computed exactly from each channel's 256-bin histogram (fast, no float copy of the images).
    """
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for ch in range(images.shape[1]):
        hist = torch.bincount(images[:, ch].reshape(-1), minlength=256).to(torch.float64)
        p = hist / hist.sum()
        mean = float((p * values).sum())
        means.append(mean)
        stds.append(max(float((p * (values - mean) ** 2).sum()), 1e-24) ** 0.5)
    return tuple(means), tuple(stds)


def check_declared(name: str, given: int | None, actual: int) -> None:
    """Validate a declared ``num_classes``/``in_channels``/``image_size`` against the data set's fixed value."""
    if given is not None and given != actual:
        raise ValueError(f"`{name}` must be {actual} for this data set (or left out), got {given!r}.")


class InMemoryImageDataModule(LightningDataModuleBase):
    """Base class: subclasses set the shape attributes in ``__init__`` and implement :meth:`load_splits`.

    Args:
        num_classes, in_channels, image_size: the data's shape, known before ``setup`` (configs interpolate them).
        mean, std: per-channel normalisation of pixels scaled to [0, 1]; None: computed from the training split.
        batch_size: training batch size; ``eval_batch_size`` (default: the same) for validation/test/predict.
        num_workers, pin_memory: passed to the DataLoaders.
        augment: random crop + flip on training batches; ``crop_padding`` pixels of zero padding (0: no crop);
            ``flip``: random horizontal flip.
    """

    def __init__(self, *, num_classes: int, in_channels: int, image_size: int, mean: Sequence[float] | None,
                 std: Sequence[float] | None, batch_size: int, eval_batch_size: int | None = None, num_workers: int = 0,
                 pin_memory: bool = False, augment: bool = False, crop_padding: int = 4, flip: bool = True) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels), ("image_size", image_size),
                            ("batch_size", batch_size)):
            _check_positive_int(name, value)
        if eval_batch_size is not None:
            _check_positive_int("eval_batch_size", eval_batch_size)
        _check_positive_int("num_workers", num_workers, minimum=0)
        _check_positive_int("crop_padding", crop_padding, minimum=0)
        for name, flag in (("augment", augment), ("flip", flip), ("pin_memory", pin_memory)):
            if not isinstance(flag, bool):
                raise TypeError(f"`{name}` must be a bool, got {flag!r}.")
        if (mean is None) != (std is None):
            raise ValueError(f"`mean` and `std` must both be given or both be None, got {mean!r}, {std!r}.")
        if mean is not None and std is not None:
            mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
            if len(mean) != in_channels or len(std) != in_channels or min(std) <= 0:
                raise ValueError(f"`mean` and `std` must have {in_channels} values each (std > 0), "
                                 f"got {mean!r}, {std!r}.")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.image_size = image_size
        self.mean: tuple[float, ...] | None = mean  # None: computed from the training split in setup()
        self.std: tuple[float, ...] | None = std
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.augment = augment
        self.crop_padding = crop_padding
        self.flip = flip
        self.splits: dict[str, ImageSplit] | None = None

    # -- data -------------------------------------------------------------------------------------------------
    def load_splits(self) -> dict[str, ImageSplit]:
        """Return ``{"train": ..., "val": ..., "test": ...}`` (uint8, already split). Implemented by subclasses."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """Load all splits once (idempotent)."""
        if self.splits is None:
            splits = self.load_splits()
            for name, split in splits.items():
                shape = tuple(split.images.shape[1:])
                if shape != (self.in_channels, self.image_size, self.image_size):
                    raise ValueError(f"split {name!r} has images of shape {shape!r}, expected "
                                     f"{(self.in_channels, self.image_size, self.image_size)!r}.")
            self.splits = splits
            if self.mean is None or self.std is None:
                self.mean, self.std = channel_stats(splits["train"].images)

    def split(self, name: str) -> ImageSplit:
        """The loaded split ``name`` ("train", "val" or "test"); calls :meth:`setup` if needed."""
        self.setup()
        assert self.splits is not None
        if name not in self.splits:
            raise ValueError(f"`name` must be one of {sorted(self.splits)!r}, got {name!r}.")
        return self.splits[name]

    def _loader(self, name: str, train: bool) -> DataLoader:
        return DataLoader(
            TensorImageDataset(self.split(name)),
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            collate_fn=collate_batch,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    # -- transforms -------------------------------------------------------------------------------------------
    def transform_batch(self, batch: Batch, train: bool) -> Batch:
        """Augment (training batches, when enabled) and normalise a uint8 batch; labels pass through."""
        images, labels = batch
        if images.dtype != torch.uint8:
            raise TypeError(f"`batch` images must be uint8 (raw pixels from this datamodule), got {images.dtype}.")
        if train and self.augment:
            images = augment_batch(images, self.crop_padding, self.flip)
        if self.mean is None or self.std is None:
            self.setup()  # computes the statistics of the training split
        assert self.mean is not None and self.std is not None
        return normalize(images, self.mean, self.std), labels.long()

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        trainer = self.trainer
        return self.transform_batch(batch, train=bool(trainer is not None and trainer.training))

    def example_input(self, batch_size: int = 1) -> Tensor:
        """A zero float batch of the model's input shape (for tracing, MACs and latency)."""
        _check_positive_int("batch_size", batch_size)
        return torch.zeros(batch_size, self.in_channels, self.image_size, self.image_size)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_classes={self.num_classes}, in_channels={self.in_channels}, "
                f"image_size={self.image_size}, batch_size={self.batch_size}, augment={self.augment})")

    __str__ = __repr__  # Lightning's __str__ builds every DataLoader (and so loads the data); this one does not
