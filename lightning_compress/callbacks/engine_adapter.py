"""The few things the callbacks need from the pruning engine, in one place.

* :class:`ChannelGroup`: a set of coupled channels the engine removes together, described by module names.
* :func:`channel_groups`: the network's prunable groups (from the engine's channel graph).
* :func:`bn_groups`: group key -> BatchNorm names normalising its channels (Network Slimming's prunable BNs).
* :func:`plan_from_keep`: a :class:`~lightning_compress.pruning.PruningPlan` from per-group keep masks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class ChannelGroup:
    """Coupled channels: ``producers`` output them (weight dim 0), ``bns`` normalise them; ``key`` names the group."""

    key: str
    size: int
    producers: tuple[str, ...] = ()
    bns: tuple[str, ...] = ()
    members: tuple[str, ...] = field(default=(), compare=False)


def channel_groups(net: nn.Module, example_inputs: torch.Tensor | None) -> list[ChannelGroup]:
    """Every prunable channel group of ``net`` (the engine's graph; frozen groups are left out)."""
    raise NotImplementedError("waiting for the pruning engine")


def bn_groups(net: nn.Module, example_inputs: torch.Tensor | None,
              ignored_layers: Sequence[str] = ()) -> dict[str, list[str]]:
    """Group key -> names of the BatchNorms of that group (groups without BN or touching an ignored layer: left out)."""
    import fnmatch

    out: dict[str, list[str]] = {}
    for group in channel_groups(net, example_inputs):
        names = (*group.producers, *group.bns)
        if not group.bns or any(fnmatch.fnmatchcase(n, p) for n in names for p in ignored_layers):
            continue
        out[group.key] = list(group.bns)
    return out


def plan_from_keep(net: nn.Module, example_inputs: torch.Tensor | None, groups: Sequence[ChannelGroup],
                   keep: Mapping[str, torch.Tensor]):
    """The engine's plan removing, in every group named in ``keep``, the channels whose mask is False."""
    raise NotImplementedError("waiting for the pruning engine")
