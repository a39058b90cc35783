"""The checkpoints a pruning callback leaves with the user's own ``ModelCheckpoint`` settings (issue 29, item 3).

Each one either holds the pruned network with its plan and a matching optimizer state, or is marked as written
before the cut and refused with a message naming the checkpoint to use. The user module is written with
``import lightning as L``, its network is ``self.model``.
"""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from lightning_compress.callbacks import FPGMPruning, L1FilterPruning, NetworkSlimming, load_pruned_checkpoint
from tests.helpers import LitUser, one_thread_fixture, tiny_data, tiny_vgg

METHODS = {"slimming": lambda: NetworkSlimming(pruning_ratio=0.5, verbose=False),
           "fpgm": lambda: FPGMPruning(pruning_ratio=0.5, verbose=False)}
SETTINGS = {"default": lambda d: ModelCheckpoint(dirpath=d),
            "save_last": lambda d: ModelCheckpoint(dirpath=d, save_last=True),
            "monitor_top1": lambda d: ModelCheckpoint(dirpath=d, monitor="val_loss", save_top_k=1)}


one_thread = pytest.fixture(autouse=True)(one_thread_fixture)





def trainer(tmp_path: Path, callbacks: list, max_epochs: int = 2) -> L.Trainer:
    return L.Trainer(default_root_dir=str(tmp_path), accelerator="cpu", devices=1, max_epochs=max_epochs,
                     logger=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                     limit_train_batches=2, limit_val_batches=1, limit_test_batches=1, callbacks=callbacks)


def widths(net: nn.Module) -> dict[str, int]:
    return {n: m.out_channels for n, m in net.named_modules() if isinstance(m, nn.Conv2d)}


@pytest.mark.parametrize("setting", sorted(SETTINGS))
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_checkpoint_holds_the_pruned_network_or_is_refused(method: str, setting: str, tmp_path: Path) -> None:
    ckpt_dir = tmp_path / "ckpt"
    callback, checkpoint = METHODS[method](), SETTINGS[setting](str(ckpt_dir))
    module = LitUser()
    fit = trainer(tmp_path, [callback, checkpoint])
    fit.fit(module, datamodule=tiny_data())
    pruned = widths(module.model)
    assert pruned != widths(tiny_vgg())
    assert callback.pruned_checkpoints[0] == str(ckpt_dir / "pruned.ckpt")

    for path in sorted(ckpt_dir.glob("*.ckpt")):
        if path.name in ("pruned.ckpt", "last.ckpt"):
            reloaded = load_pruned_checkpoint(LitUser, path)
            assert widths(reloaded.model) == pruned, path.name
            x = torch.randn(2, 1, 8, 8)
            torch.testing.assert_close(reloaded.eval()(x), module.eval()(x))
        else:  # written during the fit, before the cut
            refused = f"(before it pruned the network|during soft pruning).*{re.escape(str(ckpt_dir / 'pruned.ckpt'))}"
            with pytest.raises(ValueError, match=refused):
                load_pruned_checkpoint(LitUser, path)

    if setting == "monitor_top1":  # "best" is from before the cut: the library says which checkpoint to use
        with pytest.raises(ValueError, match=r"before it pruned the network.*pruned\.ckpt"):
            fit.test(module, datamodule=tiny_data(), ckpt_path="best", verbose=False)
    results = fit.test(module, datamodule=tiny_data(), ckpt_path=str(ckpt_dir / "pruned.ckpt"), verbose=False)
    assert "test_loss" in results[0]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_the_pruned_checkpoint_resumes_with_a_sliced_optimizer_state(method: str, tmp_path: Path) -> None:
    module = LitUser()
    trainer(tmp_path, [METHODS[method](), ModelCheckpoint(dirpath=tmp_path / "ckpt")]).fit(module,
                                                                                      datamodule=tiny_data())
    path = tmp_path / "ckpt" / "pruned.ckpt"
    saved = torch.load(path, weights_only=True)
    momentum = [s["momentum_buffer"] for s in saved["optimizer_states"][0]["state"].values()]
    assert sorted(tuple(m.shape) for m in momentum) == sorted(tuple(p.shape) for p in module.parameters())

    resumed_callback = METHODS[method]()
    fresh = LitUser()
    resumed = trainer(tmp_path / "resume", [resumed_callback], max_epochs=4)
    resumed.fit(fresh, datamodule=tiny_data(), ckpt_path=str(path))  # continues training the pruned network
    assert resumed.global_step == 8 and widths(fresh.model) == widths(module.model)
    assert resumed_callback.finished
    assert resumed_callback.plan.to_dict() == torch.load(path, weights_only=True)["lightning_compress"]["plan"]


def test_plans_compose_across_fits(tmp_path: Path) -> None:
    """Slimming in one fit, L1 (another callback instance) on the reloaded pruned network in a second fit: the
    second fit's checkpoints hold the composed plan and reload into a fresh, unpruned module."""
    module = LitUser()
    trainer(tmp_path / "a", [NetworkSlimming(pruning_ratio=0.3, verbose=False),
                             ModelCheckpoint(dirpath=tmp_path / "a")]).fit(module, datamodule=tiny_data())
    first = load_pruned_checkpoint(LitUser, tmp_path / "a" / "pruned.ckpt")
    second = trainer(tmp_path / "b", [L1FilterPruning(pruning_ratio=0.3, verbose=False),
                                      ModelCheckpoint(dirpath=tmp_path / "b", save_last=True)])
    second.fit(first, datamodule=tiny_data())
    assert sum(widths(first.model).values()) < sum(widths(module.model).values())
    reloaded = load_pruned_checkpoint(LitUser, tmp_path / "b" / "last.ckpt")
    assert widths(reloaded.model) == widths(first.model)
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(reloaded.eval()(x), first.eval()(x))
