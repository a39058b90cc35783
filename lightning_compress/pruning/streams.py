"""Shared streams of a traced graph: the residual and dense-concatenation tensors that ``residual="select"`` keeps.

A *stream* value is the output of a join (an add/sub of two traced tensors, or a concatenation of two), a value whose
branches meet again at a join (a residual block's input, read by the block and its shortcut), anything computed from a
stream value by a channel-preserving op (activation, pooling, spatial slicing, channel padding), and anything that
flows into a join through such ops only. Everything else is private to one layer.

During tracing the channels of a stream value get their own ids, *linked* (not unioned) to the ids of the layer that
writes them (the module whose output enters the stream: a residual branch's last BN, the stem) and of every layer that
reads them (the module that consumes the stream: a pre-activation block's first BN, the next block's first conv).
``residual="couple"`` unions every link (stream, writers and readers are pruned together, the default); with
``residual="select"`` each writer and reader keeps its own subset of channels while the stream keeps its width: a pruned
writer's output is re-expanded into its kept positions of the stream, a pruned reader selects its kept positions.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import fx, nn

from .ops import METHOD_RULES, function_rule
from .ops import _pad as _pad_rule
from .ops import _spatial as _spatial_rule
from .ops import _unary as _unary_rule
from .rules import ElementwiseRule, PadRule, SpatialRule, get_module_rule

RESIDUAL_MODES = ("couple", "select")
_ADD_FUNCTIONS = {operator.add, operator.iadd, operator.sub, operator.isub, torch.add, torch.sub, torch.subtract}
_ADD_METHODS = {"add", "add_", "sub", "sub_"}
_CAT_FUNCTIONS = {torch.cat, torch.concat, torch.concatenate}
_PASSTHROUGH_RULES = (_unary_rule, _spatial_rule, _pad_rule)
_PASSTHROUGH_MODULE_RULES = (ElementwiseRule, SpatialRule, PadRule)


@dataclass(frozen=True)
class Link:
    """Channel ``i`` of ``source`` flows into channel ``i`` of ``target`` across a stream boundary.

    ``kind`` is ``"write"`` (a layer's output enters a stream) or ``"read"`` (a layer consumes a stream); ``module`` is
    the module at the boundary (its output for a write, its input for a read), ``None`` when the boundary is a function
    (then the layer's side cannot be pruned on its own); ``dim`` is the channel dim of the tensor at the boundary
    (``None`` when the channels sit on several dims).
    """

    kind: str
    source: np.ndarray
    target: np.ndarray
    module: str | None
    dim: int | None
    op: str


def check_residual(residual: object) -> str:
    """``residual`` as given, or a ValueError naming the allowed modes."""
    if residual not in RESIDUAL_MODES:
        raise ValueError(f"`residual` must be one of {RESIDUAL_MODES}, got {residual!r}.")
    return residual  # type: ignore[return-value]


def _tensor_args(node: fx.Node) -> list[fx.Node]:
    out: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), lambda a: out.append(a) if a.op != "get_attr" else None)
    return out


def is_join(node: fx.Node) -> bool:
    """An add/sub of two graph tensors, or a concatenation of two or more."""
    if node.op == "call_function" and node.target in _CAT_FUNCTIONS:
        return len(_tensor_args(node)) >= 2
    additive = (node.op == "call_function" and node.target in _ADD_FUNCTIONS) or (
        node.op == "call_method" and node.target in _ADD_METHODS)
    return additive and len(_tensor_args(node)) >= 2


def is_passthrough(node: fx.Node, modules: Mapping[str, nn.Module]) -> bool:
    """A single-tensor op that keeps every channel where it was (activations, pooling, spatial slices, padding)."""
    if node.op == "call_module":
        return isinstance(get_module_rule(modules[node.target]), _PASSTHROUGH_MODULE_RULES)
    if node.op == "call_function" and node.target is operator.getitem:
        index = node.args[1]
        return isinstance(index, tuple) and len(index) >= 2 and all(isinstance(i, slice) for i in index) \
            and index[1] == slice(None)
    if node.op == "call_function":
        rule = function_rule(node.target)
    elif node.op == "call_method":
        rule = METHOD_RULES.get(node.target)
    else:
        return False
    return rule in _PASSTHROUGH_RULES and len(_tensor_args(node)) == 1


def stream_values(graph: fx.Graph, modules: Mapping[str, nn.Module]) -> set[fx.Node]:
    """The nodes of ``graph`` whose output is a stream value (see the module docstring); ``modules``: the traced
    model's ``named_modules()``."""
    nodes = list(graph.nodes)
    joins = {n for n in nodes if is_join(n)}
    passthrough = {n for n in nodes if is_passthrough(n, modules)}
    reach: dict[fx.Node, int] = {}  # bit i set: node i (in graph order) is reachable from this node
    for index in range(len(nodes) - 1, -1, -1):
        mask = 1 << index
        for user in nodes[index].users:
            mask |= reach[user]
        reach[nodes[index]] = mask
    forks = {n for n in nodes if n.op not in ("placeholder", "get_attr") and len(n.users) >= 2
             and _branches_meet_at_a_join(n, reach, nodes, joins)}  # a block input, read by the block and its shortcut
    stream, work = joins | forks, list(joins | forks)
    while work:
        node = work.pop()
        reached = []
        if node in joins or node in passthrough:  # what it reads is in the stream too
            reached += [a for a in _tensor_args(node) if a.op != "placeholder"]
        reached += [u for u in node.users if u in passthrough]  # channel-preserving ops of a stream value
        for other in reached:
            if other not in stream:
                stream.add(other)
                work.append(other)
    return stream


def _branches_meet_at_a_join(node: fx.Node, reach: dict[fx.Node, int], nodes: list[fx.Node],
                             joins: set[fx.Node]) -> bool:
    """Whether the first node where two branches of ``node`` meet again is a join (not a gating multiply, say)."""
    users = list(node.users)
    first = None
    for i, a in enumerate(users):
        for b in users[i + 1:]:
            common = reach[a] & reach[b]
            if common:
                index = (common & -common).bit_length() - 1  # the earliest node in graph order
                first = index if first is None else min(first, index)
    return first is not None and nodes[first] in joins


def writes_stream(node: fx.Node, stream: set[fx.Node], modules: Mapping[str, nn.Module]) -> bool:
    """``node`` computes a stream value itself (it is not a join or a channel-preserving op of one)."""
    return node in stream and not is_join(node) and not is_passthrough(node, modules)


def boundary_module(node: fx.Node, modules: Mapping[str, nn.Module]) -> str | None:
    """The module called by ``node`` if it has prunable slots (the place a boundary hook can go), else ``None``."""
    if node.op != "call_module":
        return None
    module = modules[node.target]
    rule = get_module_rule(module)
    return node.target if rule is not None and rule.slot_sizes(module) else None


