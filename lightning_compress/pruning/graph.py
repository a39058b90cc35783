"""Coupled channel groups: the public view of a traced model (``build_channel_graph``)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from .capture import capture
from .context import TraceContext
from .errors import UnsupportedOpError
from .rules import slot_rule

if TYPE_CHECKING:
    from .plan import PruningPlan


@dataclass(frozen=True, eq=False)
class Member:
    """Slot ``slot`` of module ``module``: its indices ``indices`` belong to group positions ``positions``."""

    module: str
    slot: str
    module_type: str
    size: int
    indices: np.ndarray
    positions: np.ndarray

    def indices_at(self, positions: Iterable[int]) -> np.ndarray:
        """Slot indices of this member that belong to the given group positions."""
        chosen = np.zeros(int(self.positions.max(initial=-1)) + 1, dtype=bool)
        wanted = np.asarray(list(positions), dtype=np.int64)
        chosen[wanted[(wanted >= 0) & (wanted < len(chosen))]] = True
        return self.indices[chosen[self.positions]]


@dataclass(frozen=True, eq=False)
class ChannelGroup:
    """A set of coupled channels: removing group position k removes every member's indices at position k.

    ``producers`` are the conv/linear modules whose output side is in the group (ratio globs match these);
    ``prunable`` is False when some channel touches a model input/output or an op without a rule
    (``frozen_reasons`` says which).
    """

    id: str
    size: int
    members: tuple[Member, ...]
    producers: tuple[str, ...]
    prunable: bool
    frozen_reasons: tuple[str, ...]

    def member(self, module: str, slot: str) -> Member | None:
        for m in self.members:
            if m.module == module and m.slot == slot:
                return m
        return None

    def __repr__(self) -> str:
        state = "prunable" if self.prunable else "frozen"
        return f"ChannelGroup(id={self.id!r}, size={self.size}, {state}, members={len(self.members)})"


class ChannelGraph:
    """All coupled channel groups of one architecture; reusable until the model is pruned."""

    def __init__(self, groups: list[ChannelGroup], slot_sizes: dict[tuple[str, str], int],
                 module_types: dict[str, str], unsupported: dict[str, str]) -> None:
        self.groups = groups
        self.slot_sizes = slot_sizes
        self.module_types = module_types
        self.unsupported = unsupported
        self._by_id = {g.id: g for g in groups}

    @property
    def prunable_groups(self) -> list[ChannelGroup]:
        return [g for g in self.groups if g.prunable]

    def group(self, group_id: str) -> ChannelGroup:
        if group_id not in self._by_id:
            raise ValueError(f"`group_id` must be one of {sorted(self._by_id)}, got {group_id!r}.")
        return self._by_id[group_id]

    def check(self, model: nn.Module) -> None:
        """Raise ValueError when ``model``'s widths no longer match this graph (e.g. after pruning)."""
        modules = dict(model.named_modules())
        for (name, slot), size in self.slot_sizes.items():
            module = modules.get(name)
            rule = slot_rule(module, slot) if module is not None else None
            current = rule.slot_sizes(module).get(slot) if rule is not None else None
            if current != size:
                raise ValueError(
                    f"`model` does not match this ChannelGraph: {name!r} {slot} has width {current!r}, the graph "
                    f"was built with {size}. Rebuild the graph after pruning."
                )

    def plan(self, removed: Mapping[str, Iterable[int]]) -> PruningPlan:
        """A plan removing the given positions of each group (``{group_id: positions}``)."""
        from .plan import plan_from_groups

        return plan_from_groups(self, removed)

    def select(self, model: nn.Module, pruning_ratio: Any, importance: Any = "l1", ignored_layers: Any = (),
               global_pruning: bool = False, min_channels: int = 1, round_to: int = 1) -> PruningPlan:
        """Choose channels to remove on this graph (cheap; no retrace). See :func:`select_channels`."""
        from .selection import select_on_graph

        return select_on_graph(self, model, pruning_ratio, importance, ignored_layers, global_pruning,
                               min_channels, round_to)

    def resolve_ratios(self, model: nn.Module, pruning_ratio: Any, ignored_layers: Any = ()) -> dict[str, float]:
        """The ratio each prunable group gets (groups left untouched are absent)."""
        from .selection import group_ratios

        return group_ratios(self, model, pruning_ratio, ignored_layers)

    def __repr__(self) -> str:
        return f"ChannelGraph({len(self.groups)} groups, {len(self.prunable_groups)} prunable)"


def build_channel_graph(model: nn.Module, example_inputs: Any, strict: bool = False) -> ChannelGraph:
    """Trace ``model`` and return its coupled channel groups.

    Ops without a rule freeze the channels they touch and are reported in one warning (``strict=True``: raise
    :class:`UnsupportedOpError`). Model inputs and outputs are never prunable.
    """
    ctx, _ = capture(model, example_inputs)
    if ctx.unknown:
        listing = "; ".join(ctx.unknown.values())
        message = (f"no pruning rule for {len(ctx.unknown)} op(s), their channels are frozen: {listing} (to prune "
                   f"them, write a rule: lightning_compress/pruning/README.md, 'Custom ops')")
        if strict:
            raise UnsupportedOpError(message)
        warnings.warn(message, stacklevel=2)
    return _groups_from_context(ctx)


def _groups_from_context(ctx: TraceContext) -> ChannelGraph:
    roots = ctx.uf.roots()
    n = len(roots)
    origin_names: dict[int, set[str]] = {}
    sort_key: dict[int, tuple[int, int]] = {}
    for x, (producer, index) in ctx.origin_of.items():
        r = int(roots[x])
        origin_names.setdefault(r, set()).add(producer)
        key = (ctx.order[producer], index)
        if r not in sort_key or key < sort_key[r]:
            sort_key[r] = key
    by_key: dict[frozenset[str], list[int]] = {}
    for r, names in origin_names.items():
        by_key.setdefault(frozenset(names), []).append(r)
    ordered = sorted(by_key.values(), key=lambda rs: min(sort_key[r] for r in rs))
    group_of = np.full(n, -1, dtype=np.int64)
    pos_of = np.full(n, -1, dtype=np.int64)
    group_roots: list[list[int]] = []
    for gi, rs in enumerate(ordered):
        rs = sorted(rs, key=lambda r: sort_key[r])
        group_roots.append(rs)
        for p, r in enumerate(rs):
            group_of[r] = gi
            pos_of[r] = p
    members: list[list[Member]] = [[] for _ in ordered]
    slot_sizes: dict[tuple[str, str], int] = {}
    for (name, slot), ids in ctx.members.items():
        slot_sizes[(name, slot)] = len(ids)
        r = roots[ids]
        g = group_of[r]
        for gi in np.unique(g[g >= 0]).tolist():
            idx = np.nonzero(g == gi)[0]
            members[gi].append(Member(name, slot, ctx.module_types.get(name, ""), len(ids), idx, pos_of[r[idx]]))
    groups: list[ChannelGroup] = []
    used: dict[str, int] = {}
    for gi, rs in enumerate(group_roots):
        ms = sorted(members[gi], key=lambda m: (ctx.order.get(m.module, 0), m.slot))
        producers = tuple(dict.fromkeys(m.module for m in ms if m.slot == "out"))
        first = min(set().union(*(origin_names[r] for r in rs)), key=lambda p: ctx.order[p])
        used[first] = used.get(first, 0) + 1
        gid = first if used[first] == 1 else f"{first}#{used[first]}"
        reasons = sorted(set().union(*(ctx.uf.frozen_reasons(r) for r in rs)))
        groups.append(ChannelGroup(gid, len(rs), tuple(ms), producers, not reasons, tuple(reasons)))
    return ChannelGraph(groups, slot_sizes, dict(ctx.module_types), dict(ctx.unknown))
