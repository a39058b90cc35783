"""Coupled channel groups: the public view of a traced model (``build_channel_graph``)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .capture import capture
from .channels import unique_sorted, unique_sorted_of
from .context import TraceContext
from .errors import UnsupportedOpError
from .plan import GroupPlan, LayerPlan, PruningPlan, SlotPlan
from .rules import slot_rule
from .streams import check_residual


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
        wanted = (positions.astype(np.int64, copy=False) if isinstance(positions, np.ndarray)
                  else np.asarray(list(positions), dtype=np.int64))
        chosen[wanted[(wanted >= 0) & (wanted < len(chosen))]] = True
        return self.indices[chosen[self.positions]]


@dataclass(frozen=True)
class Boundary:
    """Where a group meets a shared stream under ``residual="select"``: ``module``'s ``slot`` along tensor dim ``dim``.

    A writer's output is re-expanded to the stream's width after pruning; a reader's input is narrowed to its kept
    channels before it.
    """

    module: str
    slot: str
    dim: int


@dataclass(frozen=True, eq=False)
class ChannelGroup:
    """A set of coupled channels: removing group position k removes every member's indices at position k.

    ``producers`` are the conv/linear modules whose output side is in the group (ratio globs match these, and the
    group's norms when it has no producer); ``prunable`` is False when some channel touches a model input/output or an
    op without a rule (``frozen_reasons`` says which). ``writers``/``readers``: the group's stream boundaries
    (``residual="select"`` only).
    """

    id: str
    size: int
    members: tuple[Member, ...]
    producers: tuple[str, ...]
    prunable: bool
    frozen_reasons: tuple[str, ...]
    writers: tuple[Boundary, ...] = ()
    readers: tuple[Boundary, ...] = ()

    @property
    def owners(self) -> tuple[str, ...]:
        """The modules a ratio glob is matched against: the producers, else the output-side members (norms)."""
        if self.producers:
            return self.producers
        return tuple(dict.fromkeys(m.module for m in self.members if m.slot != "in"))

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
                 module_types: dict[str, str], unsupported: dict[str, str], residual: str = "couple") -> None:
        self.residual = residual
        self.groups = groups
        self.slot_sizes = slot_sizes
        self.module_types = module_types
        self.unsupported = unsupported
        self._by_id = {g.id: g for g in groups}
        self.input_shape: tuple[int, ...] | None = None  # one example input's shape (no batch), when a tensor

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
        return plan_from_groups(self, removed)

    def __repr__(self) -> str:
        return (f"ChannelGraph({len(self.groups)} groups, {len(self.prunable_groups)} prunable, "
                f"residual={self.residual!r})")


def build_channel_graph(model: nn.Module, example_inputs: Any, strict: bool = False,
                        residual: str = "couple") -> ChannelGraph:
    """Trace ``model`` and return its coupled channel groups.

    Ops without a rule freeze the channels they touch and are reported in one warning (``strict=True``: raise
    :class:`UnsupportedOpError`). Model inputs and outputs are never prunable. ``residual``: ``"couple"`` prunes a
    residual / dense-concat stream together with every layer that writes or reads it (one group); ``"select"`` keeps
    the stream's width and lets each writer and reader keep its own channels (see :mod:`.streams`).
    """
    check_residual(residual)
    ctx, _ = capture(model, example_inputs)
    if ctx.unknown:
        listing = "; ".join(ctx.unknown.values())
        message = (f"no pruning rule for {len(ctx.unknown)} op(s), their channels are frozen: {listing} (to prune "
                   f"them, write a rule: lightning_compress/pruning/README.md, 'Custom ops')")
        if strict:
            raise UnsupportedOpError(message)
        warnings.warn(message, stacklevel=2)
    graph = _groups_from_context(ctx, residual)
    if isinstance(example_inputs, torch.Tensor) and example_inputs.dim() > 1:
        graph.input_shape = tuple(example_inputs.shape[1:])
    return graph


READER_SUFFIX = ":input"  # a reader group's id: the channels selected at the input of this module


def _resolve_links(ctx: TraceContext, residual: str) -> tuple[Any, list[tuple[str, np.ndarray]], dict[str, int]]:
    """The union-find of ``residual``'s mode, the origin blocks (``(origin, ids)``: ``ids[i]`` is channel i of
    ``origin``) and the graph order of every origin.

    Origins are the producing modules; in select mode also ``<reader module>:input`` for reader groups.
    ``couple`` unions both sides of every stream link (one group per stream, as if there were no boundary).
    ``select`` keeps them apart, freezes the streams themselves and the sides whose boundary is not a module (no place
    for a re-expansion or a selection).
    """
    uf = ctx.uf.copy()
    origins = list(ctx.origins)
    order = dict(ctx.order)
    for link in ctx.links:
        if residual == "couple":
            uf.union_arrays(link.source, link.target)
            continue
        stream, side = (link.target, link.source) if link.kind == "write" else (link.source, link.target)
        uf.freeze(stream, "residual='select' keeps this shared stream at full width")
        if link.module is None or link.dim is None:
            verb = "enter" if link.kind == "write" else "leave"
            uf.freeze(side, f"residual='select': channels {verb} a stream through {link.op}, not a prunable module")
        elif link.kind == "read":
            name = link.module + READER_SUFFIX
            order.setdefault(name, ctx.order.get(link.module, 0))
            origins.append((name, link.target))
    return uf, origins, order


def _boundaries(ctx: TraceContext, roots: Any, group_of: Any, members: list[list[Member]]
                ) -> tuple[dict[int, set[Boundary]], dict[int, set[Boundary]], dict[int, set[str]]]:
    """Per group index: writer and reader boundaries, and reasons a boundary cannot be realised."""
    writers: dict[int, set[Boundary]] = {}
    readers: dict[int, set[Boundary]] = {}
    problems: dict[int, set[str]] = {}
    for link in ctx.links:
        if link.module is None or link.dim is None:
            continue
        side = link.source if link.kind == "write" else link.target
        for gi in {int(g) for g in group_of[roots[side]] if g >= 0}:
            other_side = "in" if link.kind == "write" else "out"
            slots = [m.slot for m in members[gi] if m.module == link.module and m.slot != other_side]
            if len(slots) != 1:
                problems.setdefault(gi, set()).add(f"residual='select': {link.module!r} has no single channel slot at "
                                                   "its stream boundary")
                continue
            target = writers if link.kind == "write" else readers
            target.setdefault(gi, set()).add(Boundary(link.module, slots[0], link.dim))
    return writers, readers, problems


def _order_groups(roots: np.ndarray, origins: list[tuple[str, np.ndarray]], origin_order: dict[str, int]
                  ) -> tuple[list[np.ndarray], list[frozenset[str]], np.ndarray, np.ndarray]:
    """Roots with the same set of origins form one group. Returns each group's roots (in order), its origin names,
    and per id-root its group index and position (-1 where it has no origin).

    Order: by (graph order of the origin, channel index) of a root's first channel, ties by first appearance in
    ``origins``; groups by the smallest such key of their roots. Vectorised: a ResNet-50 has ~40k ids.
    """
    n = len(roots)
    group_of = np.full(n, -1, dtype=np.int64)
    pos_of = np.full(n, -1, dtype=np.int64)
    if not origins:
        return [], [], group_of, pos_of
    names = list(dict.fromkeys(name for name, _ in origins))
    name_rank = {name: i for i, name in enumerate(names)}
    ids = np.concatenate([block for _, block in origins])
    producer = np.concatenate([np.full(len(block), name_rank[name], dtype=np.int64) for name, block in origins])
    index = np.concatenate([np.arange(len(block), dtype=np.int64) for _, block in origins])
    graph_order = np.asarray([origin_order[name] for name in names], dtype=np.int64)
    key = graph_order[producer] * (int(index.max()) + 1) + index
    root = roots[ids]
    big = np.iinfo(np.int64).max
    root_key, root_first = np.full(n, big), np.full(n, big)
    np.minimum.at(root_key, root, key)
    np.minimum.at(root_first, root, np.arange(len(root), dtype=np.int64))
    pairs = unique_sorted(root * len(names) + producer)  # distinct (root, producer), sorted by root
    pair_root, pair_producer = pairs // len(names), pairs % len(names)
    uniq, start, count = np.unique(pair_root, return_index=True, return_counts=True)
    label = pair_producer[start].copy()  # one origin: labelled by it; several: by their set (below)
    set_members = _label_origin_sets(label, count, pair_producer, len(names))
    rkey, rfirst = root_key[uniq], root_first[uniq]
    labels, inverse = np.unique(label, return_inverse=True)
    gkey, gfirst = np.full(len(labels), big), np.full(len(labels), big)
    np.minimum.at(gkey, inverse, rkey)
    np.minimum.at(gfirst, inverse, rfirst)
    group_rank = np.empty(len(labels), dtype=np.int64)
    group_rank[np.lexsort((gfirst, gkey))] = np.arange(len(labels))
    gi = group_rank[inverse]
    ordered = np.lexsort((rfirst, rkey, gi))
    sizes = np.bincount(gi, minlength=len(labels))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    group_of[uniq[ordered]] = gi[ordered]
    pos_of[uniq[ordered]] = np.arange(len(ordered)) - starts[gi[ordered]]
    group_roots = np.split(uniq[ordered], np.cumsum(sizes)[:-1])
    set_names = {v: frozenset(names[p] for p in k) for v, k in set_members.items()}
    label_names = [set_names[int(lb)] if lb >= len(names) else frozenset((names[int(lb)],)) for lb in labels]
    group_names = [frozenset()] * len(labels)
    for li, rank in enumerate(group_rank.tolist()):
        group_names[rank] = label_names[li]
    return group_roots, group_names, group_of, pos_of


def _label_origin_sets(label: np.ndarray, count: np.ndarray, pair_producer: np.ndarray, n_names: int
                       ) -> dict[int, tuple[int, ...]]:
    """Relabel, in place, every root with several origins by its set of origins (labels from ``n_names`` on, one per
    distinct set) and return label -> origin indices. Vectorised: EfficientNet-B0 has ~9k such roots, ~20 sets."""
    multi = np.nonzero(count > 1)[0]
    if not len(multi):
        return {}
    row = np.full(len(count), -1, dtype=np.int64)
    row[multi] = np.arange(len(multi))
    owner = np.repeat(np.arange(len(count)), count)  # the root (index into count) of every (root, origin) pair
    in_multi = row[owner] >= 0
    member = np.zeros((len(multi), n_names), dtype=bool)
    member[row[owner[in_multi]], pair_producer[in_multi]] = True
    packed = np.ascontiguousarray(np.packbits(member, axis=1))
    keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()  # one byte string per root: its origin set
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    first = np.empty(len(keys), dtype=bool)
    first[0] = True
    first[1:] = ordered[1:] != ordered[:-1]
    set_of = np.empty(len(keys), dtype=np.int64)
    set_of[order] = np.cumsum(first) - 1
    label[multi] = n_names + set_of
    return {n_names + int(set_of[r]): tuple(np.nonzero(member[r])[0].tolist()) for r in order[first].tolist()}


def _groups_from_context(ctx: TraceContext, residual: str = "couple") -> ChannelGraph:
    uf, origins, origin_order = _resolve_links(ctx, residual)
    roots = uf.roots()
    group_roots, group_names, group_of, pos_of = _order_groups(roots, origins, origin_order)
    members: list[list[Member]] = [[] for _ in group_roots]
    slot_sizes: dict[tuple[str, str], int] = {}
    for (name, slot), ids in ctx.members.items():
        slot_sizes[(name, slot)] = len(ids)
        r = roots[ids]
        g = group_of[r]
        in_groups = g[g >= 0]
        one = in_groups.size and (in_groups == in_groups[0]).all()  # the common case: one group (no np.unique)
        for gi in ([int(in_groups[0])] if one else unique_sorted(in_groups).tolist()):
            idx = np.nonzero(g == gi)[0]
            members[gi].append(Member(name, slot, ctx.module_types.get(name, ""), len(ids), idx, pos_of[r[idx]]))
    writers, readers, problems = _boundaries(ctx, roots, group_of, members) if residual == "select" else ({}, {}, {})
    frozen: dict[int, set[str]] = {}  # group index -> reasons, from the (few) frozen roots
    for root, why in uf.frozen_roots().items():
        if group_of[root] >= 0:
            frozen.setdefault(int(group_of[root]), set()).update(why)
    groups: list[ChannelGroup] = []
    used: dict[str, int] = {}
    for gi, rs in enumerate(group_roots):
        ms = sorted(members[gi], key=lambda m: (ctx.order.get(m.module, 0), m.slot))
        producers = tuple(dict.fromkeys(m.module for m in ms if m.slot == "out"))
        first = min(group_names[gi], key=lambda p: (origin_order[p], p))
        used[first] = used.get(first, 0) + 1
        gid = first if used[first] == 1 else f"{first}#{used[first]}"
        reasons = frozen.get(gi, set()) | problems.get(gi, set())
        if residual == "select" and all(m.slot == "in" for m in ms):
            reasons.add("residual='select': only input channels of a stream reader (nothing scores or masks them)")
        order = lambda b: (ctx.order.get(b.module, 0), b.slot)  # noqa: E731
        groups.append(ChannelGroup(gid, len(rs), tuple(ms), producers, not reasons, tuple(sorted(reasons)),
                                   tuple(sorted(writers.get(gi, ()), key=order)),
                                   tuple(sorted(readers.get(gi, ()), key=order))))
    return ChannelGraph(groups, slot_sizes, dict(ctx.module_types), dict(ctx.unknown), residual)


def plan_from_groups(graph: ChannelGraph, removed: Mapping[str, Iterable[int]]) -> PruningPlan:
    """Build a plan removing ``removed[group_id]`` positions of each group of ``graph``."""
    per_slot: dict[tuple[str, str], list[np.ndarray]] = {}  # the slot's indices, one array per group
    boundaries: dict[str, dict[str, dict[str, int]]] = {}  # module -> "reexpand"/"select" -> slot -> dim
    group_plans: list[GroupPlan] = []
    for gid, positions in removed.items():
        group = graph.group(gid)
        pos = sorted({int(p) for p in positions})
        if pos and not group.prunable:
            raise ValueError(f"`removed` names frozen group {gid!r} ({'; '.join(group.frozen_reasons)}).")
        if not pos:
            continue
        if pos[0] < 0 or pos[-1] >= group.size:
            raise ValueError(f"`removed[{gid!r}]` must be positions in [0, {group.size}), got {pos!r}.")
        if len(pos) >= group.size:
            raise ValueError(f"`removed[{gid!r}]` must keep at least one channel of {group.size}, got {len(pos)}.")
        pos_arr = np.asarray(pos, dtype=np.int64)
        for m in group.members:
            idx = m.indices_at(pos_arr)
            if len(idx):
                per_slot.setdefault((m.module, m.slot), []).append(idx)
        for kind, ends in (("reexpand", group.writers), ("select", group.readers)):
            for b in ends:
                boundaries.setdefault(b.module, {}).setdefault(kind, {})[b.slot] = b.dim
        group_plans.append(GroupPlan(gid, group.size, tuple(pos), group.producers))
    layers: dict[str, LayerPlan] = {}
    order = {name: i for i, name in enumerate(graph.module_types)}
    for (name, slot), parts in sorted(per_slot.items(), key=lambda kv: (order.get(kv[0][0], -1), kv[0][1])):
        lp = layers.setdefault(name, LayerPlan(graph.module_types.get(name, ""), {}, **boundaries.get(name, {})))
        lp.slots[slot] = SlotPlan(graph.slot_sizes[(name, slot)], tuple(unique_sorted_of(parts).tolist()))
    return PruningPlan(layers, group_plans, graph.input_shape, graph)
