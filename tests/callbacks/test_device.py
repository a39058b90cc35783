"""Slimming and FPGM prune in `on_train_end`, after Lightning moved the module to the accelerator and converted it
(`precision="*-true"`); their example input was made in `setup`, before both. Every use of it follows the network:
on the CPU with `bf16-true` (the dtype), on a GPU when one is present (the device)."""

from __future__ import annotations

import pytest
import torch

from lightning_compress.callbacks import FPGMPruning, NetworkSlimming
from lightning_compress.modules import ImageClassifier
from tests.helpers import quiet_trainer, tiny_data, tiny_module, tiny_vgg


class CastingClassifier(ImageClassifier):
    """Casts its input to the network's dtype (Lightning's ``bf16-true`` converts the module, not the batches)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.to(next(self.net.parameters()).dtype))


def test_fpgm_prunes_at_the_end_of_a_bf16_true_fit(tmp_path):
    torch.manual_seed(0)
    module = CastingClassifier(tiny_vgg(), num_classes=4, optim={"name": "sgd", "lr": 0.05},
                               scheduler={"name": "constant"})
    callback = FPGMPruning(pruning_ratio=0.5, verbose=False)
    trainer = quiet_trainer(tmp_path, callbacks=[callback], precision="bf16-true", limit_train_batches=2)
    trainer.fit(module, datamodule=tiny_data())
    assert callback.example_inputs.dtype == torch.float32  # made in setup, before the conversion
    assert module.net.features.conv1.weight.dtype == torch.bfloat16 and module.net.features.conv1.out_channels == 4
    assert callback.profile["after"]["macs"] < callback.profile["before"]["macs"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("make_callback", [
    lambda: NetworkSlimming(sparsity_lambda=1e-3, pruning_ratio=0.5, plot_dir="", verbose=False),
    lambda: FPGMPruning(pruning_ratio=0.5, verbose=False),
], ids=["slimming", "fpgm"])
def test_pruning_at_the_end_of_a_gpu_fit(tmp_path, make_callback):
    torch.manual_seed(0)
    module, callback = tiny_module(), make_callback()
    trainer = quiet_trainer(tmp_path, callbacks=[callback], accelerator="gpu", devices=1, limit_train_batches=2)
    trainer.fit(module, datamodule=tiny_data())
    assert callback.example_inputs.device.type == "cpu"  # made in setup, before Lightning moved the module
    assert callback.plan is not None and callback.plan.num_removed > 0
    assert callback.profile["after"]["macs"] < callback.profile["before"]["macs"]
