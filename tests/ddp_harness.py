"""Real ``strategy="ddp"`` fits on 2 CPU processes (gloo), as their own script: Lightning's subprocess launcher
re-runs the command that started the fit, so it cannot start inside pytest.

    python -m tests.ddp_harness <case>[,<case>...] <out_dir>        # from the project root

A case (:data:`CASES`) builds a LightningModule, its data and its callbacks. :class:`RankDigest` (also usable from
``train.py`` as ``+callbacks.digest={_target_: tests.ddp_harness.RankDigest, folder: <dir>}``) makes every rank
write ``<out_dir>/<case>/<stage>-rank<r>.json`` at the end of each fit: digests of its network's parameters and of
its buffers, its layer shapes and the ``plan`` of every callback that has one. The launching process (rank 0) then
writes ``<out_dir>/<case>/launcher.json``, the same digest of the network it holds after ``fit`` returned. A test
compares those files.

Adding a pruning callback (L1FilterPruning, NetworkSlimming, FPGMPruning): register ``CASES["<name>"]`` returning a
:class:`Case` with the callback; the digests already hold the plans and layer shapes, so the test asserts that both
ranks agree on plan and weights and that ``launcher.json`` has the pruned shapes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

NUM_CLASSES = 4


@dataclass
class Case:
    module: pl.LightningModule
    datamodule: pl.LightningDataModule
    callbacks: list[pl.Callback] = field(default_factory=list)


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

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        checkpoint = trainer.checkpoint_callback
        stage = Path(getattr(checkpoint, "dirpath", None) or "fit").name
        net = getattr(pl_module, "net", pl_module)
        plans = {type(c).__name__: c.plan.to_dict() for c in trainer.callbacks if getattr(c, "plan", None) is not None}
        record = {"rank": trainer.global_rank, "world_size": trainer.world_size, **network_digest(net), "plans": plans,
                  "strategy": type(trainer.strategy).__name__}
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{stage}-rank{trainer.global_rank}.json").write_text(json.dumps(record, sort_keys=True))


def _data() -> pl.LightningDataModule:
    from lightning_compress.data.synthetic import SyntheticDataModule

    return SyntheticDataModule(num_classes=NUM_CLASSES, in_channels=1, image_size=8, train_size=64, val_size=16,
                               test_size=16, batch_size=8, seed=0)


def _resnet(depth: int) -> nn.Module:
    from lightning_compress.models.resnet_cifar import CifarResNet

    return CifarResNet(depth, num_classes=NUM_CLASSES, in_channels=1)


def plain_case() -> Case:
    from lightning_compress.modules import ImageClassifier

    module = ImageClassifier(_resnet(8), num_classes=NUM_CLASSES, optim={"name": "sgd", "lr": 0.05, "momentum": 0.9},
                             scheduler={"name": "constant"})
    return Case(module, _data())


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


CASES: dict[str, Callable[[], Case]] = {"plain": plain_case, "fsp": fsp_case, "kd": kd_case}


def main(case_names: str, out: str) -> None:
    """Fit each case of the comma-separated ``case_names`` in turn (one process group), into ``<out>/<case>/``."""
    torch.set_num_threads(1)
    for name in case_names.split(","):
        folder = Path(out) / name
        pl.seed_everything(0, verbose=False)
        case = CASES[name]()
        trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, limit_train_batches=3,
                             limit_val_batches=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=str(folder),
                             callbacks=[*case.callbacks, RankDigest(str(folder))])
        trainer.fit(case.module, datamodule=case.datamodule)
        if trainer.is_global_zero:  # the launching process: what does it hold now?
            net = getattr(case.module, "net", case.module)
            (folder / "launcher.json").write_text(json.dumps(network_digest(net), sort_keys=True))


if __name__ == "__main__":
    main(*sys.argv[1:3])
