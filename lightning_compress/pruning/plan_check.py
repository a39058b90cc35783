"""Check a plan against the network's own channel groups before :func:`prune` or :func:`mask` changes anything.

A plan names layers and widths; two architectures can share both (ResNet-20 and ResNet-56 have the same stem and
stage widths) while their residual streams have different writers and readers. :func:`check_plan_fits` traces the
network (on ``example_inputs``, else on zeros of the plan's recorded ``input_shape``; a plan made in this process
reuses its own graph when the network still has that graph's layers and widths) and refuses a plan that cuts some
members of a coupled group and not the others, names a slot outside the graph, or has widths the network does not
have. The error names the first layer that does not fit. A plan with neither a recorded input shape nor
``example_inputs`` (a hand-written one) gets the per-module checks of :func:`.validation.compile_plan` only.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import TraceError
from .graph import ChannelGraph, ChannelGroup, Member, build_channel_graph
from .plan import PruningPlan


def check_plan_fits(model: nn.Module, plan: PruningPlan, example_inputs: Any = None) -> None:
    """Raise ``ValueError`` naming the first layer of ``plan`` that does not fit ``model``'s channel groups.

    Reads ``model`` only. See the module docstring for where the channel groups come from.
    """
    if not isinstance(plan, PruningPlan):
        raise TypeError(f"`plan` must be a PruningPlan, got {type(plan).__name__}.")
    modules = dict(model.named_modules())
    for name in plan.layers:
        if name not in modules:
            raise ValueError(f"`plan` does not fit the model: module {name!r} not found.")
    graph = _graph_for(model, plan, modules, example_inputs)
    if graph is not None:
        check_plan_on_graph(graph, plan)


def check_plan_on_graph(graph: ChannelGraph, plan: PruningPlan) -> None:
    """Raise ``ValueError`` unless every slot of ``plan`` is a slot of ``graph`` with the same width and every group
    of ``graph`` loses the same positions in all its members (members the plan does not name lose none)."""
    for name, layer in plan.layers.items():
        for slot, sp in layer.slots.items():
            size = graph.slot_sizes.get((name, slot))
            if size is None:
                if sp.removed:
                    raise ValueError(f"`plan` does not fit the model: {name!r} {slot} is not a slot of the network's "
                                     "channel graph (not reached by its forward).")
            elif size != sp.size:
                raise ValueError(f"`plan` does not fit the model: {name!r} {slot} has width {size}, the plan expects "
                                 f"{sp.size} (already pruned, or another architecture?).")
    for group in graph.groups:
        _check_group(group, plan)


def _check_group(group: ChannelGroup, plan: PruningPlan) -> None:
    """Every group position is cut in all members that hold it, or in none (a member may hold only some positions:
    a slice, a split, an int size attribute)."""
    cuts = [(member, _removed_positions(member, plan)) for member in group.members]
    removed = frozenset().union(*(positions for _, positions in cuts))
    if not removed:
        return
    for member, positions in cuts:
        if positions and not group.prunable:
            raise ValueError(f"`plan` does not fit the model: {member.module!r} {member.slot} cuts channels of the "
                             f"frozen group {group.id!r} ({'; '.join(group.frozen_reasons)}).")
    for member, positions in cuts:
        held = removed.intersection(member.positions.tolist())
        if positions != held:
            first = next(m for m, p in cuts if p & (held - positions)) if held - positions else None
            where = f" where {first.module!r} {first.slot} cuts {len(_removed_positions(first, plan))}" if first else ""
            raise ValueError(
                f"`plan` does not fit the model: {member.module!r} {member.slot} cuts {len(positions)} of the "
                f"{group.size} coupled channels of group {group.id!r}{where}; coupled channels must be cut in every "
                "layer of the group (a plan made for another architecture?). Nothing was changed.")


def _removed_positions(member: Member, plan: PruningPlan) -> frozenset[int]:
    layer = plan.layers.get(member.module)
    sp = layer.slots.get(member.slot) if layer is not None else None
    if sp is None or not sp.removed:
        return frozenset()
    hit = np.isin(member.indices, np.asarray(sp.removed, dtype=np.int64))
    return frozenset(member.positions[hit].tolist())


def _graph_for(model: nn.Module, plan: PruningPlan, modules: dict[str, nn.Module],
               example_inputs: Any) -> ChannelGraph | None:
    residual = "select" if any(lp.reexpand or lp.select for lp in plan.layers.values()) else "couple"
    own = plan.graph
    if example_inputs is None and own is not None and own.residual == residual and _same_layers(own, model, modules):
        return own
    if example_inputs is None:
        if plan.input_shape is None:
            return None
        param = next(iter(model.parameters()), None)
        example_inputs = torch.zeros(1, *plan.input_shape, device=param.device if param is not None else None,
                                     dtype=param.dtype if param is not None and param.is_floating_point() else None)
    try:
        with warnings.catch_warnings():  # ops without a rule were reported when the plan was made
            warnings.simplefilter("ignore")
            return build_channel_graph(model, example_inputs, residual=residual)
    except TraceError:
        return None  # a network the engine cannot trace: the per-module checks of compile_plan still apply


def _same_layers(graph: ChannelGraph, model: nn.Module, modules: dict[str, nn.Module]) -> bool:
    """Whether ``model`` still has exactly the parameterised layers and widths ``graph`` was built from."""
    try:
        graph.check(model)
    except ValueError:
        return False
    with_params = {name for name, m in modules.items() if name and not m._modules and m._parameters}
    return with_params <= set(graph.module_types) and all(
        type(modules[name]).__name__ == kind for name, kind in graph.module_types.items() if name in modules)
