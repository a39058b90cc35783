"""The few things the callbacks need from the pruning engine, in one place (a thin view of its ChannelGraph).

* :class:`ChannelGroup`: a prunable set of coupled channels, by module names, with each producer's/BN's index map.
* :func:`channel_groups`: the network's prunable groups (``build_channel_graph``; frozen groups are left out).
* :func:`bn_groups`: group key -> BatchNorm names normalising its channels (Network Slimming's prunable BNs).
* :func:`gather`: per-index values of one member (a filter norm, ``|gamma|``) scattered onto group positions.
* :func:`plan_from_keep`: a :class:`~lightning_compress.pruning.PruningPlan` from per-group keep masks.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

_BN_PREFIX = "BatchNorm"


@dataclass(frozen=True, eq=False)
class ChannelGroup:
    """Coupled channels: ``producers`` output them (weight dim 0), ``bns`` normalise them; ``key`` names the group.

    ``index_maps[module] = (indices, positions)``: that module's channel ``indices[i]`` is group position
    ``positions[i]`` (a producer may hold only a slice of the group, e.g. before a concat).
    """

    key: str
    size: int
    producers: tuple[str, ...]
    bns: tuple[str, ...]
    index_maps: Mapping[str, tuple[np.ndarray, np.ndarray]] = field(repr=False)
    graph: Any = field(repr=False, default=None)


def channel_groups(net: nn.Module, example_inputs: torch.Tensor | None) -> list[ChannelGroup]:
    """Every prunable channel group of ``net``, in graph order.

    Raises:
        ValueError: if ``example_inputs`` is None (the graph is traced from one input).
    """
    from lightning_compress.pruning import build_channel_graph

    if example_inputs is None:
        raise ValueError("`input_shape` must be given: no example input could be found (no datamodule with "
                         "`example_input`, no `example_input_array`, no train batch).")
    was_training = net.training
    try:
        graph = build_channel_graph(net, example_inputs)
    finally:
        net.train(was_training)
    groups = []
    for group in graph.prunable_groups:
        producers = tuple(m.module for m in group.members if m.slot == "out")
        bns = tuple(m.module for m in group.members
                    if m.slot == "channels" and m.module_type.startswith(_BN_PREFIX))
        maps = {m.module: (m.indices, m.positions) for m in group.members if m.slot in ("out", "channels")}
        groups.append(ChannelGroup(group.id, group.size, tuple(dict.fromkeys(producers)),
                                   tuple(dict.fromkeys(bns)), maps, graph))
    return groups


def bn_groups(groups: Sequence[ChannelGroup], ignored_layers: Sequence[str] = ()) -> dict[str, ChannelGroup]:
    """Groups with at least one affine BatchNorm and no member matching ``ignored_layers``, by key."""
    out: dict[str, ChannelGroup] = {}
    for group in groups:
        names = (*group.producers, *group.bns)
        if not group.bns or any(fnmatch.fnmatchcase(n, p) for n in names for p in ignored_layers):
            continue
        out[group.key] = group
    return out


def gather(group: ChannelGroup, module: str, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``values`` (one per channel of ``module``) on group positions: ``(scattered, present)`` of length ``size``."""
    indices, positions = group.index_maps[module]
    out = torch.zeros(group.size, dtype=values.dtype)
    present = torch.zeros(group.size, dtype=torch.bool)
    pos = torch.as_tensor(np.asarray(positions), dtype=torch.long)
    out[pos] = values.detach().cpu()[torch.as_tensor(np.asarray(indices), dtype=torch.long)]
    present[pos] = True
    return out, present


def plan_from_keep(groups: Sequence[ChannelGroup], keep: Mapping[str, torch.Tensor]):
    """The engine's plan removing, in every group named in ``keep``, the positions whose mask is False."""
    by_key = {g.key: g for g in groups}
    removed: dict[str, list[int]] = {}
    graph = None
    for key, mask in keep.items():
        group = by_key[key]
        graph = group.graph if graph is None else graph
        positions = torch.nonzero(~mask.cpu().bool()).flatten().tolist()
        if positions:
            removed[key] = positions
    if graph is None:
        from lightning_compress.pruning import PruningPlan

        return PruningPlan()
    return graph.plan(removed)
