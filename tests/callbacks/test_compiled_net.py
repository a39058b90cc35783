"""A network compiled in the module's ``__init__`` (``torch.compile``) is pruned through its ``_orig_mod``
(issue 29, item 7)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from lightning_compress.callbacks import L1FilterPruning, load_pruned_checkpoint
from tests.helpers import NetSteps, tiny_data, tiny_vgg


class CompiledUser(NetSteps, L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.compile(tiny_vgg(), backend="eager")  # the eager backend: no C++ compiler needed

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def test_a_compiled_network_is_pruned_and_reloads(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    module, callback = CompiledUser(), L1FilterPruning(pruning_ratio=0.5, verbose=False)
    L.Trainer(default_root_dir=str(tmp_path), accelerator="cpu", max_epochs=1, limit_train_batches=2, logger=False,
              enable_progress_bar=False, enable_model_summary=False,
              callbacks=[callback, ModelCheckpoint(dirpath=tmp_path, save_last=True)]).fit(module,
                                                                                        datamodule=tiny_data())
    assert callback.net_path == "net._orig_mod" and callback.net is module.net._orig_mod
    assert module.net._orig_mod.features.conv1.out_channels < 8
    reloaded = load_pruned_checkpoint(CompiledUser, tmp_path / "last.ckpt")
    x = torch.randn(2, 1, 8, 8)
    widths = [m.out_channels for m in reloaded.net._orig_mod.modules() if isinstance(m, nn.Conv2d)]
    assert widths == [m.out_channels for m in module.net._orig_mod.modules() if isinstance(m, nn.Conv2d)]
    torch.testing.assert_close(reloaded.eval()(x), module.eval()(x))
