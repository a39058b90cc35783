"""Channel importance of a group: small classes that read a group's tensors and call the paper math.

The math itself (norms, geometric-median distances, FPGM-mix, random scores) lives once in
:mod:`lightning_compress.functional.pruning`; these classes only gather the tensors of a :class:`ChannelGroup`.
An importance has ``scores(group, model) -> Tensor | None`` (one score per group position, higher = keep; ``None``:
the criterion has nothing to score in this group, which is then left whole) and ``remove(group, model, n)`` (the ``n``
positions to remove; by default the ``n`` lowest scores, ties to the lower position).

* :class:`Magnitude` (``"l1"``, ``"l2"``): norm of the producers' output rows at each position (the concatenation
  of every producing conv's filter there). For a group with one conv this is Li et al.'s filter L1 norm.
* :class:`GeometricMedian` (``"fpgm"``): He et al.'s distance to the other filters; ``norm_ratio`` for FPGM-mix.
* :class:`BNScale` (``"bn_scale"``): ``|gamma|`` of the group's BatchNorms (Liu et al.), combined by ``reduce`` when
  several BNs share the channels (``residual="couple"``).
* :class:`Random` (``"random"``): a control; ``seed=None`` draws from torch's global generator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from lightning_compress.functional.pruning import (
    DISTANCES,
    distance_sums,
    filter_norms,
    fpgm_remove,
    norm_count,
    random_scores,
)

from .graph import ChannelGroup, Member
from .rules import get_module_rule

BN_REDUCTIONS = ("mean", "sum", "max")


@runtime_checkable
class Importance(Protocol):
    """What ``select_channels(importance=...)`` accepts besides a name (see the module docstring)."""

    def scores(self, group: ChannelGroup, model: nn.Module) -> torch.Tensor | None: ...


def remove_lowest(importance: Any, group: ChannelGroup, model: nn.Module, n: int) -> list[int] | None:
    """The ``n`` positions ``importance`` removes from ``group`` (its own ``remove`` if it has one); ``None``: none."""
    if hasattr(importance, "remove"):
        return importance.remove(group, model, n)
    scores = group_scores(importance, group, model)
    return None if scores is None else torch.argsort(scores, stable=True)[:n].tolist()


def group_scores(importance: Any, group: ChannelGroup, model: nn.Module) -> torch.Tensor | None:
    """``importance``'s scores of ``group`` as a flat CPU float tensor, checked for length."""
    # hasattr: what isinstance(importance, Importance) checks, without the runtime Protocol check's ~60 us per group
    fn = importance.scores if hasattr(importance, "scores") else importance
    scores = fn(group, model)
    if scores is None:
        return None
    scores = torch.as_tensor(scores).detach().float().flatten().cpu()
    if scores.numel() != group.size:
        raise ValueError(f"`importance` must return {group.size} scores for group {group.id!r}, got {scores.numel()}.")
    return scores


def _rule_tensors(group: ChannelGroup, model: nn.Module, slot: str, read: Callable[[Any, nn.Module], Any]
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


def position_vectors(group: ChannelGroup, model: nn.Module) -> torch.Tensor | None:
    """``(size, features)``: each position's producer rows concatenated (zero-padded where a producer is absent);
    ``None`` when the group has no producer with weights."""
    parts = []
    for m, _, rows in _rule_tensors(group, model, "out", lambda rule, module: rule.out_rows(module)):
        rows = rows.detach()
        counts = np.bincount(m.positions, minlength=group.size)
        order = np.argsort(m.positions, kind="stable")
        if len(order) == group.size and counts.max() == 1:  # one row per position (the common case): a gather
            parts.append(rows[torch.as_tensor(m.indices[order])].float())
            continue
        pos_sorted = m.positions[order]
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.arange(len(order)) - first[pos_sorted]
        block = torch.zeros(group.size, int(counts.max()), rows.shape[1], device=rows.device)
        block[torch.as_tensor(pos_sorted), torch.as_tensor(rank)] = rows[torch.as_tensor(m.indices[order])].float()
        parts.append(block.flatten(1))
    return torch.cat(parts, 1) if parts else None


def _whole(member: Member, size: int, rows: int) -> bool:
    """Whether ``member``'s slot index i is group position i for every i (no gather or scatter needed)."""
    n = len(member.indices)
    return n == size == rows and bool((member.indices == member.positions).all()) and bool(
        (member.positions == np.arange(n)).all())


@dataclass(frozen=True)
class Magnitude:
    """Lp norm of each position's filters (``p=1``: Li et al.); ``largest=True`` scores the reverse (an ablation)."""

    p: int = 1
    largest: bool = False

    def __post_init__(self) -> None:
        if self.p not in (1, 2):
            raise ValueError(f"`p` must be 1 or 2, got {self.p!r}.")

    def scores(self, group: ChannelGroup, model: nn.Module) -> torch.Tensor | None:
        """The norm of each position's :func:`position_vectors` row, computed producer by producer (the p-th powers
        of each producer's row norms add up), so no concatenated copy of the weights is made."""
        powers = None
        for m, _, rows in _rule_tensors(group, model, "out", lambda rule, module: rule.out_rows(module)):
            norms = filter_norms(rows, self.p)
            if powers is None and _whole(m, group.size, len(norms)):  # the common case: rows are the positions
                powers = norms if self.p == 1 else norms**2
                continue
            norms = norms[torch.as_tensor(m.indices, device=rows.device)]
            if powers is None:
                powers = torch.zeros(group.size, dtype=norms.dtype, device=norms.device)
            at = torch.as_tensor(m.positions, device=norms.device)
            powers.index_add_(0, at, norms if self.p == 1 else norms**2)
        if powers is None:
            return None
        norms = powers if self.p == 1 else powers.sqrt()
        return -norms if self.largest else norms


@dataclass(frozen=True)
class GeometricMedian:
    """FPGM: remove the filters nearest the geometric median; FPGM-mix takes ``floor(size * norm_ratio)`` of them
    by smallest L2 norm first (the paper's text: 40% = 30% by GM + 10% by norm is ``norm_ratio=0.1``)."""

    distance: str = "l2"
    norm_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.distance not in DISTANCES:
            raise ValueError(f"`distance` must be one of {DISTANCES}, got {self.distance!r}.")
        if isinstance(self.norm_ratio, bool) or not 0.0 <= self.norm_ratio < 1.0:
            raise ValueError(f"`norm_ratio` must be a float in [0, 1), got {self.norm_ratio!r}.")

    def scores(self, group: ChannelGroup, model: nn.Module) -> torch.Tensor | None:
        rows = position_vectors(group, model)
        return None if rows is None else distance_sums(rows, self.distance)

    def remove(self, group: ChannelGroup, model: nn.Module, n: int) -> list[int] | None:
        rows = position_vectors(group, model)
        if rows is None:
            return None
        return fpgm_remove(rows, n, norm_count(group.size, n, self.norm_ratio), self.distance).tolist()


def bn_scales(group: ChannelGroup, model: nn.Module) -> list[tuple[Member, str, torch.Tensor]]:
    """``(member, module name, gamma)`` for every batch norm that normalises the group's channels, once per module:
    a ``_BatchNorm`` of any subclass (timm's ``BatchNormAct2d``, which calls ``F.batch_norm`` itself, included) and
    a module calling ``F.batch_norm`` with its own ``weight`` and ``running_var`` (both members of the group)."""
    found: dict[str, tuple[Member, str, torch.Tensor]] = {}
    for m in group.members:
        if m.module in found or m.slot not in ("channels", "weight[0]"):
            continue
        module = model.get_submodule(m.module)
        gamma = getattr(module, "weight", None)
        if not isinstance(gamma, torch.Tensor) or gamma.dim() != 1:
            continue
        if (m.slot == "channels" and isinstance(module, nn.modules.batchnorm._BatchNorm)) or (
                m.slot == "weight[0]" and group.member(m.module, "running_var[0]") is not None):
            found[m.module] = (m, m.module, gamma)
    return list(found.values())


@dataclass(frozen=True)
class BNScale:
    """``|gamma|`` of the group's BatchNorms (Network Slimming); ``reduce`` combines coupled BNs (mean|sum|max)."""

    reduce: str = "mean"

    def __post_init__(self) -> None:
        if self.reduce not in BN_REDUCTIONS:
            raise ValueError(f"`reduce` must be one of {BN_REDUCTIONS}, got {self.reduce!r}.")

    def scores(self, group: ChannelGroup, model: nn.Module) -> torch.Tensor | None:
        values = []
        for m, _, gamma in bn_scales(group, model):
            column = torch.full((group.size,), float("nan"))
            column[torch.as_tensor(m.positions)] = gamma.detach().abs().float().cpu()[torch.as_tensor(m.indices)]
            values.append(column)
        if not values:
            return None
        stacked = torch.stack(values)
        if torch.isnan(stacked).all(0).any():  # a position no BN normalises: the criterion cannot rank it
            return None
        if self.reduce == "mean":
            return stacked.nanmean(0)
        if self.reduce == "sum":
            return stacked.nansum(0)
        return stacked.nan_to_num(float("-inf")).max(0).values


@dataclass(frozen=True)
class Random:
    """Uniform random scores: ``seed=None`` uses torch's global generator, an int the same draw on every process."""

    seed: int | None = None

    def scores(self, group: ChannelGroup, model: nn.Module) -> torch.Tensor:
        if self.seed is None:
            return torch.rand(group.size)
        return random_scores(group.size, self.seed, group.id)


IMPORTANCES: dict[str, Importance] = {"l1": Magnitude(1), "l2": Magnitude(2), "fpgm": GeometricMedian(),
                                      "bn_scale": BNScale(), "random": Random()}


def resolve_importance(importance: Any) -> Any:
    """A name of :data:`IMPORTANCES`, an :class:`Importance` or a callable ``(group, model) -> scores``."""
    if isinstance(importance, str):
        if importance not in IMPORTANCES:
            raise ValueError(f"`importance` must be one of {sorted(IMPORTANCES)}, an Importance or a callable, got "
                             f"{importance!r}.")
        return IMPORTANCES[importance]
    if isinstance(importance, Importance) or callable(importance):
        return importance
    raise TypeError(f"`importance` must be one of {sorted(IMPORTANCES)}, an Importance or a callable, got "
                    f"{importance!r}.")
