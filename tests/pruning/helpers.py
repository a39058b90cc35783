"""Shared helpers for the pruning tests."""

from __future__ import annotations

import copy

import torch
from torch import nn

from lightning_compress.pruning import PruningPlan, build_channel_graph, mask, prune
from lightning_compress.pruning.selection import select_on_graph


def randomize_norms(model: nn.Module) -> nn.Module:
    """Give BN/GN/LN non-trivial statistics and affine parameters so exactness checks mean something."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
            if isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)) and getattr(
                    m, "weight", None) is not None:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model


def random_plan(model: nn.Module, x: torch.Tensor, ratio: float = 0.4, **kwargs) -> PruningPlan:
    graph = build_channel_graph(model, x)
    return select_on_graph(graph, model, ratio, importance="random", **kwargs)


def assert_mask_equals_prune(model: nn.Module, x: torch.Tensor, plan: PruningPlan, include_inputs: bool = False,
                             tol: float = 1e-5) -> nn.Module:
    """mask(copy) and prune(copy) agree in eval mode (relative to the output scale); returns the pruned copy."""
    model.eval()
    masked, pruned = copy.deepcopy(model), copy.deepcopy(model)
    mask(masked, plan, include_inputs=include_inputs)
    prune(pruned, plan)
    with torch.no_grad():
        ym, yp = masked(x), pruned(x)
    assert ym.shape == yp.shape
    scale = max(ym.abs().max().item(), 1e-6)
    diff = (ym - yp).abs().max().item() / scale
    assert diff <= tol, f"mask vs prune differ by {diff:.3g} (relative)"
    return pruned


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
