"""Real ``strategy="ddp"`` fits on 2 CPU processes (gloo), as their own script: Lightning's subprocess launcher
re-runs the command that started the fit, so it cannot start inside pytest.

    python -m tests.ddp_harness <case>[,<case>...] <out_dir>        # from the project root
    DDP_HARNESS_ACCELERATOR=gpu python -m tests.ddp_harness ...       # on 2 GPUs (NCCL) instead of 2 CPU processes

A case (:data:`CASES`) builds a LightningModule, its data and its callbacks. :class:`RankDigest` (also usable from
``train.py`` as ``+callbacks.digest={_target_: tests.ddp_harness.RankDigest, folder: <dir>}``) makes every rank
write ``<out_dir>/<case>/<stage>-rank<r>.json`` at the end of each fit: digests of its network's parameters and of
its buffers, its layer shapes, the ``plan`` of every callback that has one, the global step and the DDP wrapper's
``find_unused_parameters``. The launching process (rank 0) then
writes ``<out_dir>/<case>/launcher.json``, the same digest of the network it holds after ``fit`` returned. A test
compares those files; ``launcher.pt`` holds that network's ``state_dict`` for checks on values.

The pruning cases (``l1_filter``, ``slimming``, ``fpgm``) also keep ``<out_dir>/<case>/fit/last.ckpt``
(``ModelCheckpoint(save_last=True)``) and ``fit/done.ckpt`` (train.py's ``FitEndCheckpoint``, written after every
callback's ``on_train_end``), for a test to load in one process. ``slimming_penalty`` trains a network whose BN
scale receives no gradient from its loss, so the scale moves by Network Slimming's penalty alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn

NUM_CLASSES = 4
ACCELERATOR = os.environ.get("DDP_HARNESS_ACCELERATOR", "cpu")  # "gpu": 2 GPUs over NCCL (scripts/gpu_check.sh)


@dataclass
class Case:
    module: pl.LightningModule
    datamodule: pl.LightningDataModule
    callbacks: list[pl.Callback] = field(default_factory=list)
    trainer: dict[str, Any] = field(default_factory=dict)  # Trainer arguments beyond the harness's defaults


def network_digest(net: nn.Module) -> dict[str, Any]:
    """sha256 of the parameters and of the buffers (bit-exact), and every tensor's shape."""
    params, buffers = hashlib.sha256(), hashlib.sha256()
    names = {name for name, _ in net.named_parameters()}
    for name, tensor in net.state_dict().items():
        target = params if name in names else buffers
        target.update(name.encode())
        target.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return {"params": params.hexdigest(), "buffers": buffers.hexdigest(),
            "shapes": {k: list(v.shape) for k, v in net.state_dict().items()}}


class RankDigest(pl.Callback):
    """Every rank writes ``<folder>/<stage>-rank<global rank>.json`` at the end of each fit (see the module doc)."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.find_unused_parameters: bool | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # the DistributedDataParallel wrapper's own setting (Lightning unwraps the module before on_fit_end)
        self.find_unused_parameters = getattr(trainer.strategy.model, "find_unused_parameters", None)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        checkpoint = trainer.checkpoint_callback
        stage = Path(getattr(checkpoint, "dirpath", None) or "fit").name
        net = getattr(pl_module, "net", pl_module)
        plans = {type(c).__name__: c.plan.to_dict() for c in trainer.callbacks if getattr(c, "plan", None) is not None}
        record = {"rank": trainer.global_rank, "world_size": trainer.world_size, **network_digest(net), "plans": plans,
                  "strategy": type(trainer.strategy).__name__, "global_step": trainer.global_step,
                  "find_unused_parameters": self.find_unused_parameters}
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{stage}-rank{trainer.global_rank}.json").write_text(json.dumps(record, sort_keys=True))


def _data() -> pl.LightningDataModule:
    from lightning_compress.data.synthetic import SyntheticDataModule

    return SyntheticDataModule(num_classes=NUM_CLASSES, in_channels=1, image_size=8, train_size=64, val_size=16,
                               test_size=16, batch_size=8, seed=0)


def _resnet(depth: int) -> nn.Module:
    from lightning_compress.models.resnet_cifar import CifarResNet

    return CifarResNet(depth, num_classes=NUM_CLASSES, in_channels=1)


def _classifier(net: nn.Module) -> pl.LightningModule:
    from lightning_compress.modules import ImageClassifier

    return ImageClassifier(net, num_classes=NUM_CLASSES, optim={"name": "sgd", "lr": 0.05, "momentum": 0.9},
                           scheduler={"name": "constant"})


def plain_case() -> Case:
    return Case(_classifier(_resnet(8)), _data())


def fsp_case() -> Case:
    from lightning_compress.distillation import FSPDistillation

    module = FSPDistillation(_resnet(8), _resnet(14), num_classes=NUM_CLASSES, optim={"name": "adam", "lr": 1e-3},
                             scheduler={"name": "constant"})
    return Case(module, _data())


def kd_case() -> Case:
    from lightning_compress.distillation import KnowledgeDistillation

    module = KnowledgeDistillation(_resnet(8), _resnet(14), num_classes=NUM_CLASSES,
                                   optim={"name": "sgd", "lr": 0.05, "momentum": 0.9}, scheduler={"name": "constant"})
    return Case(module, _data())


def _pruning_case(callback: pl.Callback, **trainer: Any) -> Case:
    """ResNet-8 with a pruning callback, checkpointed (``main`` keeps ``<case>/fit/last.ckpt``)."""
    return Case(_classifier(_resnet(8)), _data(), [callback], {"enable_checkpointing": True, **trainer})


def l1_filter_case() -> Case:
    from lightning_compress.callbacks import L1FilterPruning

    return _pruning_case(L1FilterPruning(pruning_ratio=0.5, verbose=False))


def slimming_case() -> Case:
    from lightning_compress.callbacks import NetworkSlimming

    # plot_dir=None: gamma.png goes to trainer.log_dir, which every rank must ask for (it is a broadcast)
    return _pruning_case(NetworkSlimming(sparsity_lambda=1e-3, pruning_ratio=0.4, residual="select", verbose=False))


def fpgm_case() -> Case:
    from lightning_compress.callbacks import FPGMPruning

    return _pruning_case(FPGMPruning(pruning_ratio=0.4, residual="select", verbose=False))


PENALTY = {"lr": 0.1, "sparsity_lambda": 0.01, "init_gamma": 0.5}


class FrozenHeadClassifier(pl.LightningModule):
    """conv -> BN -> ReLU -> pool -> linear whose weight is frozen at zero: no gradient of the loss reaches the BN
    scale (exactly 0), so under plain SGD with ``PENALTY`` it moves by Network Slimming's penalty alone:
    ``gamma_T = init_gamma - T * lr * sparsity_lambda`` after ``T`` steps if the penalty is added once per step."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten(), nn.Linear(4, NUM_CLASSES))
        head = self.net[-1]
        nn.init.zeros_(head.weight)
        head.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        return nn.functional.cross_entropy(self(images), labels)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        self.log("val/loss", nn.functional.cross_entropy(self(images), labels), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=PENALTY["lr"])


def slimming_penalty_case() -> Case:
    from lightning_compress.callbacks import NetworkSlimming

    callback = NetworkSlimming(sparsity_lambda=PENALTY["sparsity_lambda"], init_gamma=PENALTY["init_gamma"],
                               prune=False, plot_dir="", verbose=False)
    return Case(FrozenHeadClassifier(), _data(), [callback])


CASES: dict[str, Callable[[], Case]] = {
    "plain": plain_case, "fsp": fsp_case, "kd": kd_case, "l1_filter": l1_filter_case, "slimming": slimming_case,
"fpgm": fpgm_case, "slimming_penalty": slimming_penalty_case,
}


def main(case_names: str, out: str) -> None:
    """Fit each case of the comma-separated ``case_names`` in turn (one process group), into ``<out>/<case>/``."""
    torch.set_num_threads(1)
    for name in case_names.split(","):
        folder = Path(out) / name
        pl.seed_everything(0, verbose=False)
        case = CASES[name]()
        callbacks = [*case.callbacks, RankDigest(str(folder))]
        if case.trainer.get("enable_checkpointing"):  # as train.py's stages; the digests' stage name is "fit"
            from lightning_compress.pipeline.checkpoints import FitEndCheckpoint

            callbacks += [ModelCheckpoint(dirpath=folder / "fit", filename="{epoch}", save_last=True),
                          FitEndCheckpoint(folder / "fit")]
        settings = {"accelerator": ACCELERATOR, "devices": 2, "strategy": "ddp", "max_epochs": 2,
                    "limit_train_batches": 3,
                    "limit_val_batches": 1, "logger": False, "enable_checkpointing": False,
                    "enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0,
                    "default_root_dir": str(folder), **case.trainer}
        trainer = pl.Trainer(**settings, callbacks=callbacks)
        trainer.fit(case.module, datamodule=case.datamodule)
        if trainer.is_global_zero:  # the launching process: what does it hold now?
            net = getattr(case.module, "net", case.module)
            (folder / "launcher.json").write_text(json.dumps(network_digest(net), sort_keys=True))
            torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, folder / "launcher.pt")


if __name__ == "__main__":
    main(*sys.argv[1:3])
