"""Channel importance of a group: pure functions ``(group, model) -> scores`` (higher = keep).

Conventions (a group is scored as a whole):
- ``l1`` / ``l2``: norm of the output-side weights (conv filters / linear rows, bias excluded) of every producer in
  the group, i.e. of the concatenation of their rows at each position. For a group with a single conv this is
  exactly Li et al.'s filter L1 norm.
- ``fpgm``: sum of Euclidean distances from a position's concatenated producer rows to all others (He et al.); small
  = close to the geometric median = redundant.
- ``bn_scale``: mean |gamma| over the group's BatchNorm-like layers (Liu et al.); groups without one get no score.
- ``random``: uniform random (``torch.manual_seed`` controls it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from .graph import ChannelGroup, Member
from .rules import get_module_rule

Importance = Callable[[ChannelGroup, nn.Module], torch.Tensor | None]


def _rule_tensors(
    group: ChannelGroup, model: nn.Module, slot: str, read: Callable[[Any, nn.Module], torch.Tensor | None]
) -> Iterator[tuple[Member, nn.Module, torch.Tensor]]:
    """``(member, module, tensor)`` for the ``slot`` members whose module rule yields a tensor through ``read``."""
    for m in group.members:
        if m.slot != slot:
            continue
        module = model.get_submodule(m.module)
        rule = get_module_rule(module)
        tensor = read(rule, module) if rule is not None else None
        if tensor is not None:
            yield m, module, tensor


def _out_members(group: ChannelGroup, model: nn.Module) -> list[tuple[Member, torch.Tensor]]:
    return [(m, rows.detach()) for m, _, rows in _rule_tensors(group, model, "out", lambda r, mod: r.out_rows(mod))]


def magnitude(group: ChannelGroup, model: nn.Module, p: int = 1) -> torch.Tensor:
    """Lp norm over every producer's output rows at each group position."""
    members = _out_members(group, model)
    scores = None
    for m, rows in members:
        vals = rows[torch.as_tensor(m.indices, device=rows.device)].float()
        per = vals.abs().sum(1) if p == 1 else vals.pow(2).sum(1)
        if scores is None:
            scores = torch.zeros(group.size, device=rows.device)
        scores.index_add_(0, torch.as_tensor(m.positions, device=rows.device), per)
    if scores is None:
        return torch.zeros(group.size)
    return scores if p == 1 else scores.sqrt()


def l1(group: ChannelGroup, model: nn.Module) -> torch.Tensor:
    return magnitude(group, model, 1)


def l2(group: ChannelGroup, model: nn.Module) -> torch.Tensor:
    return magnitude(group, model, 2)


def position_vectors(group: ChannelGroup, model: nn.Module) -> torch.Tensor:
    """(size, features) matrix: each position's producer rows concatenated (zero-padded where a member is absent)."""
    parts = []
    for m, rows in _out_members(group, model):
        counts = np.bincount(m.positions, minlength=group.size)
        r = int(counts.max())
        order = np.argsort(m.positions, kind="stable")
        pos_sorted = m.positions[order]
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.arange(len(order)) - first[pos_sorted]
        block = torch.zeros(group.size, r, rows.shape[1], device=rows.device)
        block[torch.as_tensor(pos_sorted), torch.as_tensor(rank)] = rows[torch.as_tensor(m.indices[order])].float()
        parts.append(block.flatten(1))
    if not parts:
        return torch.zeros(group.size, 1)
    return torch.cat(parts, 1)


def fpgm(group: ChannelGroup, model: nn.Module) -> torch.Tensor:
    """Sum of distances to all other positions (FPGM criterion)."""
    vectors = position_vectors(group, model)
    return torch.cdist(vectors[None], vectors[None])[0].sum(1)


def bn_scale(group: ChannelGroup, model: nn.Module) -> torch.Tensor | None:
    """Mean |gamma| over the group's BN-like layers; None when the group has none (then it is not pruned)."""
    total = torch.zeros(group.size)
    count = torch.zeros(group.size)
    for m, module, gamma in _rule_tensors(group, model, "channels", lambda r, mod: r.scale(mod)):
        if not isinstance(module, nn.modules.batchnorm._NormBase):
            continue
        vals = gamma.detach().abs().float().cpu()[torch.as_tensor(m.indices)]
        total.index_add_(0, torch.as_tensor(m.positions), vals)
        count.index_add_(0, torch.as_tensor(m.positions), torch.ones_like(vals))
    if (count == 0).any():
        return None
    return total / count


def random(group: ChannelGroup, model: nn.Module) -> torch.Tensor:
    return torch.rand(group.size)


IMPORTANCES: dict[str, Importance] = {"l1": l1, "l2": l2, "fpgm": fpgm, "bn_scale": bn_scale, "random": random}
