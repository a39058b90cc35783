"""CIFAR10DataModule on tiny sources: cache reuse and invalidation, validation split, download, read-only root."""

from __future__ import annotations

import os
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_compress.data import CIFAR10DataModule, DatasetError, download
from lightning_compress.data import cifar10 as cifar10_module
from lightning_compress.data.readers import read_source

pytestmark = pytest.mark.filterwarnings(r"ignore:CIFAR10DataModule\(val_split=0\)")


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")} if root.is_dir() else {
        root.name: root.stat().st_mtime_ns}


@pytest.fixture
def count_decodes(monkeypatch):
    """Counts calls of the (uncached) decoder used by the datamodule."""
    calls = []

    def counting(*args, **kwargs):
        calls.append(args)
        return read_source(*args, **kwargs)

    monkeypatch.setattr(cifar10_module, "read_source", counting)
    return calls


@pytest.mark.parametrize("kind", ["python_dir", "python_archive", "image_dir", "image_archives"])
def test_decodes_once_then_reuses_the_cache_and_never_writes_into_root(make_source, tmp_path, count_decodes, kind):
    root = make_source(kind)
    before = _tree(root)
    cache = tmp_path / "cache"
    first = CIFAR10DataModule(root, cache_dir=cache, val_split=10)
    first.prepare_data()
    first.setup("fit")
    assert len(count_decodes) == 1
    assert [p.suffix for p in cache.iterdir()] == [".npz"]
    second = CIFAR10DataModule(root, cache_dir=cache, val_split=10)
    second.prepare_data()
    second.setup("fit")
    assert len(count_decodes) == 1  # served from the cache
    for name in ("train", "val", "test"):
        assert torch.equal(first.split(name).images, second.split(name).images)
    assert _tree(root) == before


def test_changed_source_is_decoded_again(python_dir, tmp_path, count_decodes):
    cache = tmp_path / "cache"
    CIFAR10DataModule(python_dir, cache_dir=cache, val_split=0).setup()
    batch = python_dir / "test_batch"
    stat = batch.stat()
    os.utime(batch, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    CIFAR10DataModule(python_dir, cache_dir=cache, val_split=0).setup()
    assert len(count_decodes) == 2
    assert len(list(cache.iterdir())) == 2


def test_corrupt_cache_is_decoded_again(python_dir, tmp_path, count_decodes):
    cache = tmp_path / "cache"
    dm = CIFAR10DataModule(python_dir, cache_dir=cache, val_split=0)
    dm.setup()
    dm.cache_file().write_bytes(b"not a zip")
    CIFAR10DataModule(python_dir, cache_dir=cache, val_split=0).setup()
    assert len(count_decodes) == 2


def test_unwritable_cache_warns_and_still_loads(python_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    dm = CIFAR10DataModule(python_dir, cache_dir=blocker / "cache", val_split=0)
    with pytest.warns(UserWarning, match="Could not write the CIFAR-10 cache"):
        dm.setup()
    assert len(dm.split("train")) == 100


def test_validation_split_is_stratified_seeded_and_disjoint(python_dir, tmp_path):
    dm = CIFAR10DataModule(python_dir, cache_dir=tmp_path / "c", val_split=20, split_seed=1)
    dm.setup()
    train, val, test = dm.split("train"), dm.split("val"), dm.split("test")
    assert (len(train), len(val), len(test)) == (80, 20, 20)
    assert torch.bincount(val.labels, minlength=10).tolist() == [2] * 10
    assert torch.bincount(train.labels, minlength=10).tolist() == [8] * 10
    all_train = {img.numpy().tobytes() for img in torch.cat([train.images, val.images])}
    assert len(all_train) == 100  # disjoint and together the whole official training set
    again = CIFAR10DataModule(python_dir, cache_dir=tmp_path / "c", val_split=20, split_seed=1)
    again.setup()
    assert torch.equal(again.split("val").images, val.images)
    other = CIFAR10DataModule(python_dir, cache_dir=tmp_path / "c", val_split=20, split_seed=2)
    other.setup()
    assert not torch.equal(other.split("val").images, val.images)


def test_val_split_zero_validates_on_test_with_a_warning(python_dir, tmp_path):
    dm = CIFAR10DataModule(python_dir, cache_dir=tmp_path / "c", val_split=0)
    with pytest.warns(UserWarning, match="validating on the test set"):
        dm.setup()
    assert len(dm.split("train")) == 100 and dm.split("val") is dm.split("test")


def test_val_split_too_large(python_dir, tmp_path):
    with pytest.raises(DatasetError, match="`val_split` must be smaller than the 100 training images"):
        CIFAR10DataModule(python_dir, cache_dir=tmp_path / "c", val_split=100).setup()
    with pytest.raises(ValueError, match="`val_split` must be an int >= 0"):
        CIFAR10DataModule(python_dir, val_split=-1)


def test_missing_root_without_download(tmp_path):
    dm = CIFAR10DataModule(tmp_path / "nowhere", cache_dir=tmp_path / "c")
    with pytest.raises(DatasetError, match="does not exist"):
        dm.prepare_data()


@pytest.fixture
def fake_fetch(monkeypatch, python_archive):
    """Replace the network fetch with a copy of a tiny official-format archive."""
    fetched = []

    def fetch(url: str, dest: Path, timeout: float = 60.0) -> None:
        fetched.append(url)
        shutil.copyfile(python_archive, dest)

    monkeypatch.setattr(download, "fetch_url", fetch)
    return fetched, download.file_md5(python_archive)


def test_download_fetches_the_official_url_checks_md5_and_loads(monkeypatch, fake_fetch, tmp_path):
    fetched, md5 = fake_fetch
    monkeypatch.setattr(download, "CIFAR10_MD5", md5)
    root = tmp_path / "new_root"
    dm = CIFAR10DataModule(root, download=True, cache_dir=tmp_path / "c", val_split=0)
    dm.prepare_data()
    dm.setup()
    assert fetched == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-python.tar.gz"]
    assert len(dm.split("train")) == 100
    CIFAR10DataModule(root, download=True, cache_dir=tmp_path / "c", val_split=0).prepare_data()
    assert len(fetched) == 1  # already there: no second download


def test_download_with_wrong_md5_leaves_nothing(fake_fetch, tmp_path):
    root = tmp_path / "new_root"
    dm = CIFAR10DataModule(root, download=True, cache_dir=tmp_path / "c")
    with pytest.raises(DatasetError, match="has md5 [0-9a-f]{32}, expected c58f30108f718f92721af3b95e74349a"):
        dm.prepare_data()
    assert list(root.iterdir()) == []


def test_download_network_failure_is_a_dataset_error(monkeypatch, tmp_path):
    def fail(url, dest, timeout=60.0):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(download, "fetch_url", fail)
    with pytest.raises(DatasetError, match="could not download https://www.cs.toronto.edu"):
        CIFAR10DataModule(tmp_path / "r", download=True, cache_dir=tmp_path / "c").prepare_data()


def test_computed_statistics_when_mean_std_are_none(python_dir, tmp_path):
    dm = CIFAR10DataModule(python_dir, cache_dir=tmp_path / "c", val_split=0, mean=None, std=None)
    dm.setup()
    pixels = dm.split("train").images.numpy() / 255.0
    np.testing.assert_allclose(dm.mean, pixels.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(dm.std, pixels.std(axis=(0, 2, 3)), rtol=1e-6)
