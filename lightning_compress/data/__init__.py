"""LightningDataModules (digits, CIFAR-10, synthetic) holding uint8 images in memory; transforms run per batch."""

from lightning_compress.data.base import InMemoryImageDataModule
from lightning_compress.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD, CIFAR10DataModule
from lightning_compress.data.digits import DigitsDataModule
from lightning_compress.data.errors import DatasetError
from lightning_compress.data.readers import CIFAR10_CLASSES
from lightning_compress.data.synthetic import SyntheticDataModule

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR10DataModule",
    "DatasetError",
    "DigitsDataModule",
    "InMemoryImageDataModule",
    "SyntheticDataModule",
]
