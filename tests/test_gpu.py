"""On CUDA with ``bf16-mixed`` (issue 29, item 9): each callback and each module fits, its checkpoint reloads, the
pruned fit resumes, the network exports; masks, ``residual="select"`` index buffers, sliced optimizer state and FSP
matrices live on the GPU; latency is timed with CUDA events. Marked ``gpu``; skipped without CUDA.

    scripts/gpu_check.sh      # these tests, then (with 2 GPUs) the DDP harness over NCCL with its assertions
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from lightning_compress.callbacks import FPGMPruning, L1FilterPruning, NetworkSlimming, load_pruned_checkpoint
from lightning_compress.cost import measure_latency
from lightning_compress.distillation import FSPDistillation, KnowledgeDistillation
from lightning_compress.modules import ImageClassifier
from lightning_compress.portable import export_and_check
from tests.helpers import LitUser, tiny_data, tiny_resnet, tiny_vgg

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CALLBACKS = {
    "l1": lambda: L1FilterPruning(pruning_ratio=0.5, verbose=False),
    "slimming": lambda: NetworkSlimming(pruning_ratio=0.5, verbose=False),
    "fpgm": lambda: FPGMPruning(pruning_ratio=0.5, verbose=False),
    "fpgm_select": lambda: FPGMPruning(pruning_ratio=0.5, residual="select", verbose=False),
}
X = torch.randn(2, 1, 8, 8)


class _ResNetUser(LitUser):
    def __init__(self, lr: float = 0.05) -> None:
        super().__init__(lr)
        self.model = tiny_resnet()


def gpu_trainer(tmp_path: Path, callbacks: list, max_epochs: int = 2) -> L.Trainer:
    return L.Trainer(default_root_dir=str(tmp_path), accelerator="gpu", devices=1, precision="bf16-mixed",
                     max_epochs=max_epochs, logger=False, enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0, limit_train_batches=2, limit_val_batches=1, callbacks=callbacks)


@pytest.mark.parametrize("method", sorted(CALLBACKS))
def test_callback_fits_reloads_resumes_and_exports_on_cuda(method: str, tmp_path: Path) -> None:
    user = _ResNetUser if method == "fpgm_select" else LitUser
    module, callback = user(), CALLBACKS[method]()
    trainer = gpu_trainer(tmp_path, [callback, ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)])
    trainer.fit(module, datamodule=tiny_data())
    assert callback.plan is not None and all(p.device.type == "cuda" for p in module.parameters())
    assert all(b.device.type == "cuda" for b in module.buffers())  # BN statistics, select/re-expand index buffers
    path = tmp_path / "ckpt" / ("last.ckpt" if method == "l1" else "pruned.ckpt")

    reloaded = load_pruned_checkpoint(user, path, map_location="cuda")
    with torch.no_grad():
        torch.testing.assert_close(reloaded.cuda().eval()(X.cuda()), module.eval()(X.cuda()))

    resumed = user()
    again = gpu_trainer(tmp_path / "resume", [CALLBACKS[method]()], max_epochs=3)
    again.fit(resumed, datamodule=tiny_data(), ckpt_path=str(path))  # optimizer state sliced on the GPU
    assert again.global_step > trainer.global_step

    report = export_and_check(reloaded.model.cpu().float().eval(), (1, 8, 8), tmp_path / "net.pt2", "pt2")
    assert report["parity"]["passed"]


def _module(kind: str) -> L.LightningModule:
    optim = {"name": "sgd", "lr": 0.01, "momentum": 0.9}
    if kind == "classifier":
        return ImageClassifier(tiny_vgg(), num_classes=4, optim=optim)
    if kind == "fsp":
        return FSPDistillation(tiny_resnet(), tiny_resnet(), num_classes=4, optim=optim, input_shape=[1, 8, 8])
    return KnowledgeDistillation(tiny_vgg(), tiny_vgg(), num_classes=4, optim=optim)


@pytest.mark.parametrize("kind", ["classifier", "fsp", "kd"])
def test_module_fits_and_reloads_on_cuda(kind: str, tmp_path: Path) -> None:
    module = _module(kind)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    gpu_trainer(tmp_path, [checkpoint]).fit(module, datamodule=tiny_data())
    net = tiny_resnet() if kind == "fsp" else tiny_vgg()
    reloaded = load_pruned_checkpoint(type(module), tmp_path / "last.ckpt", map_location="cuda", net=net)
    with torch.no_grad():
        torch.testing.assert_close(reloaded.net.cuda().eval()(X.cuda()), module.net.cuda().eval()(X.cuda()))


def test_latency_is_timed_on_cuda() -> None:
    net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU()).cuda()
    latency = measure_latency(net, torch.randn(4, 3, 32, 32, device="cuda"), warmup=2, repeats=5)
    assert latency.median_ms > 0
