"""Optimizers and learning-rate schedules from plain config dicts (YAML-friendly, no lambdas)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("constant", "multistep", "cosine", "onecycle")


def build_optimizer(params: Iterable[torch.nn.Parameter], name: str = "sgd", lr: float = 0.1, momentum: float = 0.9,
                    nesterov: bool = False, weight_decay: float = 1e-4) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov), Adam or AdamW with weight decay."""
    if name not in OPTIMIZERS:
        raise ValueError(f"`optim.name` must be one of {OPTIMIZERS}, got {name!r}.")
    if not lr > 0:
        raise ValueError(f"`optim.lr` must be > 0, got {lr!r}.")
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
                               weight_decay=weight_decay)
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return cls(params, lr=lr, weight_decay=weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, max_epochs: int, steps_per_epoch: int, name: str = "multistep",
                    milestones: Iterable[float] = (0.5, 0.75), gamma: float = 0.1,
                    warmup_fraction: float = 0.3) -> dict[str, Any] | None:
    """A Lightning ``lr_scheduler`` dict, or ``None`` for a constant rate.

    ``milestones`` are fractions of ``max_epochs`` (0.5, 0.75 is the papers' "divide by 10 at 50% and 75%"), so a
    schedule keeps its shape when a stage is shortened. ``cosine`` and ``onecycle`` step every batch.
    """
    if name not in SCHEDULERS:
        raise ValueError(f"`scheduler.name` must be one of {SCHEDULERS}, got {name!r}.")
    if name == "constant" or max_epochs <= 0:
        return None
    if name == "multistep":
        fractions = list(milestones)
        if any(not 0 < f < 1 for f in fractions):
            raise ValueError(f"`scheduler.milestones` must be fractions of max_epochs in (0, 1), got {fractions!r}.")
        epochs = sorted({max(1, round(f * max_epochs)) for f in fractions})
        sched = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=epochs, gamma=gamma)
        return {"scheduler": sched, "interval": "epoch"}
    total_steps = max(1, max_epochs * max(1, steps_per_epoch))
    if name == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    else:
        max_lr = [group["lr"] for group in optimizer.param_groups]
        sched = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps,
                                                    pct_start=warmup_fraction)
    return {"scheduler": sched, "interval": "step"}


def configure_optimization(trainer: Any, params: Iterable[torch.nn.Parameter], optim: Mapping[str, Any],
                           scheduler: Mapping[str, Any]) -> Any:
    """What a LightningModule's ``configure_optimizers`` returns for ``params`` under ``optim``/``scheduler``."""
    optimizer = build_optimizer(params, **optim)
    max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1
    steps = max(1, int(trainer.estimated_stepping_batches // max_epochs))
    lr_scheduler = build_scheduler(optimizer, max_epochs, steps, **scheduler)
    if lr_scheduler is None:
        return optimizer
    return {"optimizer": optimizer, "lr_scheduler": lr_scheduler}


def validate_optim_config(optim: Mapping[str, Any], scheduler: Mapping[str, Any]) -> None:
    """Fail early (at construction) on unknown names or keys instead of at the first ``configure_optimizers``."""
    _check_keys("optim", optim, {"name", "lr", "momentum", "nesterov", "weight_decay"})
    _check_keys("scheduler", scheduler, {"name", "milestones", "gamma", "warmup_fraction"})
    if optim.get("name", "sgd") not in OPTIMIZERS:
        raise ValueError(f"`optim.name` must be one of {OPTIMIZERS}, got {optim.get('name')!r}.")
    if scheduler.get("name", "multistep") not in SCHEDULERS:
        raise ValueError(f"`scheduler.name` must be one of {SCHEDULERS}, got {scheduler.get('name')!r}.")
    if not float(optim.get("lr", 0.1)) > 0:
        raise ValueError(f"`optim.lr` must be > 0, got {optim.get('lr')!r}.")


def _check_keys(arg: str, given: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ValueError(f"`{arg}` got unknown keys {unknown}; allowed: {sorted(allowed)}.")
