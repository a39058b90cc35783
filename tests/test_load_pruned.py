"""Reading users' checkpoints without unpickling Python objects (issue 29, item 4): ``load_pruned(path, net)`` (the
pair of ``save_pruned``) and ``load_pruned_checkpoint`` on a checkpoint whose hyper-parameters hold a Hydra-style
optimizer partial, as the lightning-hydra-template writes them."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_compress.callbacks import L1FilterPruning, load_pruned_checkpoint
from lightning_compress.loading import LoadError, SkippedObject, load_file, skipped_objects
from lightning_compress.pruning import prune, select_channels
from lightning_compress.pruning.saving import load_pruned, save_pruned
from tests.helpers import NetSteps, tiny_data, tiny_vgg

X = torch.randn(2, 1, 8, 8)


class TemplateModule(NetSteps, L.LightningModule):
    """The template's shape: ``optimizer`` is a ``functools.partial`` (Hydra ``_partial_: true``) kept in hparams."""

    def __init__(self, net: torch.nn.Module, optimizer: Any, compile: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False, ignore=["net"])
        self.net = net

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.hparams.optimizer(params=self.parameters())


def fit_template(tmp_path: Path) -> tuple[TemplateModule, Path]:
    torch.set_num_threads(1)
    module = TemplateModule(tiny_vgg(), optimizer=functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9))
    trainer = L.Trainer(default_root_dir=str(tmp_path), accelerator="cpu", max_epochs=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_train_batches=2,
                        callbacks=[L1FilterPruning(pruning_ratio=0.5, verbose=False),
                                   ModelCheckpoint(dirpath=tmp_path, save_last=True)])
    trainer.fit(module, datamodule=tiny_data())
    return module, tmp_path / "last.ckpt"


def test_the_checkpoint_of_a_hydra_configured_module_is_read_without_its_objects(tmp_path: Path) -> None:
    module, path = fit_template(tmp_path)
    with pytest.raises(LoadError, match=r"holds pickled Python objects \(functools.partial\)"):
        load_file(path, "path")  # the default stays strict
    data = load_file(path, "path", skip_objects=True)
    assert isinstance(data["hyper_parameters"]["optimizer"], SkippedObject)
    assert skipped_objects(data["hyper_parameters"]) == ["functools.partial"]

    with pytest.warns(UserWarning, match=r"\['optimizer'\] hold Python objects .*functools.partial.*built without"):
        reloaded = load_pruned_checkpoint(TemplateModule, path, net=tiny_vgg(), optimizer=None)
    torch.testing.assert_close(reloaded.eval()(X), module.eval()(X))
    with pytest.raises(TypeError, match=r"HINT: pass \['optimizer'\] as keyword arguments"):
        load_pruned_checkpoint(TemplateModule, path, net=tiny_vgg())

    with pytest.warns(UserWarning, match="not unpickled"):
        net = load_pruned(path, tiny_vgg())  # a plain nn.Module: the network's keys are found by the plan's net_path
    torch.testing.assert_close(net.eval()(X), module.net.eval()(X))


def test_objects_of_blocked_modules_are_refused_not_skipped(tmp_path: Path) -> None:
    class Runs:
        def __reduce__(self):
            return os.system, ("echo never",)

    path = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": Runs()}}, path)
    with pytest.raises(LoadError, match=r"refers to posix.system \(module posix, which is never loaded"):
        load_file(path, "path", skip_objects=True)


def test_load_pruned_is_the_pair_of_save_pruned(tmp_path: Path) -> None:
    net = tiny_vgg()
    unpruned = {k: v.clone() for k, v in net.state_dict().items()}
    plan = select_channels(net, X[:1], pruning_ratio=0.5)
    prune(net, plan)
    save_pruned(tmp_path / "pruned.pt", net, plan)
    fresh = tiny_vgg()
    fresh.load_state_dict(unpruned)
    loaded = load_pruned(tmp_path / "pruned.pt", fresh)
    assert loaded is fresh
    torch.testing.assert_close(loaded.eval()(X), net.eval()(X))

    torch.save(tiny_vgg().state_dict(), tmp_path / "plain.pt")  # a plain state dict: no plan
    assert sum(p.numel() for p in load_pruned(tmp_path / "plain.pt", tiny_vgg()).parameters()) == sum(
        p.numel() for p in tiny_vgg().parameters())

    other = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3))
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(ValueError, match=r"`path`=.*pruned.pt.*does not fit"):
        load_pruned(tmp_path / "pruned.pt", other)
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())
