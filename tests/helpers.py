"""Helpers shared by the tests (fixtures stay in the conftest files; the pruning test architectures are
``tests/pruning/archs.py``).

* Tiny networks, data, modules and a quiet Trainer: :func:`tiny_vgg`, :func:`tiny_resnet`, :func:`tiny_data`,
  :func:`tiny_module`, :func:`quiet_trainer`.
* Code as users write it: a LightningModule whose network is ``self.model`` (:class:`LitUser`,
  :func:`user_module_class` for either Lightning package), the steps of one whose network is ``self.net``
  (:class:`NetSteps`), and :func:`one_thread_fixture`.
* Engine checks: :func:`randomize_norms`, :func:`assert_mask_equals_prune`, :func:`n_params`.
* Settings shared by several test modules: the distillation modules' :data:`NUM_CLASSES`, :data:`OPTIM`,
  :data:`SCHEDULER` and :func:`snapshot`; the short app runs :data:`TINY_PRUNING_RUN`, :data:`TINY_DISTILLATION_RUN`.
"""

from __future__ import annotations

import copy
from types import ModuleType
from typing import Any

import lightning as L
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from lightning_compress.data.synthetic import SyntheticDataModule
from lightning_compress.models.resnet_cifar import CifarResNet
from lightning_compress.models.vgg import VGG
from lightning_compress.modules import ImageClassifier
from lightning_compress.pruning import PruningPlan, mask, prune

# ------------------------------------------------------------------ tiny networks, data, modules, a quiet Trainer
TINY_VGG = (8, 8, "M", 16, 16)


def tiny_vgg(num_classes: int = 4) -> VGG:
    """4 convs (8, 8, M, 16, 16) + BN on 1x8x8 inputs."""
    return VGG(TINY_VGG, num_classes=num_classes, in_channels=1)


def tiny_resnet(num_classes: int = 4) -> CifarResNet:
    """ResNet-8 (one block per stage) on 1-channel inputs."""
    return CifarResNet(8, num_classes=num_classes, in_channels=1)


def tiny_module(net: torch.nn.Module | None = None, lr: float = 0.05, **optim: Any) -> ImageClassifier:
    net = net if net is not None else tiny_vgg()
    return ImageClassifier(net, num_classes=4, optim={"name": "sgd", "lr": lr, "momentum": 0.9, **optim},
                           scheduler={"name": "constant"})


def tiny_data(batch_size: int = 16, train_size: int = 64, image_size: int = 8, **kwargs: Any) -> SyntheticDataModule:
    return SyntheticDataModule(num_classes=4, in_channels=1, image_size=image_size, train_size=train_size,
                               val_size=32, test_size=32, batch_size=batch_size, seed=0, **kwargs)


def quiet_trainer(tmp_path, **kwargs: Any) -> pl.Trainer:
    defaults: dict[str, Any] = {
        "default_root_dir": str(tmp_path), "accelerator": "cpu", "devices": 1, "max_epochs": 1, "logger": False,
        "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False,
        "num_sanity_val_steps": 0, "limit_val_batches": 1,
    }
    defaults.update(kwargs)
    return pl.Trainer(**defaults)


# ---------------------------------------------------------------------------------- code as users write it
class NetSteps:
    """The forward and training step of a user's module whose network is ``self.net``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)


class UserSteps:
    """The steps of a user's classifier module (SGD with momentum); mixed into either Lightning package's module."""

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = tiny_vgg()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("test_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)


class LitUser(UserSteps, L.LightningModule):
    """The user's module written for ``import lightning as L`` (module level: spawned workers unpickle it)."""


def user_module_class(ns: ModuleType) -> type:
    """The same module written for the Lightning namespace ``ns`` (``pytorch_lightning`` or ``lightning.pytorch``)."""
    return type("LitUser", (UserSteps, ns.LightningModule), {})


def one_thread_fixture():
    """One intra-op thread for tiny models (with other jobs on the cores, 2 threads spin and run ~10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -------------------------------------------------------------------------------------------- engine checks
def randomize_norms(model: nn.Module) -> nn.Module:
    """Give BN/GN/LN non-trivial statistics and affine parameters so exactness checks mean something."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
            if isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)) and getattr(
                    m, "weight", None) is not None:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model


def assert_mask_equals_prune(model: nn.Module, x: torch.Tensor, plan: PruningPlan, include_inputs: bool = False,
                             tol: float = 1e-5) -> nn.Module:
    """mask(copy) and prune(copy) agree in eval mode (relative to the output scale); returns the pruned copy."""
    model.eval()
    masked, pruned = copy.deepcopy(model), copy.deepcopy(model)
    mask(masked, plan, include_inputs=include_inputs)
    prune(pruned, plan)
    with torch.no_grad():
        ym, yp = masked(x), pruned(x)
    assert ym.shape == yp.shape
    scale = max(ym.abs().max().item(), 1e-6)
    diff = (ym - yp).abs().max().item() / scale
    assert diff <= tol, f"mask vs prune differ by {diff:.3g} (relative)"
    return pruned


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------- settings shared by several test modules
NUM_CLASSES = 4  # the distillation tests' students and teachers
OPTIM = {"name": "sgd", "lr": 0.01, "momentum": 0.9}
SCHEDULER = {"name": "constant"}
# one short app run of a pruning method (+method=slimming, l1_filter, fpgm)
TINY_PRUNING_RUN = ["method.baseline.epochs=1", "method.compress.epochs=1", "method.finetune.epochs=1",
                    "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=2",
                    "trainer.enable_progress_bar=false", "latency.batch_size=0"]
# one short app run of a distillation method (+method=fsp, kd): digits (1x8x8, the default data), few batches per
# epoch (the synthetic data cannot be made 1x8x8 through the config: build_datamodule drops data.in_channels/
# image_size/num_classes before instantiating)
TINY_DISTILLATION_RUN = [
    "data.batch_size=64", "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=2", "method.teacher_fit.epochs=2", "method.stage1.epochs=1", "method.stage2.epochs=1",
]


def snapshot(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``net``'s state dict."""
    return {k: v.detach().clone() for k, v in net.state_dict().items()}
