"""Plans in checkpoints: crash mid-fine-tune, resume with ckpt_path, same weights; load_pruned_checkpoint."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from lightning_compress.callbacks import L1FilterPruning, NetworkSlimming, load_pruned_checkpoint
from lightning_compress.modules import ImageClassifier
from lightning_compress.pruning.saving import KEY as CHECKPOINT_KEY
from tests.helpers import quiet_trainer, tiny_module, tiny_vgg


class Crash(pl.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated crash")


def _loader() -> DataLoader:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 1, 8, 8, generator=gen), torch.randint(0, 4, (48,), generator=gen)
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)


def _fresh(seed: int = 0) -> ImageClassifier:
    torch.manual_seed(seed)
    return tiny_module(tiny_vgg())


def _fit(tmp_path, module, callbacks, epochs=3, ckpt_path=None, **kwargs):
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=-1, every_n_epochs=1)
    trainer = quiet_trainer(tmp_path, max_epochs=epochs, callbacks=[*callbacks, checkpoint],
                            enable_checkpointing=True, limit_val_batches=0, deterministic=True, **kwargs)
    trainer.fit(module, train_dataloaders=_loader(), ckpt_path=ckpt_path)
    return trainer


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=1e-6, msg=key)


@pytest.mark.parametrize("resume_seed", [0, pytest.param(1, marks=pytest.mark.slow)],
                         ids=["same-pretrained", "fresh-init"])
def test_l1_resume_after_crash_reaches_the_uninterrupted_weights(tmp_path, resume_seed):
    reference = _fresh()
    _fit(tmp_path / "ref", reference, [L1FilterPruning(pruning_ratio=0.5, verbose=False)])

    crashed = _fresh()
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(tmp_path / "run", crashed, [L1FilterPruning(pruning_ratio=0.5, verbose=False), Crash(2)])
    last = tmp_path / "run" / "last.ckpt"
    assert torch.load(last, weights_only=True)[CHECKPOINT_KEY]["plan"]["layers"]

    # A new process: the module is rebuilt unpruned (seed 1 = other weights, so setup picks another plan first).
    callback = L1FilterPruning(pruning_ratio=0.5, verbose=False)
    resumed = _fresh(resume_seed)
    _fit(tmp_path / "run", resumed, [callback], ckpt_path=str(last))
    _assert_same_weights(resumed.net, reference.net)
    assert callback.plan.to_dict() == torch.load(last, weights_only=True)[CHECKPOINT_KEY]["plan"]


@pytest.mark.slow
def test_slimming_finetune_resume_with_a_fresh_unpruned_module(tmp_path):
    def sparsity_then_prune() -> tuple[ImageClassifier, NetworkSlimming]:
        module = _fresh()
        callback = NetworkSlimming(sparsity_lambda=1e-3, pruning_ratio=0.5, plot_dir="", verbose=False)
        _fit(tmp_path / "sparsity", module, [callback], epochs=1)
        return module, callback

    reference, callback = sparsity_then_prune()
    _fit(tmp_path / "ref", reference, [callback])  # fine-tune: the finished callback only stamps checkpoints

    module, callback = sparsity_then_prune()
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(tmp_path / "run", module, [callback, Crash(2)])

    fresh_callback = NetworkSlimming(sparsity_lambda=1e-3, pruning_ratio=0.5, plot_dir="", verbose=False)
    resumed = _fresh()
    _fit(tmp_path / "run", resumed, [fresh_callback], ckpt_path=str(tmp_path / "run" / "last.ckpt"))
    assert fresh_callback.finished and fresh_callback.plan is not None
    _assert_same_weights(resumed.net, reference.net)


def test_load_pruned_checkpoint_into_a_fresh_module(tmp_path):
    module = _fresh()
    _fit(tmp_path, module, [L1FilterPruning(pruning_ratio=0.5, verbose=False)], epochs=1)
    ckpt = tmp_path / "last.ckpt"
    loaded = load_pruned_checkpoint(ImageClassifier, ckpt, net=tiny_vgg())
    _assert_same_weights(loaded.net, module.net)
    instance = load_pruned_checkpoint(_fresh(5), ckpt)
    _assert_same_weights(instance.net, module.net)
    x = torch.randn(2, 1, 8, 8)
    module.eval(), loaded.eval()
    torch.testing.assert_close(loaded(x), module(x))


def test_load_pruned_checkpoint_errors(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"not": "a checkpoint"}, path)
    with pytest.raises(ValueError, match="state_dict"):
        load_pruned_checkpoint(ImageClassifier, path, net=tiny_vgg())
    with pytest.raises(TypeError, match="module_cls_or_instance"):
        load_pruned_checkpoint(int, path)
