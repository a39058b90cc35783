"""FPGMPruning under 2-process CPU ``ddp_spawn`` (gloo): identical masks and weights on both ranks.

Finding: the removal cannot happen inside spawned workers, because Lightning then loads rank 0's ``state_dict`` into
the main process' full-width module. FPGMPruning therefore only masks there (the main process receives the complete,
soft-pruned weights) and ``finalize(module)`` in the main process removes the zeroed channels: its plan equals the
workers' selection.
"""

from __future__ import annotations

import json
import zlib

import pytest
import pytorch_lightning as pl
import torch

from lightning_compress.callbacks.fpgm import FPGMPruning
from tests.helpers import quiet_trainer, tiny_data, tiny_module


class SelectionAgreement(pl.Callback):
    """After FPGM's ``on_train_end``: every rank's selection and weights equal rank 0's; rank 0 saves its selection."""

    def __init__(self, pruner: FPGMPruning, path: str) -> None:
        self.pruner, self.path = pruner, path

    def on_train_end(self, trainer, pl_module) -> None:
        selection = self.pruner.selection.to_dict()
        text = json.dumps(selection, sort_keys=True)
        weights = [float(v.double().sum()) for v in pl_module.net.state_dict().values() if v.is_floating_point()]
        mine = torch.tensor([float(zlib.crc32(text.encode())), *weights], dtype=torch.float64)
        gathered = trainer.strategy.all_gather(mine)
        if not torch.equal(gathered[0], gathered[1]):
            raise AssertionError(f"ranks disagree: {gathered}")
        if trainer.is_global_zero:
            with open(self.path, "w") as f:
                f.write(text)


@pytest.mark.slow
@pytest.mark.parametrize("soft_mode", ["authors_code", "exact"])
def test_ddp_spawn_ranks_agree_and_finalize_prunes_the_main_copy(tmp_path, soft_mode: str) -> None:
    torch.manual_seed(0)
    module = tiny_module()
    callback = FPGMPruning(pruning_ratio=0.5, soft_mode=soft_mode, verbose=False)
    path = str(tmp_path / "selection.json")
    trainer = quiet_trainer(tmp_path, callbacks=[callback, SelectionAgreement(callback, path)],
                            strategy="ddp_spawn", devices=2, limit_train_batches=2, max_epochs=2)
    data = tiny_data()
    trainer.fit(module, datamodule=data)
    assert callback.plan is None and module.net.features.conv1.out_channels == 8  # main copy: masked, full width
    with open(path) as f:
        workers = json.load(f)
    plan = callback.finalize(module, data.example_input(1))
    assert plan.to_dict()["layers"] == workers["layers"]
    assert module.net.features.conv1.out_channels == 4 and callback.finished
