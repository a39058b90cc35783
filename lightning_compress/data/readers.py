"""Readers of the CIFAR-10 layouts on disk into uint8 arrays; every failure is a :class:`DatasetError`.

Errors from pickle, PIL and tarfile are re-raised ``from None`` as one :class:`DatasetError` whose message names
the file (``archive:member`` inside archives), the original error and what was expected: no deep traceback.

Accepted layouts of ``root`` (checked in this order):

1. the official python batches: a folder holding ``data_batch_1..5`` and ``test_batch`` (``cifar-10-batches-py``),
   a folder containing ``cifar-10-batches-py/``, a folder containing ``cifar-10-python.tar.gz``, or that archive;
2. an image folder ``<root>/{train,test}/<class>/*.{jpg,jpeg,png}``;
3. image archives ``<root>/{train,test}.tar.gz`` whose members are ``[<prefix>/]<split>/<class>/<image>``
   (like ``shared/datasets/cifar10-jpeg``), or one ``.tar.gz`` holding both splits.
"""

from __future__ import annotations

import concurrent.futures
import io
import multiprocessing
import os
import pickle
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from lightning_compress.data.errors import DatasetError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
PYTHON_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
PYTHON_TEST_BATCH = "test_batch"
PYTHON_DIR = "cifar-10-batches-py"
PYTHON_ARCHIVE = "cifar-10-python.tar.gz"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "test")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")

LAYOUTS_HELP = (
    "expected one of: the official python batches (a folder with data_batch_1..5 and test_batch, i.e. "
    f"{PYTHON_DIR}/, or {PYTHON_ARCHIVE}, or a folder containing either); an image folder "
    "<root>/{train,test}/<class>/*.jpg|png; or image archives <root>/{train,test}.tar.gz with members "
    "[<prefix>/]<split>/<class>/<image>"
)


@dataclass(frozen=True)
class Source:
    """A located data source: ``kind`` is "python-dir", "archive" (python or image, decided on reading),
    "image-dir" or "image-archives"; ``paths`` are the files or folders it reads."""

    kind: str
    paths: tuple[Path, ...]


@dataclass
class DecodedData:
    """uint8 images (N, C, H, W) and int64 labels of both official splits, plus the class names in label order."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]


# ---------------------------------------------------------------------------------------------- layout detection
def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _split_archive(root: Path, split: str) -> Path | None:
    for suffix in ARCHIVE_SUFFIXES:
        if (root / f"{split}{suffix}").is_file():
            return root / f"{split}{suffix}"
    return None


def find_source(root: str | os.PathLike) -> Source:
    """Locate the data under ``root`` (see the module docstring for the accepted layouts)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"`root` {str(root)!r} does not exist; {LAYOUTS_HELP} (or set download: true).")
    if root.is_file():
        if _is_archive(root):
            return Source("archive", (root,))
        raise DatasetError(f"`root` {str(root)!r} is a file but not a .tar.gz/.tgz/.tar archive; {LAYOUTS_HELP}.")
    if (root / PYTHON_TRAIN_BATCHES[0]).is_file():
        return Source("python-dir", (root,))
    if (root / PYTHON_DIR).is_dir():
        return Source("python-dir", (root / PYTHON_DIR,))
    if (root / PYTHON_ARCHIVE).is_file():
        return Source("archive", (root / PYTHON_ARCHIVE,))
    if all((root / split).is_dir() for split in SPLITS):
        return Source("image-dir", (root,))
    archives = [_split_archive(root, split) for split in SPLITS]
    if all(archives):
        return Source("image-archives", tuple(a for a in archives if a is not None))
    entries = sorted(p.name for p in root.iterdir())
    shown = ", ".join(entries[:10]) + (", ..." if len(entries) > 10 else "") if entries else "nothing"
    raise DatasetError(f"`root` {str(root)!r} has an unknown layout (it holds {shown}); {LAYOUTS_HELP}.")


def source_files(source: Source) -> list[Path]:
    """Every file the source reads (for the cache key)."""
    files: list[Path] = []
    for path in source.paths:
        if path.is_file():
            files.append(path)
        elif source.kind == "image-dir":
            for split in SPLITS:
                files.extend(p for p in (path / split).rglob("*") if p.is_file())
        else:
            files.extend(p for p in path.iterdir() if p.is_file())
    return sorted(files)


# ---------------------------------------------------------------------------------------------- python batches
def _numpy_globals() -> dict[tuple[str, str], object]:
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric
    found = {"_reconstruct": multiarray._reconstruct, "scalar": multiarray.scalar, "_frombuffer": numeric._frombuffer}
    allowed: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                              ("_codecs", "encode"): __import__("codecs").encode}
    for package in ("numpy.core", "numpy._core"):
        for name in ("_reconstruct", "scalar"):
            allowed[(f"{package}.multiarray", name)] = found[name]
        allowed[(f"{package}.numeric", "_frombuffer")] = found["_frombuffer"]
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can only build plain containers and numpy arrays.

    The official CIFAR-10 archive is a set of pickles, and plain ``pickle.load`` runs any callable a file names,
    so a tampered download or a wrong file could execute code. Only the globals that numpy arrays need (array
    reconstruction, ``ndarray``, ``dtype``, and ``codecs.encode`` used for bytes in protocol-2 pickles) are allowed;
    anything else is refused.
    """

    _allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> object:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a data file") from None


def _get(batch: dict, key: str) -> object:
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise KeyError(key)


def read_python_batch(raw: bytes, where: str, image_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch (dict with b'data' uint8 (N, 3*S*S) and b'labels') to (N, 3, S, S) uint8 and labels."""
    expected = f"a pickled dict with b'data' (uint8, N x {3 * image_size * image_size}) and b'labels' (N ints)"
    try:
        batch = RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as err:  # any unpickling failure of a foreign file: report it as a data error
        raise DatasetError(f"{where}: cannot be read as a CIFAR-10 python batch ({type(err).__name__}: {err}); "
                           f"expected {expected}.") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"{where}: holds a {type(batch).__name__}, expected {expected}.")
    try:
        data, labels = _get(batch, "data"), _get(batch, "labels")
    except KeyError as err:
        keys = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in batch)
        raise DatasetError(f"{where}: missing key b'{err.args[0]}' (has {keys}); expected {expected}.") from None
    data = np.asarray(data)
    labels_arr = np.asarray(labels)
    width = 3 * image_size * image_size
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != width:
        raise DatasetError(f"{where}: b'data' is {data.dtype} of shape {data.shape}, expected {expected}.")
    if labels_arr.ndim != 1 or labels_arr.shape[0] != data.shape[0] or not np.issubdtype(labels_arr.dtype, np.integer):
        raise DatasetError(f"{where}: b'labels' has shape {labels_arr.shape} ({labels_arr.dtype}) for "
                           f"{data.shape[0]} images; expected {expected}.")
    return data.reshape(-1, 3, image_size, image_size), labels_arr.astype(np.int64)


def _archive_error(path: Path, err: BaseException) -> DatasetError:
    return DatasetError(f"{path}: truncated or corrupt archive ({type(err).__name__}: {err}); expected a complete "
                        f".tar.gz archive; {LAYOUTS_HELP}.")


def _iter_archive(path: Path) -> Iterator[tuple[PurePosixPath, bytes]]:
    """(member path, content) of every regular file of a tar archive, streamed once."""
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                if member.isfile():
                    handle = tar.extractfile(member)
                    if handle is not None:
                        yield PurePosixPath(member.name), handle.read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise _archive_error(path, err) from None


def _assemble_python(batches: dict[str, tuple[np.ndarray, np.ndarray]], where: str, classes: tuple[str, ...],
                     num_classes: int) -> DecodedData:
    missing = [n for n in (*PYTHON_TRAIN_BATCHES, PYTHON_TEST_BATCH) if n not in batches]
    if missing:
        raise DatasetError(f"{where}: missing python batches {missing}; expected data_batch_1..5 and test_batch.")
    train = [batches[n] for n in PYTHON_TRAIN_BATCHES]
    test = batches[PYTHON_TEST_BATCH]
    train_labels = np.concatenate([lab for _, lab in train])
    for labels in (train_labels, test[1]):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise DatasetError(f"{where}: labels range {labels.min()}..{labels.max()}, expected 0..{num_classes - 1}.")
    return DecodedData(np.concatenate([img for img, _ in train]), train_labels, test[0], test[1], classes)


def _python_classes(raw: bytes | None, where: str, num_classes: int) -> tuple[str, ...]:
    if raw is not None:
        try:
            meta = RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
            names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in _get(meta, "label_names"))
        except Exception as err:  # a broken meta file is reported like a broken batch
            raise DatasetError(f"{where}: cannot read batches.meta ({type(err).__name__}: {err}); expected a "
                               "pickled dict with b'label_names'.") from None
        if len(names) == num_classes:
            return names
    return CIFAR10_CLASSES if num_classes == len(CIFAR10_CLASSES) else tuple(str(i) for i in range(num_classes))


def read_python_dir(folder: Path, num_classes: int = 10, image_size: int = 32) -> DecodedData:
    """The extracted ``cifar-10-batches-py`` folder."""
    batches = {}
    for name in (*PYTHON_TRAIN_BATCHES, PYTHON_TEST_BATCH):
        path = folder / name
        if path.is_file():
            batches[name] = read_python_batch(path.read_bytes(), str(path), image_size)
    meta = folder / "batches.meta"
    classes = _python_classes(meta.read_bytes() if meta.is_file() else None, str(meta), num_classes)
    return _assemble_python(batches, str(folder), classes, num_classes)


# ---------------------------------------------------------------------------------------------- image folders
def decode_image(raw: bytes, where: str, image_size: int) -> np.ndarray:
    """One encoded image to uint8 (3, S, S); a :class:`DatasetError` naming ``where`` if it cannot be."""
    try:
        with Image.open(io.BytesIO(raw)) as img:
            img.load()
            size = img.size
            rgb = np.asarray(img if img.mode == "RGB" else img.convert("RGB"), dtype=np.uint8)
    except Exception as err:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError, ...)
        raise DatasetError(f"{where}: cannot be decoded as an image ({type(err).__name__}: {err}); expected a "
                           f"{image_size}x{image_size} JPEG or PNG.") from None
    if size != (image_size, image_size):
        raise DatasetError(f"{where}: image is {size[0]}x{size[1]}, expected {image_size}x{image_size}.")
    return rgb.transpose(2, 0, 1)


def _decode_chunk(items: list[tuple[str, bytes]], image_size: int) -> np.ndarray:
    out = np.empty((len(items), 3, image_size, image_size), dtype=np.uint8)
    for i, (where, raw) in enumerate(items):
        out[i] = decode_image(raw, where, image_size)
    return out


class StreamingDecoder:
    """Decodes images while the caller keeps reading: full chunks go to ``workers`` processes (order is kept).

    The pool is started only once a first full chunk arrives (tiny sources decode in process). Workers are
    forked: they only use PIL and numpy and start without re-importing torch or Lightning. Inside a daemon
    process (which may not have children) or without fork, everything is decoded in process.
    """

    def __init__(self, image_size: int, workers: int = 2, chunk: int = 1024) -> None:
        self.image_size = image_size
        self.chunk = chunk
        self.parallel = (workers > 1 and "fork" in multiprocessing.get_all_start_methods()
                         and not multiprocessing.current_process().daemon)
        self.workers = workers
        self.pool: concurrent.futures.ProcessPoolExecutor | None = None
        self.pending: list[tuple[str, bytes]] = []
        self.parts: list[concurrent.futures.Future | np.ndarray] = []

    def add(self, where: str, raw: bytes) -> None:
        """Queue one encoded image (``where`` names it in errors)."""
        self.pending.append((where, raw))
        if len(self.pending) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        if self.pool is None and self.parallel and len(self.pending) >= self.chunk:
            self.pool = concurrent.futures.ProcessPoolExecutor(self.workers,
                                                               mp_context=multiprocessing.get_context("fork"))
        if self.pool is not None:
            self.parts.append(self.pool.submit(_decode_chunk, self.pending, self.image_size))
        else:
            self.parts.append(_decode_chunk(self.pending, self.image_size))
        self.pending = []

    def finish(self) -> np.ndarray:
        """All queued images as uint8 (N, 3, S, S), in the order they were added."""
        self._flush()
        try:
            arrays = [p.result() if isinstance(p, concurrent.futures.Future) else p for p in self.parts]
        except DatasetError as err:  # raised in a worker: drop the remote traceback, keep the message
            raise DatasetError(str(err)) from None
        finally:
            self.close()
        if not arrays:
            return np.empty((0, 3, self.image_size, self.image_size), dtype=np.uint8)
        return np.concatenate(arrays)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def __enter__(self) -> StreamingDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def decode_images(items: list[tuple[str, bytes]], image_size: int, workers: int = 2) -> np.ndarray:
    """Decode many ``(where, encoded bytes)`` images, in ``workers`` processes when there are enough of them."""
    with StreamingDecoder(image_size, workers) as decoder:
        for where, raw in items:
            decoder.add(where, raw)
        return decoder.finish()


def class_order(names: set[str]) -> tuple[str, ...]:
    """Standard CIFAR-10 label order when the folders are the CIFAR-10 class names, else sorted."""
    if names == set(CIFAR10_CLASSES):
        return CIFAR10_CLASSES
    return tuple(sorted(names))


def _image_member(path: PurePosixPath) -> tuple[str, str] | None:
    """(split, class) of an archive member ``[<prefix>/]<split>/<class>/<image>``, else None."""
    parts = path.parts
    if len(parts) >= 3 and parts[-3] in SPLITS and path.suffix.lower() in IMAGE_EXTENSIONS:
        return parts[-3], parts[-2]
    return None


class _ImageCollector:
    """Receives (split, class, name, bytes) in any order, decodes on the fly, sorts into labelled splits."""

    def __init__(self, image_size: int, workers: int) -> None:
        self.decoder = StreamingDecoder(image_size, workers)
        self.keys: list[tuple[str, str, str]] = []

    def add(self, split: str, cls: str, where: str, raw: bytes) -> None:
        self.keys.append((split, cls, where))
        self.decoder.add(where, raw)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def result(self, where: str) -> DecodedData:
        """Images of each split ordered by (label, file name); layout errors name ``where``."""
        decoded = self.decoder.finish()
        found = {split: {cls for s, cls, _ in self.keys if s == split} for split in SPLITS}
        for split in SPLITS:
            if not found[split]:
                raise DatasetError(f"{where}: no {split} images found; expected {split}/<class>/<image> "
                                   f"({', '.join(IMAGE_EXTENSIONS)}); {LAYOUTS_HELP}.")
        if found["train"] != found["test"]:
            raise DatasetError(f"{where}: train classes {sorted(found['train'])} differ from test classes "
                               f"{sorted(found['test'])}; expected the same class folders in both splits.")
        classes = class_order(found["train"])
        label = {name: i for i, name in enumerate(classes)}
        arrays: list[np.ndarray] = []
        for split in SPLITS:
            index = sorted((i for i, k in enumerate(self.keys) if k[0] == split),
                           key=lambda i: (label[self.keys[i][1]], self.keys[i][2]))
            labels = np.asarray([label[self.keys[i][1]] for i in index], dtype=np.int64)
            arrays.extend([decoded[np.asarray(index, dtype=np.int64)], labels])
        return DecodedData(*arrays, classes=classes)

    def close(self) -> None:
        self.decoder.close()


def read_image_dir(root: Path, image_size: int = 32, workers: int = 2) -> DecodedData:
    """``<root>/{train,test}/<class>/*.jpg|png``."""
    collector = _ImageCollector(image_size, workers)
    try:
        for split in SPLITS:
            for class_dir in sorted(p for p in (root / split).iterdir() if p.is_dir()):
                for path in sorted(class_dir.iterdir()):
                    if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
                        collector.add(split, class_dir.name, str(path), path.read_bytes())
        return collector.result(str(root))
    finally:
        collector.close()


def read_archives(paths: tuple[Path, ...], num_classes: int = 10, image_size: int = 32,
                  workers: int = 2) -> DecodedData:
    """One or more tar archives holding the python batches or image-folder members (decided by their content)."""
    collector = _ImageCollector(image_size, workers)
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    meta: bytes | None = None
    where = " + ".join(str(p) for p in paths)
    try:
        for path in paths:
            for member, raw in _iter_archive(path):
                name = f"{path}:{member}"
                if member.name in (*PYTHON_TRAIN_BATCHES, PYTHON_TEST_BATCH):
                    batches[member.name] = read_python_batch(raw, name, image_size)
                elif member.name == "batches.meta":
                    meta = raw
                elif (key := _image_member(member)) is not None:
                    collector.add(key[0], key[1], name, raw)
        if batches:
            return _assemble_python(batches, where, _python_classes(meta, where, num_classes), num_classes)
        if not collector:
            raise DatasetError(f"{where}: holds neither CIFAR-10 python batches nor <split>/<class>/<image> "
                               f"members; {LAYOUTS_HELP}.")
        return collector.result(where)
    finally:
        collector.close()


def read_source(source: Source, num_classes: int = 10, image_size: int = 32, workers: int = 2) -> DecodedData:
    """Decode a located source (no caching here) and check its class count."""
    if source.kind == "python-dir":
        data = read_python_dir(source.paths[0], num_classes, image_size)
    elif source.kind == "image-dir":
        data = read_image_dir(source.paths[0], image_size, workers)
    else:
        data = read_archives(source.paths, num_classes, image_size, workers)
    if len(data.classes) != num_classes:
        raise DatasetError(f"{' + '.join(map(str, source.paths))}: found {len(data.classes)} classes "
                           f"{list(data.classes)}, expected {num_classes}.")
    return data
