"""Fixtures of tests/data: tiny CIFAR-10 sources written in the official formats, and the real JPEG copy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from data_writers import REAL_CIFAR, tar_folder, write_image_folder, write_python_dir


@pytest.fixture
def python_dir(tmp_path: Path) -> Path:
    """An extracted official-format ``cifar-10-batches-py`` (5 x 20 training, 20 test images)."""
    return write_python_dir(tmp_path / "src" / "cifar-10-batches-py")


@pytest.fixture
def python_archive(tmp_path: Path) -> Path:
    """An official-format ``cifar-10-python.tar.gz`` (members ``cifar-10-batches-py/...``)."""
    folder = write_python_dir(tmp_path / "build" / "cifar-10-batches-py")
    (tmp_path / "src").mkdir(exist_ok=True)
    return tar_folder(folder, tmp_path / "src" / "cifar-10-python.tar.gz", "cifar-10-batches-py")


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """An image folder ``train/<class>/*.png`` (3 per class) and ``test/<class>/*.png`` (2 per class)."""
    return write_image_folder(tmp_path / "src" / "images")


@pytest.fixture
def make_source(tmp_path: Path) -> Callable[[str], Path]:
    """``make_source(kind)`` for kind in python_dir, python_archive, image_dir, image_archives."""

    def _make(kind: str) -> Path:
        base = tmp_path / kind
        if kind == "python_dir":
            return write_python_dir(base / "cifar-10-batches-py")
        if kind == "python_archive":
            folder = write_python_dir(base / "build" / "cifar-10-batches-py")
            return tar_folder(folder, base / "cifar-10-python.tar.gz", "cifar-10-batches-py")
        if kind == "image_dir":
            return write_image_folder(base / "images")
        tree = write_image_folder(base / "build")
        for split in ("train", "test"):
            tar_folder(tree / split, base / f"{split}.tar.gz", f"cifar10-jpeg/{split}")
        return base

    return _make


@pytest.fixture(scope="session")
def real_cifar_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide cache folder for the real CIFAR-10 copy (decoded at most once per test session)."""
    if not REAL_CIFAR.is_dir():
        pytest.skip(f"the real CIFAR-10 copy is absent ({REAL_CIFAR})")
    return tmp_path_factory.mktemp("cifar_cache")
