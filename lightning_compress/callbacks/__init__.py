"""Pruning callbacks for plain PyTorch Lightning: one paper each, plus their shared base.

* :class:`L1FilterPruning` (Li et al., ICLR 2017): one-shot filter pruning in ``setup``; the fit retrains.
* :class:`NetworkSlimming` (Liu et al., ICCV 2017): L1 penalty on BN scales, global-threshold pruning at fit end.
* :class:`FPGMPruning` (He et al., CVPR 2019): epoch-wise soft pruning, physical removal at the end.
* :class:`BasePruningCallback`: the common ground (layer globs, plans in checkpoints, logging, DDP broadcast).
* :func:`load_pruned_checkpoint`: a pruned checkpoint into a fresh instance of your own LightningModule.

Names are imported lazily, so ``import lightning_compress.callbacks`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BasePruningCallback": "lightning_compress.callbacks.base",
    "CHECKPOINT_KEY": "lightning_compress.callbacks.base",
    "L1FilterPruning": "lightning_compress.callbacks.l1_filter",
    "NetworkSlimming": "lightning_compress.callbacks.slimming",
    "FPGMPruning": "lightning_compress.callbacks.fpgm",
    "sensitivity_analysis": "lightning_compress.callbacks.sensitivity",
    "derive_ratios": "lightning_compress.callbacks.sensitivity",
    "load_pruned_checkpoint": "lightning_compress.callbacks.checkpoint",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
