"""The app with a user's own data module (issue 29, item 6): the contract is checked before any training, shape keys
it does not accept are not passed to it, and one without ``example_input`` gets one from the declared shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf, open_dict
from torch.utils.data import DataLoader, TensorDataset

from lightning_compress.pipeline import run
from lightning_compress.pipeline.builders import build_datamodule


class UserData(pl.LightningDataModule):
    """A user's data module: random 1x8x8 images of 4 classes; accepts only ``batch_size``; no ``example_input``."""

    def __init__(self, batch_size: int = 16) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.data = TensorDataset(torch.rand(48, 1, 8, 8, generator=generator),
                                  torch.randint(0, 4, (48,), generator=generator))
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=self.batch_size)


USER_DATA = {"_target_": "tests.test_user_data.UserData", "num_classes": 4, "in_channels": 1, "image_size": 8,
             "batch_size": 16}


def test_user_data_module_is_built_with_the_keys_it_accepts_and_an_example_input() -> None:
    datamodule = build_datamodule(OmegaConf.create({"data": USER_DATA}))
    assert type(datamodule).__name__ == "UserData" and datamodule.batch_size == 16
    assert datamodule.example_input(3).shape == (3, 1, 8, 8)


@pytest.mark.parametrize(("change", "message"), [
    ({"image_size": None}, r"missing \['image_size'\]"),
    ({"num_classes": 0}, r"not positive ints \['num_classes'\]"),
    ({"_target_": "torch.nn.Identity"}, "must build a pytorch_lightning LightningDataModule"),
])
def test_a_broken_data_contract_is_refused_naming_what_is_missing(change: dict, message: str) -> None:
    data = {k: v for k, v in {**USER_DATA, **change}.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        build_datamodule(OmegaConf.create({"data": data}))


def test_the_app_trains_and_prunes_on_the_users_data(compose_config, tmp_path: Path) -> None:
    cfg = compose_config("+method=l1_filter", "method.baseline.epochs=1", "method.finetune.epochs=1")
    with open_dict(cfg):
        cfg.data = USER_DATA
    record = run(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["final"]["params"] < results["baseline"]["params"] and record["final"]["test_acc"] >= 0
