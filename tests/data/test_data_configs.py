"""conf/data/*.yaml: declared shape keys, commented arguments, and instantiation into the datamodules."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
from hydra.errors import InstantiationException
from omegaconf import OmegaConf

from lightning_compress.config import CONFIG_DIR
from lightning_compress.data import CIFAR10DataModule, DigitsDataModule, SyntheticDataModule

EXPECTED = {
    "digits": (DigitsDataModule, 10, 1, 8, 64),
    "cifar10": (CIFAR10DataModule, 10, 3, 32, 128),
    "synthetic": (SyntheticDataModule, 10, 3, 32, 64),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_data_yaml_declares_the_shape_and_comments_every_argument(name):
    path = Path(CONFIG_DIR) / "data" / f"{name}.yaml"
    raw = OmegaConf.load(path)
    for key in ("_target_", "num_classes", "in_channels", "image_size", "batch_size", "num_workers"):
        assert key in raw, f"{path} lacks {key}"
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#") and ":" in ln]
    uncommented = [ln for ln in lines if "#" not in ln and not ln.startswith("_target_")]
    assert not uncommented, f"{path}: arguments without a comment: {uncommented}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_composed_data_config_instantiates_with_all_its_keys(compose_config, name):
    cfg = compose_config(f"data={name}")
    cls, classes, channels, size, batch = EXPECTED[name]
    assert (cfg.data.num_classes, cfg.data.in_channels, cfg.data.image_size) == (classes, channels, size)
    dm = hydra.utils.instantiate(cfg.data)  # the declared shape keys are accepted (and checked) too
    assert isinstance(dm, cls)
    assert (dm.num_classes, dm.in_channels, dm.image_size, dm.batch_size) == (classes, channels, size, batch)
    assert dm.splits is None


def test_cifar10_config_points_at_the_shared_copy_and_the_cache_dir(compose_config):
    cfg = compose_config("data=cifar10")
    assert Path(cfg.data.root).resolve() == (Path(CONFIG_DIR).parent / ".." / "shared" / "datasets"
                                             / "cifar10-jpeg").resolve()
    assert cfg.data.cache_dir == cfg.paths.cache_dir
    dm = hydra.utils.instantiate(cfg.data)
    assert dm.cache_dir == Path(cfg.paths.cache_dir) and dm.val_split == 5000 and dm.augment


def test_synthetic_shape_overrides_reach_the_datamodule(compose_config):
    cfg = compose_config("data=synthetic", "data.num_classes=3", "data.in_channels=1", "data.image_size=8")
    dm = hydra.utils.instantiate(cfg.data)
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (3, 1, 8)
    assert dm.example_input(2).shape == (2, 1, 8, 8)


def test_fixed_shape_declarations_are_checked(compose_config):
    cfg = compose_config("data=digits", "data.image_size=16")
    with pytest.raises(InstantiationException, match="`image_size` must be 8"):
        hydra.utils.instantiate(cfg.data)
