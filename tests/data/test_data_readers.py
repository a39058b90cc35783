"""CIFAR-10 readers on tiny sources written in the official formats, and every bad-input case."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from data_writers import encode, python_batch_bytes, tar_folder, tiny_images, write_image_folder, write_python_dir

from lightning_compress.data import DatasetError
from lightning_compress.data.readers import (
    CIFAR10_CLASSES,
    RestrictedUnpickler,
    decode_images,
    find_source,
    read_python_batch,
    read_source,
)

KINDS = ["python_dir", "python_archive", "image_dir", "image_archives"]


def read(root: Path, num_classes: int = 10, workers: int = 1):
    return read_source(find_source(root), num_classes=num_classes, image_size=32, workers=workers)


# ------------------------------------------------------------------------------------------------ good sources
@pytest.mark.parametrize("kind", KINDS)
def test_every_layout_reads_to_uint8_arrays(make_source, kind):
    data = read(make_source(kind))
    n_train, n_test = (100, 20) if kind.startswith("python") else (30, 20)
    assert data.train_images.shape == (n_train, 3, 32, 32) and data.train_images.dtype == np.uint8
    assert data.test_images.shape == (n_test, 3, 32, 32) and data.test_images.dtype == np.uint8
    assert data.train_labels.dtype == np.int64 and data.train_labels.shape == (n_train,)
    assert np.bincount(data.train_labels, minlength=10).tolist() == [n_train // 10] * 10
    assert data.classes == CIFAR10_CLASSES


def test_python_batches_keep_pixels_and_labels(python_dir):
    data = read(python_dir)
    images, labels = tiny_images(20, seed=0)  # data_batch_1
    np.testing.assert_array_equal(data.train_images[:20], images)
    np.testing.assert_array_equal(data.train_labels[:20], labels)
    test_images, _ = tiny_images(20, seed=5)
    np.testing.assert_array_equal(data.test_images, test_images)


@pytest.mark.parametrize("where", ["batches_dir", "parent_of_batches_dir", "archive_file", "parent_of_archive"])
def test_python_layout_is_found_from_each_accepted_root(python_dir, python_archive, where):
    root = {"batches_dir": python_dir, "parent_of_batches_dir": python_dir.parent,
            "archive_file": python_archive, "parent_of_archive": python_archive.parent}[where]
    assert len(read(root).train_labels) == 100


def test_image_folder_labels_follow_cifar_order_and_pixels_survive_png(image_dir):
    data = read(image_dir)
    cat = CIFAR10_CLASSES.index("cat")
    expected, _ = tiny_images(3, seed=1000 * cat + len("train"))
    np.testing.assert_array_equal(data.train_images[data.train_labels == cat], expected)


def test_non_cifar_class_names_are_sorted(tmp_path):
    root = write_image_folder(tmp_path / "pets", {"train": 2, "test": 1}, classes=("zebra", "apple", "mango"))
    data = read(root, num_classes=3)
    assert data.classes == ("apple", "mango", "zebra")
    assert np.bincount(data.train_labels).tolist() == [2, 2, 2]


def test_single_archive_with_both_splits(tmp_path):
    tree = write_image_folder(tmp_path / "tree")
    archive = tar_folder(tree, tmp_path / "all.tar.gz", "cifar10")
    data = read(archive)
    assert (len(data.train_labels), len(data.test_labels)) == (30, 20)


def test_jpeg_folder_decodes_close_to_the_original(tmp_path):
    root = write_image_folder(tmp_path / "jpg", {"train": 1, "test": 1}, fmt="JPEG")
    data = read(root)
    assert data.train_images.shape == (10, 3, 32, 32)


def test_parallel_decoding_matches_in_process(tmp_path):
    images, _ = tiny_images(2100, seed=3)
    items = [(f"img{i}", encode(img, "PNG")) for i, img in enumerate(images)]
    np.testing.assert_array_equal(decode_images(items, 32, workers=2), images)
    items[1500] = ("bad/one.jpg", b"garbage")
    with pytest.raises(DatasetError, match="bad/one.jpg: cannot be decoded") as err:
        decode_images(items, 32, workers=2)  # raised in a worker process
    assert err.value.__cause__ is None and err.value.__suppress_context__  # one error, no remote traceback


# ------------------------------------------------------------------------------------------------ bad input
def test_missing_root_names_the_path(tmp_path):
    with pytest.raises(DatasetError, match="does not exist") as err:
        find_source(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)


def test_wrong_layout_lists_the_accepted_layouts(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match="unknown layout") as err:
        find_source(tmp_path)
    for hint in ("notes.txt", "cifar-10-batches-py", "cifar-10-python.tar.gz", "{train,test}"):
        assert hint in str(err.value)


def test_plain_file_root_is_rejected(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"\0" * 10)
    with pytest.raises(DatasetError, match="not a .tar.gz"):
        find_source(path)


@pytest.mark.parametrize("kind", ["python_archive", "image_archives"])
def test_truncated_archive(make_source, kind):
    root = make_source(kind)
    archive = root if root.is_file() else root / "train.tar.gz"
    raw = archive.read_bytes()
    archive.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match="truncated or corrupt archive") as err:
        read(root)
    assert str(archive) in str(err.value)


def test_not_gzip_archive(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(b"this is not an archive at all" * 10)
    with pytest.raises(DatasetError, match="truncated or corrupt archive"):
        read(tmp_path)


def test_undecodable_image_in_folder_names_the_file(image_dir):
    bad = image_dir / "test" / "dog" / "0001.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match="cannot be decoded as an image") as err:
        read(image_dir)
    assert str(bad) in str(err.value) and "UnidentifiedImageError" in str(err.value)
    assert err.value.__suppress_context__  # no chained PIL traceback


def test_undecodable_image_in_archive_names_archive_and_member(tmp_path):
    tree = write_image_folder(tmp_path / "tree")
    (tree / "train" / "cat" / "0000.png").write_bytes(b"garbage")
    out = tmp_path / "src"
    out.mkdir()
    for split in ("train", "test"):
        tar_folder(tree / split, out / f"{split}.tar.gz", f"x/{split}")
    with pytest.raises(DatasetError, match="cannot be decoded") as err:
        read(out)
    assert f"{out / 'train.tar.gz'}:x/train/cat/0000.png" in str(err.value)


def test_wrong_image_size(image_dir):
    small = np.zeros((3, 16, 16), dtype=np.uint8)
    (image_dir / "train" / "cat" / "0000.png").write_bytes(encode(small, "PNG"))
    with pytest.raises(DatasetError, match="is 16x16, expected 32x32"):
        read(image_dir)


def test_split_missing_from_archives(tmp_path):
    tree = write_image_folder(tmp_path / "tree")
    archive = tar_folder(tree / "train", tmp_path / "train.tar.gz", "cifar10-jpeg/train")
    with pytest.raises(DatasetError, match="no test images found"):
        read(archive)


def test_archive_without_known_members(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "readme.txt").write_text("x")
    archive = tar_folder(tmp_path / "stuff", tmp_path / "stuff.tar.gz", "stuff")
    with pytest.raises(DatasetError, match="holds neither"):
        read(archive)


def test_class_folders_differ_between_splits(image_dir):
    for f in (image_dir / "test" / "truck").iterdir():
        f.unlink()
    (image_dir / "test" / "truck").rmdir()
    with pytest.raises(DatasetError, match="differ from test classes"):
        read(image_dir)


def test_class_count_must_match(image_dir):
    with pytest.raises(DatasetError, match="found 10 classes .* expected 100"):
        read(image_dir, num_classes=100)


def test_pickle_batch_missing_key_names_file_and_key(tmp_path):
    folder = write_python_dir(tmp_path / "cifar-10-batches-py", drop="labels")
    with pytest.raises(DatasetError, match="missing key b'labels'") as err:
        read(folder)
    assert str(folder / "data_batch_3") in str(err.value)


def test_missing_python_batch(python_dir):
    (python_dir / "data_batch_5").unlink()
    with pytest.raises(DatasetError, match=r"missing python batches \['data_batch_5'\]"):
        read(python_dir)


def test_python_batch_wrong_data_shape(python_dir):
    images, labels = tiny_images(4, seed=0, size=16)
    (python_dir / "data_batch_2").write_bytes(python_batch_bytes(images, labels))
    with pytest.raises(DatasetError, match="data_batch_2: b'data' is uint8 of shape \\(4, 768\\)"):
        read(python_dir)


def test_python_batch_labels_out_of_range(python_dir):
    images, labels = tiny_images(20, seed=0)
    (python_dir / "test_batch").write_bytes(python_batch_bytes(images, labels + 5))
    with pytest.raises(DatasetError, match="labels range 5..14, expected 0..9"):
        read(python_dir)


def test_python_batch_garbage(python_dir):
    (python_dir / "data_batch_1").write_bytes(b"\x00\x01garbage")
    with pytest.raises(DatasetError, match="cannot be read as a CIFAR-10 python batch") as err:
        read(python_dir)
    assert str(python_dir / "data_batch_1") in str(err.value)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_code_execution(tmp_path):
    marker = tmp_path / "pwned"
    raw = pickle.dumps({b"data": _Exploit(marker), b"labels": []}, protocol=2)
    with pytest.raises(DatasetError, match="is not allowed"):
        read_python_batch(raw, "evil_batch")
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):
        RestrictedUnpickler(io.BytesIO(pickle.dumps(tarfile.open, protocol=2))).load()


def test_restricted_unpickler_reads_numpy_arrays_of_any_protocol():
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for protocol in (2, 4, 5):
        out = RestrictedUnpickler(io.BytesIO(pickle.dumps({b"a": arr}, protocol=protocol)), encoding="bytes").load()
        np.testing.assert_array_equal(out[b"a"], arr)


def test_errors_are_value_errors():
    assert issubclass(DatasetError, ValueError)
