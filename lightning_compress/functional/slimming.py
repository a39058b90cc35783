"""Network Slimming math (Liu et al., ICCV 2017): the L1 sub-gradient on BN scales and the gamma summary.

The global threshold is :func:`lightning_compress.functional.pruning.global_threshold`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


@torch.no_grad()
def add_l1_subgradient(params: Iterable[Tensor], sparsity_lambda: float) -> int:
    """``p.grad += sparsity_lambda * sign(p)`` for every parameter that has a gradient; returns how many changed.

    This is the sub-gradient of ``sparsity_lambda * sum(|p|)`` (``sign(0) = 0``), the paper's ``updateBN``. Call it
    on *unscaled*, fully accumulated gradients, once per optimizer step. The addition runs in the gradient's dtype.
    """
    changed = 0
    for param in params:
        if param.grad is None:
            continue
        param.grad.add_(torch.sign(param.detach()).to(param.grad.dtype), alpha=sparsity_lambda)
        changed += 1
    return changed


@torch.no_grad()
def add_weight_decay_difference(params: Iterable[Tensor], applied: float, wanted: float) -> int:
    """``p.grad += (wanted - applied) * p``: an optimizer with coupled weight decay ``applied`` (SGD, Adam) then decays
    these parameters by ``wanted`` instead. Returns how many gradients changed."""
    changed = 0
    if wanted == applied:
        return changed
    for param in params:
        if param.grad is not None:
            param.grad.add_(param.detach().to(param.grad.dtype), alpha=wanted - applied)
            changed += 1
    return changed


def gamma_summary(values: Tensor, small: float = 1e-2) -> dict[str, float]:
    """Summary of ``|gamma|``: mean, median, max and the fraction below ``small`` (sparsity emerging)."""
    magnitudes = values.detach().float().abs().flatten()
    if magnitudes.numel() == 0:
        return {"mean": 0.0, "median": 0.0, "max": 0.0, "frac_below": 0.0}
    return {
        "mean": float(magnitudes.mean()),
        "median": float(magnitudes.median()),
        "max": float(magnitudes.max()),
        "frac_below": float((magnitudes < small).float().mean()),
    }
