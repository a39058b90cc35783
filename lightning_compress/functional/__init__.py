"""Pure tensor math of both domains, behind the pruning engine, the callbacks and the distillation modules (no
Lightning, no model traversal).

* :mod:`.pruning`: the papers' decisions: filter norms, geometric-median distances, FPGM-mix, random scores, keep
  counts and rounding, the global threshold.
* :mod:`.slimming`: Network Slimming's L1 sub-gradient on BN scales, their own weight decay and the gamma summary.
* :mod:`.distillation`: the FSP matrix and loss (Yim et al. 2017) and Hinton's KD loss.
"""

from lightning_compress.functional.pruning import (
    distance_sums,
    filter_norms,
    fpgm_remove,
    global_threshold,
    keep_count,
    min_kept,
    norm_count,
    random_scores,
    round_up,
)
from lightning_compress.functional.slimming import add_l1_subgradient, add_weight_decay_difference, gamma_summary

__all__ = ["add_l1_subgradient", "add_weight_decay_difference", "distance_sums", "filter_norms", "fpgm_remove",
           "gamma_summary", "global_threshold", "keep_count", "min_kept", "norm_count", "random_scores", "round_up"]
