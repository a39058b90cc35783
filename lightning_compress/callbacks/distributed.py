"""Pruning decisions under DDP: rank 0 decides, every rank applies; and what ``ddp_spawn`` can hand back.

Weight-only criteria give the same plan on every rank (DDP keeps the weights identical), but the random criterion,
ties and floating-point reductions need not: the plan is computed on each rank and rank 0's is broadcast, so all
ranks prune the same channels. Under ``ddp_spawn`` the module of the launching process is never pruned (pruning
happened in the workers), so pruned tensors are left out of the state sent back to it.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_warn

from lightning_compress.callbacks._compat import exclude_from_returned_state
from lightning_compress.pruning import PruningPlan


def broadcast(trainer: pl.Trainer, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (identity on a single process)."""
    if trainer.world_size <= 1:
        return obj
    return trainer.strategy.broadcast(obj, src=0)


def broadcast_plan(trainer: pl.Trainer, plan: PruningPlan) -> PruningPlan:
    """Rank 0's plan on every rank (sent as plain data)."""
    if trainer.world_size <= 1:
        return plan
    return PruningPlan.from_dict(broadcast(trainer, plan.to_dict()))


def hand_back_unpruned_only(pl_module: pl.LightningModule, net_path: str, plan: PruningPlan, method: str) -> None:
    """In a ``ddp_spawn`` worker after pruning: send back only the tensors of layers the plan left alone."""
    base = f"{net_path}." if net_path else ""
    exclude_from_returned_state(pl_module, tuple(f"{base}{name}." for name in plan.layers))
    rank_zero_warn(
        f"{method} pruned the network inside `ddp_spawn` workers; the main process's module is NOT pruned and only "
        "its unpruned layers receive the trained weights. Load the pruned result with "
        "`load_pruned_checkpoint(module, trainer.checkpoint_callback.last_model_path)`, or use strategy='ddp'.")
