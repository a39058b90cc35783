"""Both Lightning packages: every callback and every module of the project, driven by a ``lightning.Trainer`` and by a
``pytorch_lightning.Trainer`` (fit, reload from the checkpoint ``ModelCheckpoint`` kept, export).

The callbacks run on a module written the way a user of each package writes one (``import lightning as L`` /
``import pytorch_lightning as pl``), whose network is ``self.model``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from lightning_utilities.core.overrides import is_overridden
from torch import nn

from lightning_compress import FPGMPruning, FSPDistillation, KnowledgeDistillation, L1FilterPruning, NetworkSlimming
from lightning_compress._namespaces import (
    LIGHTNING_MODULE_TYPES,
    NAMESPACES,
    is_lightning_module,
    is_lightning_module_class,
    namespace_of,
)
from lightning_compress.callbacks import load_pruned_checkpoint
from lightning_compress.callbacks._compat import is_spawning
from lightning_compress.modules import ImageClassifier
from lightning_compress.portable import export_and_check
from tests.helpers import one_thread_fixture, tiny_data, tiny_vgg, user_module_class

NAMESPACE_NAMES = ("pytorch_lightning", "lightning.pytorch")
INPUT_SHAPE = (1, 8, 8)


one_thread = pytest.fixture(autouse=True)(one_thread_fixture)


def test_both_namespaces_are_installed() -> None:
    """The test environment has both packages (``dev`` extra), so the matrix below runs both."""
    assert [ns.__name__ for ns in NAMESPACES] == list(NAMESPACE_NAMES)





def trainer_of(ns: ModuleType, tmp_path: Path, callbacks: list, **kwargs: Any) -> Any:
    checkpoint = ns.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    settings = {"default_root_dir": str(tmp_path), "accelerator": "cpu", "devices": 1, "max_epochs": 2,
                "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
                "num_sanity_val_steps": 0, "limit_val_batches": 1, **kwargs}
    return ns.Trainer(callbacks=[*callbacks, checkpoint], **settings)


def export_parity(net: nn.Module, tmp_path: Path) -> None:
    report = export_and_check(net.eval(), INPUT_SHAPE, tmp_path / "net.pt2", "pt2")
    assert report["parity"]["passed"], report["parity"]


CALLBACKS = {"l1": lambda: L1FilterPruning(pruning_ratio=0.5),
             "slimming": lambda: NetworkSlimming(pruning_ratio=0.5),
             "fpgm": lambda: FPGMPruning(pruning_ratio=0.5)}


@pytest.mark.parametrize("namespace", NAMESPACE_NAMES)
@pytest.mark.parametrize("method", sorted(CALLBACKS))
def test_callback_on_a_user_module(namespace: str, method: str, tmp_path: Path) -> None:
    ns = importlib.import_module(namespace)
    module = user_module_class(ns)()
    callback = CALLBACKS[method]()
    widths = {n: m.out_channels for n, m in module.model.named_modules() if isinstance(m, nn.Conv2d)}
    trainer = trainer_of(ns, tmp_path, [callback])
    trainer.fit(module, datamodule=tiny_data())
    assert callback.plan is not None and callback.net is module.model
    pruned = {n: m.out_channels for n, m in module.model.named_modules() if isinstance(m, nn.Conv2d)}
    assert sum(pruned.values()) < sum(widths.values())

    trainer.save_checkpoint(tmp_path / "pruned.ckpt")
    reloaded = load_pruned_checkpoint(type(module), tmp_path / "pruned.ckpt")
    assert type(reloaded) is type(module)
    assert {n: m.out_channels for n, m in reloaded.model.named_modules() if isinstance(m, nn.Conv2d)} == pruned
    x = torch.randn(3, *INPUT_SHAPE)
    torch.testing.assert_close(reloaded.eval()(x), module.eval()(x))
    export_parity(reloaded.model, tmp_path)


def module_of(kind: str) -> Any:
    optim = {"name": "sgd", "lr": 0.01, "momentum": 0.9}
    if kind == "classifier":
        return ImageClassifier(tiny_vgg(), num_classes=4, optim=optim, scheduler={"name": "constant"})
    teacher = tiny_vgg()
    if kind == "fsp":
        return FSPDistillation(tiny_vgg(), teacher, num_classes=4, optim=optim, input_shape=list(INPUT_SHAPE))
    return KnowledgeDistillation(tiny_vgg(), teacher, num_classes=4, optim=optim)


@pytest.mark.parametrize("namespace", NAMESPACE_NAMES)
@pytest.mark.parametrize("kind", ["classifier", "fsp", "kd"])
def test_project_module_under_each_trainer(namespace: str, kind: str, tmp_path: Path) -> None:
    ns = importlib.import_module(namespace)
    module = module_of(kind)
    assert isinstance(module, ns.LightningModule)
    trainer = trainer_of(ns, tmp_path, [])
    trainer.fit(module, datamodule=tiny_data())
    assert trainer.global_step > 0
    trainer.test(module, datamodule=tiny_data(), verbose=False)

    reloaded = load_pruned_checkpoint(type(module), trainer.checkpoint_callback.last_model_path, net=tiny_vgg(),
                                      **({} if kind == "classifier" else {"teacher": None}))
    x = torch.randn(3, *INPUT_SHAPE)
    torch.testing.assert_close(reloaded.net.eval()(x), module.net.eval()(x))
    export_parity(reloaded.net, tmp_path)


@pytest.mark.parametrize("namespace", NAMESPACE_NAMES)
def test_default_hooks_look_not_overridden_to_either_trainer(namespace: str) -> None:
    """Lightning decides what a module implements by comparing code objects with its own namespace's base class;
    the hooks ImageClassifier does not define must read as not overridden once attached to either Trainer (else
    e.g. ``configure_sharded_model`` + ``configure_model`` are refused)."""
    ns = importlib.import_module(namespace)
    module = module_of("classifier")
    module.trainer = ns.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    for hook in ("configure_sharded_model", "configure_model", "train_dataloader", "predict_step",
                 "on_train_epoch_end", "lr_scheduler_step", "optimizer_step"):
        assert not is_overridden(hook, module, ns.LightningModule), hook
    for hook in ("training_step", "validation_step", "configure_optimizers", "forward"):
        assert is_overridden(hook, module, ns.LightningModule), hook


def test_type_checks_accept_both_namespaces() -> None:
    import lightning.pytorch as lp
    import pytorch_lightning as pl

    for ns in (pl, lp):
        user = user_module_class(ns)
        assert is_lightning_module_class(user) and is_lightning_module(user())
        assert namespace_of(user) is ns and namespace_of(ns.Trainer) is ns
    assert not is_lightning_module(nn.Linear(1, 1)) and not is_lightning_module_class(nn.Linear)
    assert namespace_of(nn.Linear(1, 1)) is None
    assert all(issubclass(ImageClassifier, cls) for cls in LIGHTNING_MODULE_TYPES)
    with pytest.raises(TypeError, match="`module_cls_or_instance` must be a LightningModule.*lightning.pytorch"):
        load_pruned_checkpoint(nn.Linear, "unused.ckpt")


@pytest.mark.parametrize("namespace", NAMESPACE_NAMES)
def test_spawn_detection_under_each_namespace(namespace: str) -> None:
    ns = importlib.import_module(namespace)
    spawn = ns.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False, enable_progress_bar=False)
    single = ns.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    assert is_spawning(spawn) and not is_spawning(single)


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(CALLBACKS))
def test_ddp_spawn_under_lightning_does_not_crash(method: str, tmp_path: Path) -> None:
    """The issue's crash: under ``lightning`` + ``ddp_spawn`` the spawn detection missed and the main process got a
    state dict of the wrong size. Now the main process keeps its unpruned module (documented) and no crash."""
    import lightning.pytorch as lp

    from tests.helpers import LitUser  # module level: spawned workers unpickle it

    module = LitUser()
    callback = CALLBACKS[method]()
    trainer = trainer_of(lp, tmp_path, [callback], strategy="ddp_spawn", devices=2, limit_train_batches=2)
    trainer.fit(module, datamodule=tiny_data())
    assert module.model.features.conv1.out_channels == 8  # pruned in the workers only
    if method == "l1":  # pruned in setup: the workers' last checkpoint holds the pruned network
        reloaded = load_pruned_checkpoint(LitUser, tmp_path / "ckpt" / "last.ckpt")
        assert reloaded.model.features.conv1.out_channels == 4
    if method == "slimming":  # cut in the workers' on_train_end, saved right after it
        reloaded = load_pruned_checkpoint(LitUser, tmp_path / "ckpt" / "pruned.ckpt")
        assert reloaded.model.features.conv1.out_channels < 8
