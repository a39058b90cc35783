"""CIFAR-10 as a datamodule: official python archive or image folders, decoded once into a uint8 cache."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

from lightning_compress.data import download as _download
from lightning_compress.data.base import ImageSplit, InMemoryImageDataModule, check_declared
from lightning_compress.data.cache import cache_key, cache_path, default_cache_dir, load_cache, save_cache
from lightning_compress.data.errors import DatasetError
from lightning_compress.data.readers import DecodedData, Source, find_source, read_source
from lightning_compress.data.splits import stratified_holdout

# The usual CIFAR-10 training-set statistics (pixels in [0, 1]); the JPEG copy measures 0.4913 0.4821 0.4465 /
# 0.2452 0.2428 0.2606, close enough that the standard values are kept for comparability with the papers' code.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class CIFAR10DataModule(InMemoryImageDataModule):
    """CIFAR-10 (10 classes, 3 x 32 x 32) from any layout :func:`~lightning_compress.data.readers.find_source` accepts.

    Args:
        root: the data (official python archive / ``cifar-10-batches-py`` / image folder / image archives, or a
            folder containing one of them). Never written to, except by ``download``.
        download: if nothing is found at ``root``, download the official python archive into ``root`` (md5-checked).
        cache_dir: where the decoded uint8 ``.npz`` cache goes (default :func:`~lightning_compress.data.cache.
            default_cache_dir`, i.e. ``~/.cache/lightning_compress``). ``None`` uses the default.
        val_split: training images held out for validation (stratified, seeded by ``split_seed``); default 5000
            gives 45k/5k. 0 validates on the test set (the papers' protocol; model selection then sees the test set).
        decode_workers: processes decoding JPEG/PNG images on a cache miss (1: in process).
        mean, std: normalisation (default: the standard CIFAR-10 values; None: computed from the training split).
        num_classes: number of classes found in the data (10; another count for CIFAR-like image folders).
        in_channels, image_size: optional; if given they must be 3 and 32 (configs declare them).
        Others: see :class:`~lightning_compress.data.base.InMemoryImageDataModule`.
    """

    def __init__(self, root: str | os.PathLike, download: bool = False, cache_dir: str | os.PathLike | None = None,
                 val_split: int = 5000, split_seed: int = 0, batch_size: int = 128,
                 eval_batch_size: int | None = None, num_workers: int = 0, pin_memory: bool = False,
                 augment: bool = True, crop_padding: int = 4, flip: bool = True, decode_workers: int = 2,
                 mean: Sequence[float] | None = CIFAR10_MEAN, std: Sequence[float] | None = CIFAR10_STD,
                 num_classes: int = 10, in_channels: int | None = None, image_size: int | None = None) -> None:
        check_declared("in_channels", in_channels, 3)
        check_declared("image_size", image_size, 32)
        if not isinstance(root, (str, os.PathLike)) or not str(root):
            raise TypeError(f"`root` must be a non-empty path, got {root!r}.")
        if isinstance(val_split, bool) or not isinstance(val_split, int) or val_split < 0:
            raise ValueError(f"`val_split` must be an int >= 0 (held-out training images), got {val_split!r}.")
        if isinstance(decode_workers, bool) or not isinstance(decode_workers, int) or decode_workers < 1:
            raise ValueError(f"`decode_workers` must be an int >= 1, got {decode_workers!r}.")
        if isinstance(split_seed, bool) or not isinstance(split_seed, int):
            raise TypeError(f"`split_seed` must be an int, got {split_seed!r}.")
        if not isinstance(download, bool):
            raise TypeError(f"`download` must be a bool, got {download!r}.")
        super().__init__(num_classes=num_classes, in_channels=3, image_size=32, mean=mean, std=std,
                         batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
                         pin_memory=pin_memory, augment=augment, crop_padding=crop_padding, flip=flip)
        self.root = Path(root).expanduser()
        self.download = download
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.val_split = val_split
        self.split_seed = split_seed
        self.decode_workers = decode_workers
        self.classes: tuple[str, ...] | None = None
        self._decoded: DecodedData | None = None

    # -- decoding and cache ---------------------------------------------------------------------------------
    def _locate(self) -> Source:
        try:
            return find_source(self.root)
        except DatasetError:
            if not self.download or self.root.is_file():
                raise
        rank_zero_info(f"Downloading CIFAR-10 from {_download.CIFAR10_URL} into {self.root}")
        _download.download_cifar10(self.root)
        return find_source(self.root)

    def cache_file(self, source: Source | None = None) -> Path:
        """The ``.npz`` cache path for the current source files (found under ``root`` unless given)."""
        source = source or self._locate()
        return cache_path(self.cache_dir, "cifar10", cache_key(source, num_classes=self.num_classes, image_size=32))

    def decoded(self) -> DecodedData:
        """Both official splits as uint8 arrays: from the cache, or decoded once and cached."""
        if self._decoded is not None:
            return self._decoded
        source = self._locate()
        path = self.cache_file(source)
        data = load_cache(path)
        if data is None:
            rank_zero_info(f"Decoding CIFAR-10 from {', '.join(map(str, source.paths))} (once; cached in {path})")
            data = read_source(source, self.num_classes, 32, self.decode_workers)
            try:
                save_cache(path, data)
            except OSError as err:
                rank_zero_warn(f"Could not write the CIFAR-10 cache {path} ({err}); it will be decoded again next "
                               "time. Set `cache_dir` to a writable folder.")
        self._decoded = data
        return data

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_decoded"] = None  # do not ship the decoded copy to spawned processes; they read the cache
        return state

    def prepare_data(self) -> None:
        """Download (if asked) and fill the cache; runs on one process per node."""
        self.decoded()

    # -- splits -----------------------------------------------------------------------------------------------
    def load_splits(self) -> dict[str, ImageSplit]:
        data = self.decoded()
        self._decoded = None  # the splits below hold the data from now on
        self.classes = data.classes
        train = ImageSplit(torch.from_numpy(data.train_images), torch.from_numpy(data.train_labels))
        test = ImageSplit(torch.from_numpy(data.test_images), torch.from_numpy(data.test_labels))
        if self.val_split >= len(train):
            raise DatasetError(f"`val_split` must be smaller than the {len(train)} training images, got "
                               f"{self.val_split!r}.")
        if self.val_split == 0:
            rank_zero_warn("CIFAR10DataModule(val_split=0): validating on the test set (the papers' protocol); "
                           "model selection and early stopping then see the test set.")
            return {"train": train, "val": test, "test": test}
        kept, held = stratified_holdout(data.train_labels, self.val_split, self.split_seed)
        return {"train": train.subset(torch.from_numpy(kept)), "val": train.subset(torch.from_numpy(held)),
                "test": test}
