"""Network Slimming math (Liu et al., ICCV 2017): the L1 sub-gradient on BN scales and the global threshold."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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


def global_threshold_keep(scores: Mapping[str, Tensor], pruning_ratio: float,
                          min_channels: int | Mapping[str, int] = 1) -> dict[str, Tensor]:
    """Keep-masks from ONE threshold over all channels' scores, with a per-group floor.

    The ``floor(total * pruning_ratio)`` channels with the smallest scores over all groups are removed (ties broken by
    position, so the result is deterministic), then each group keeps at least ``min_channels`` channels (its
    highest-scoring ones; never more than it has), so no layer is emptied. With the floor active, fewer than
    ``pruning_ratio`` of the channels are removed.

    Args:
        scores: group name -> 1-D tensor of non-negative channel scores (e.g. ``|gamma|``).
        pruning_ratio: fraction in ``[0, 1)`` of all channels to remove.
        min_channels: channels each group keeps at least (an int, or a per-group mapping).

    Returns:
        group name -> bool tensor (True = keep), on the scores' devices.
    """
    if not 0.0 <= pruning_ratio < 1.0:
        raise ValueError(f"`pruning_ratio` must be in [0, 1), got {pruning_ratio!r}.")
    names = list(scores)
    if not names:
        return {}
    flat = torch.cat([scores[n].detach().float().flatten().cpu() for n in names])
    owner = torch.cat([torch.full((scores[n].numel(),), i, dtype=torch.long) for i, n in enumerate(names)])
    n_remove = int(flat.numel() * pruning_ratio)
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    if n_remove:
        order = torch.sort(flat, stable=True).indices
        keep[order[:n_remove]] = False
    result: dict[str, Tensor] = {}
    for i, name in enumerate(names):
        group_keep = keep[owner == i]
        group_scores = flat[owner == i]
        floor = min_channels[name] if isinstance(min_channels, Mapping) else min_channels
        floor = min(int(floor), group_keep.numel())
        if int(group_keep.sum()) < floor:
            top = torch.sort(group_scores, descending=True, stable=True).indices[:floor]
            group_keep = group_keep.clone()
            group_keep[top] = True
        result[name] = group_keep.to(scores[name].device)
    return result


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
