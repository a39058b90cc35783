"""The datamodule contract shared by digits, CIFAR-10 and synthetic: attributes, loaders, batch hook, training."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.data import _update_dataloader
from torch import nn
from torch.utils.data import DistributedSampler

from lightning_compress.data import CIFAR10DataModule, DigitsDataModule, SyntheticDataModule
from lightning_compress.data.augment import normalize
from lightning_compress.data.base import TensorImageDataset, collate_batch


def _modules(tmp_path):
    return [
        (DigitsDataModule(), (10, 1, 8, 64)),
        (CIFAR10DataModule(root=tmp_path / "absent", cache_dir=tmp_path / "cache"), (10, 3, 32, 128)),
        (SyntheticDataModule(num_classes=4, in_channels=2, image_size=12, batch_size=16), (4, 2, 12, 16)),
    ]


def test_shape_attributes_exist_right_after_init_without_touching_data(tmp_path):
    for dm, (classes, channels, size, batch) in _modules(tmp_path):
        assert (dm.num_classes, dm.in_channels, dm.image_size, dm.batch_size) == (classes, channels, size, batch)
        example = dm.example_input(3)
        assert example.shape == (3, channels, size, size) and example.dtype == torch.float32
        assert dm.splits is None  # nothing was loaded
        assert "num_classes" in str(dm)  # str() does not build the DataLoaders (which would load the data)
    assert not (tmp_path / "cache").exists()


def test_loaders_yield_uint8_batches_and_int64_labels():
    dm = SyntheticDataModule(train_size=100, val_size=30, test_size=20, batch_size=32, eval_batch_size=25)
    dm.setup("fit")
    sizes = {name: [len(y) for _, y in loader()] for name, loader in
             (("train", dm.train_dataloader), ("val", dm.val_dataloader), ("test", dm.test_dataloader))}
    assert sizes == {"train": [32, 32, 32, 4], "val": [25, 5], "test": [20]}
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (32, 3, 32, 32) and y.dtype == torch.int64


def test_train_loader_shuffles_each_epoch_and_eval_loader_does_not():
    dm = SyntheticDataModule(train_size=64, batch_size=64)
    dm.setup()
    first, second = (next(iter(dm.train_dataloader()))[1] for _ in range(2))
    assert not torch.equal(first, second) and torch.equal(first.sort().values, second.sort().values)
    assert torch.equal(next(iter(dm.val_dataloader()))[1], dm.split("val").labels[:64])


def test_getitems_serves_whole_batches_and_single_items_still_work():
    dm = SyntheticDataModule(train_size=20)
    dm.setup()
    ds = TensorImageDataset(dm.split("train"))
    images, labels = ds.__getitems__([3, 1, 4])
    assert torch.equal(images[1], ds[1][0]) and labels.tolist() == [int(ds[i][1]) for i in (3, 1, 4)]
    stacked = collate_batch([ds[3], ds[1]])
    assert torch.equal(stacked[0], images[:2])


def test_distributed_sampler_shards_are_disjoint_and_cover_the_data():
    """What Lightning does under DDP: re-create the loader with a DistributedSampler per rank."""
    dm = SyntheticDataModule(train_size=100, batch_size=8)
    dm.setup()
    loader = dm.train_dataloader()
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(loader.dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)
        sharded = _update_dataloader(loader, sampler)
        assert sharded.collate_fn is collate_batch
        ids = [img.flatten().numpy().tobytes() for x, _ in sharded for img in x]
        assert len(ids) == 50
        seen.append(set(ids))
    assert not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == 100


def test_transform_batch_augments_training_batches_only():
    dm = SyntheticDataModule(augment=True, crop_padding=4, batch_size=64)
    dm.setup()
    raw = next(iter(dm.val_dataloader()))
    plain = normalize(raw[0], dm.mean, dm.std)
    x_eval, y_eval = dm.transform_batch(raw, train=False)
    assert torch.equal(x_eval, plain) and torch.equal(y_eval, raw[1])
    x_train, _ = dm.transform_batch(raw, train=True)
    assert x_train.shape == plain.shape and x_train.dtype == torch.float32 and not torch.equal(x_train, plain)
    dm.augment = False
    assert torch.equal(dm.transform_batch(raw, train=True)[0], plain)
    with pytest.raises(TypeError, match="must be uint8"):
        dm.transform_batch((plain, y_eval), train=False)


def test_normalised_training_batches_have_zero_mean_unit_std():
    dm = SyntheticDataModule(train_size=512, batch_size=512)
    dm.setup()
    x, _ = dm.transform_batch(next(iter(dm.train_dataloader())), train=False)
    assert x.mean(dim=(0, 2, 3)).abs().max() < 1e-3 and (x.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-2


def test_constructor_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="`batch_size` must be an int >= 1, got 0"):
        SyntheticDataModule(batch_size=0)
    with pytest.raises(TypeError, match="`augment` must be a bool"):
        SyntheticDataModule(augment="yes")
    with pytest.raises(ValueError, match="`mean` and `std` must have 3 values"):
        SyntheticDataModule(mean=(0.5,), std=(0.5,))
    with pytest.raises(ValueError, match="`num_classes` must be 10 for this data set"):
        DigitsDataModule(num_classes=5)
    with pytest.raises(ValueError, match="`in_channels` must be 3"):
        CIFAR10DataModule(root=tmp_path, in_channels=1)


class _Recorder(pl.LightningModule):
    """A linear classifier that records the batches its steps receive."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, num_classes))
        self.seen: dict[str, list[torch.Tensor]] = {"train": [], "val": []}
        self.val_acc: list[float] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen["train"].append(x.detach().clone())
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.seen["val"].append(x.detach().clone())
        self.val_acc.append((self.net(x).argmax(1) == y).float().mean().item())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def _trainer(tmp_path, epochs: int) -> pl.Trainer:
    return pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                      default_root_dir=tmp_path)


def test_trainer_gets_normalised_float_batches_augmented_in_training_only(tmp_path):
    dm = SyntheticDataModule(num_classes=3, image_size=8, train_size=64, val_size=32, test_size=8, batch_size=64,
                             augment=True, crop_padding=2)
    model = _Recorder(3 * 8 * 8, 3)
    _trainer(tmp_path, 2).fit(model, datamodule=dm)
    expected_val = normalize(dm.split("val").images, dm.mean, dm.std)
    assert all(x.dtype == torch.float32 for x in model.seen["train"] + model.seen["val"])
    assert torch.equal(model.seen["val"][0], expected_val)  # eval batches: normalised, not augmented
    assert not torch.equal(model.seen["train"][0], model.seen["train"][1])  # random crops differ per epoch


def test_synthetic_data_is_learnable(tmp_path):
    dm = SyntheticDataModule(num_classes=4, image_size=8, train_size=256, val_size=128, batch_size=32)
    model = _Recorder(3 * 8 * 8, 4)
    _trainer(tmp_path, 3).fit(model, datamodule=dm)
    assert sum(model.val_acc[-4:]) / 4 > 0.8  # chance is 0.25
