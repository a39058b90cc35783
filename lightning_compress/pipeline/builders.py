"""Instantiate data, networks, LightningModules and Trainers from the Hydra config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from torch import nn

from lightning_compress.modules import ImageClassifier


def build_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    """The data module of ``cfg.data``; its shape keys (``num_classes``, ...) are arguments the module checks."""
    return hydra.utils.instantiate(cfg.data)


def build_net(model_cfg: DictConfig) -> nn.Module:
    """A fresh, untrained network from a ``conf/model`` entry."""
    net = hydra.utils.instantiate(model_cfg)
    if not isinstance(net, nn.Module):
        raise TypeError(f"`model._target_` must build an nn.Module, got {type(net).__name__}.")
    return net


def build_classifier(cfg: DictConfig, net: nn.Module, optim_overrides: Mapping[str, Any] | None = None,
                     scheduler_overrides: Mapping[str, Any] | None = None) -> ImageClassifier:
    """Wrap ``net`` in an :class:`ImageClassifier` with ``cfg.module`` settings, updated by the stage's overrides."""
    module_cfg = OmegaConf.to_container(cfg.module, resolve=True)
    optim = {**module_cfg.get("optim", {}), **dict(optim_overrides or {})}
    scheduler = {**module_cfg.get("scheduler", {}), **dict(scheduler_overrides or {})}
    return ImageClassifier(net, num_classes=int(cfg.data.num_classes), optim=optim, scheduler=scheduler,
                           channels_last=bool(module_cfg.get("channels_last", False)))


def build_trainer(cfg: DictConfig, stage: str, max_epochs: int, callbacks: Sequence[Callback] = (),
                  checkpoint_dir: str | None = None) -> pl.Trainer:
    """A Trainer from ``cfg.trainer`` for one stage: its own epochs, logger version and checkpoint folder."""
    loggers = [hydra.utils.instantiate(c, version=stage) for c in (cfg.get("logger") or {}).values() if c]
    all_callbacks = list(callbacks)
    for callback_cfg in (cfg.get("callbacks") or {}).values():
        if callback_cfg:
            all_callbacks.append(hydra.utils.instantiate(callback_cfg))
    enable_checkpointing = bool(cfg.trainer.get("enable_checkpointing", True))
    if enable_checkpointing and checkpoint_dir is not None:
        all_callbacks.append(ModelCheckpoint(dirpath=checkpoint_dir, filename="{epoch}", save_last=True))
    return hydra.utils.instantiate(
        cfg.trainer, max_epochs=max_epochs, callbacks=all_callbacks, logger=loggers or False,
        default_root_dir=cfg.paths.output_dir, enable_checkpointing=enable_checkpointing,
    )
