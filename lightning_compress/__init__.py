"""lightning-compress: structured pruning and distillation for PyTorch Lightning, composed with Hydra.

The public API::

    from lightning_compress import (L1FilterPruning, NetworkSlimming, FPGMPruning,          # pruning callbacks
                                    FSPDistillation, KnowledgeDistillation,                  # distillation modules
                                    select_channels, prune, mask, PruningPlan,               # the engine (pure torch)
                                    load_pruned_checkpoint)

The engine names import eagerly (pure torch). The Lightning-based names are declared for IDEs and type checkers
(``TYPE_CHECKING``) and load on first access, so that ``import lightning_compress.pruning`` (or ``.cost``,
``.functional``) never loads Lightning or Hydra. Everything else (modules whose names start with ``_``, and the
helpers inside ``callbacks``, ``pipeline``, ``pruning`` not re-exported by their package) is internal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lightning_compress._lazy import lazy_getattr
from lightning_compress.pruning import PruningPlan, mask, prune, select_channels

if TYPE_CHECKING:
    from lightning_compress.callbacks import FPGMPruning, L1FilterPruning, NetworkSlimming, load_pruned_checkpoint
    from lightning_compress.distillation import FSPDistillation, KnowledgeDistillation

__version__ = "0.1.0"

_LIGHTNING = {"L1FilterPruning": "lightning_compress.callbacks", "NetworkSlimming": "lightning_compress.callbacks",
              "FPGMPruning": "lightning_compress.callbacks", "load_pruned_checkpoint": "lightning_compress.callbacks",
              "FSPDistillation": "lightning_compress.distillation",
              "KnowledgeDistillation": "lightning_compress.distillation"}

__all__ = ["FPGMPruning", "FSPDistillation", "KnowledgeDistillation", "L1FilterPruning", "NetworkSlimming",
           "PruningPlan", "load_pruned_checkpoint", "mask", "prune", "select_channels"]


__getattr__ = lazy_getattr(__name__, _LIGHTNING)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
