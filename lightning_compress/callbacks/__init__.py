"""Pruning callbacks for plain PyTorch Lightning, one paper each.

* :class:`L1FilterPruning` (Li et al., ICLR 2017): one-shot filter pruning in ``setup``; the fit retrains.
* :class:`NetworkSlimming` (Liu et al., ICCV 2017): L1 penalty on BN scales, global-threshold pruning at fit end.
* :class:`FPGMPruning` (He et al., CVPR 2019): epoch-wise soft pruning, physical removal at the end.
* :class:`BasePruningCallback` / :class:`CompressionCallback`: their common ground and the pipeline's contract.
* :class:`WidthPruning`: the controls of a pruning result (the same widths with random channels; Scratch-E).
* :func:`load_pruned_checkpoint`: a pruned checkpoint into a fresh instance of your own LightningModule.
"""

from lightning_compress.callbacks.base import BasePruningCallback, CompressionCallback
from lightning_compress.callbacks.checkpointing import load_pruned_checkpoint
from lightning_compress.callbacks.controls import WidthPruning
from lightning_compress.callbacks.fpgm import FPGMPruning
from lightning_compress.callbacks.l1_filter import L1FilterPruning
from lightning_compress.callbacks.slimming import NetworkSlimming

__all__ = ["BasePruningCallback", "CompressionCallback", "FPGMPruning", "L1FilterPruning", "NetworkSlimming",
           "WidthPruning", "load_pruned_checkpoint"]
