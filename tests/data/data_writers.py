"""Writers of tiny CIFAR-10 sources in the official formats (imported by tests/data tests and fixtures)."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from lightning_compress.data.readers import CIFAR10_CLASSES

REAL_CIFAR = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "cifar10-jpeg"


def tiny_images(n: int, seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random uint8 images (N, 3, S, S) and labels cycling over the 10 classes."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8), np.arange(n, dtype=np.int64) % 10


def python_batch_bytes(images: np.ndarray, labels: np.ndarray, drop: str | None = None) -> bytes:
    """One batch in the official format: protocol-2 pickle of a dict with bytes keys (as written by Python 2)."""
    batch = {b"batch_label": b"tiny", b"data": images.reshape(len(images), -1), b"labels": [int(v) for v in labels],
             b"filenames": [f"{i}.png".encode() for i in range(len(images))]}
    if drop is not None:
        del batch[drop.encode()]
    return pickle.dumps(batch, protocol=2)


def write_python_dir(folder: Path, per_batch: int = 20, drop: str | None = None) -> Path:
    """A ``cifar-10-batches-py`` folder with 5 training batches and a test batch of ``per_batch`` images each."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        images, labels = tiny_images(per_batch, seed=i)
        (folder / name).write_bytes(python_batch_bytes(images, labels, drop if name == "data_batch_3" else None))
    meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_cases_per_batch": per_batch}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def tar_folder(folder: Path, archive: Path, arcname: str) -> Path:
    """``folder`` packed as ``archive`` (tar.gz) under the member prefix ``arcname``."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=arcname)
    return archive


def encode(image: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image.transpose(1, 2, 0)).save(buf, format=fmt)
    return buf.getvalue()


def write_image_folder(root: Path, per_class: dict[str, int] | None = None, fmt: str = "PNG",
                       classes: tuple[str, ...] = CIFAR10_CLASSES) -> Path:
    """``root/{train,test}/<class>/<NNNN>.png`` with ``per_class[split]`` random images per class (lossless PNG)."""
    per_class = per_class or {"train": 3, "test": 2}
    ext = ".png" if fmt == "PNG" else ".jpg"
    for split, count in per_class.items():
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            images, _ = tiny_images(count, seed=1000 * c + len(split))
            for i, image in enumerate(images):
                (folder / f"{i:04d}{ext}").write_bytes(encode(image, fmt))
    return root
