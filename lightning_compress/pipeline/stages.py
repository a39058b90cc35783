"""Stage building blocks: train, test, measure and save one network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_info
from torch import nn

from lightning_compress.pipeline.artifacts import save_stage_model
from lightning_compress.pipeline.builders import build_classifier, build_trainer
from lightning_compress.pipeline.context import RunContext
from lightning_compress.profiling import profile_model


def fit_classifier(ctx: RunContext, stage: str, net: nn.Module, epochs: int, callbacks: Sequence[Callback] = (),
                   optim: Mapping[str, Any] | None = None,
                   scheduler: Mapping[str, Any] | None = None) -> tuple[pl.LightningModule, pl.Trainer]:
    """Train ``net`` (in place) for ``epochs`` with ``cfg.module`` settings updated by ``optim``/``scheduler``."""
    module = build_classifier(ctx.cfg, net, optim_overrides=optim, scheduler_overrides=scheduler)
    trainer = build_trainer(ctx.cfg, stage, epochs, callbacks, checkpoint_dir=str(ctx.stage_dir(stage)))
    rank_zero_info(f"[lightning-compress] stage {stage!r}: {epochs} epochs")
    if epochs > 0:  # a resumed run continues from the stage's checkpoint (a finished fit only restores it)
        trainer.fit(module, datamodule=ctx.datamodule, ckpt_path=ctx.checkpoint_to_resume(stage), weights_only=True)
    return module, trainer


def test_accuracy(ctx: RunContext, module: pl.LightningModule, stage: str) -> float:
    """Test accuracy of ``module`` on the data module's test split (a fresh single-purpose Trainer)."""
    trainer = build_trainer(ctx.cfg, f"{stage}-test", max_epochs=1)
    metrics = trainer.test(module, datamodule=ctx.datamodule, verbose=False)
    return float(metrics[0]["test/acc"])


def measure(ctx: RunContext, net: nn.Module) -> dict[str, Any]:
    """Parameters, MACs, FLOPs and CPU latency of ``net`` on the data's input shape."""
    example = ctx.datamodule.example_input(1)
    latency_cfg = ctx.cfg.get("latency") or {}
    device = next(net.parameters()).device
    profile = profile_model(net, example.to(device), latency_batch_size=int(latency_cfg.get("batch_size", 0)) or None,
                            repeats=int(latency_cfg.get("repeats", 20)))
    return profile.as_dict()


def record_stage(ctx: RunContext, section: str, module: pl.LightningModule, net: nn.Module, plan: Any = None,
                 test_acc: float | None = None, model_cfg: DictConfig | None = None) -> dict[str, Any]:
    """Test, measure and save ``net`` (built from ``model_cfg``, default ``cfg.model``) as ``ctx.record[section]``."""
    acc = test_accuracy(ctx, module, section) if test_acc is None else test_acc
    entry = {"test_acc": acc, **measure(ctx, net)}
    model_cfg = ctx.cfg.model if model_cfg is None else model_cfg
    entry["model_path"] = str(save_stage_model(ctx.stage_dir(section) / "model.pt", net, model_cfg, plan,
                                               input_shape=ctx.datamodule.example_input(1).shape[1:]))
    ctx.record[section] = entry
    return entry


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, and the DataLoader workers."""
    pl.seed_everything(seed, workers=True, verbose=False)
