"""Physical removal of planned channels (new smaller parameters, updated attributes, sliced optimizer state)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .boundaries import attach_reexpand, attach_select
from .fusion import fuse_writers
from .plan import PruningPlan
from .plan_check import check_plan_fits
from .validation import ModuleEdit, compile_plan, tensor_attr
from .verify import prune_checked


def _keep(size: int, removed: np.ndarray, cache: dict[tuple[int, bytes], torch.Tensor]) -> torch.Tensor:
    """The indices of ``range(size)`` not in ``removed`` (shared by the tensors cut the same way, e.g. a BN's four)."""
    key = (size, removed.tobytes())
    if key not in cache:
        mask = np.ones(size, dtype=bool)
        mask[removed] = False
        cache[key] = torch.from_numpy(np.flatnonzero(mask))
    return cache[key]


def _slice(t: torch.Tensor, keeps: dict[int, torch.Tensor]) -> torch.Tensor:
    """A new tensor (never a view of ``t``): ``t`` with only the ``keeps[dim]`` indices along each dim."""
    if not keeps:
        return t.clone()
    for dim, keep in keeps.items():
        t = t.index_select(dim, keep.to(t.device))
    return t


def prune(model: nn.Module, plan: PruningPlan, optimizer: torch.optim.Optimizer | None = None,
          example_inputs: Any = None, fuse: bool = True) -> nn.Module:
    """Remove the planned channels from ``model`` in place and return it.

    Parameters are replaced by new, smaller ``nn.Parameter`` objects (same names, so ``state_dict`` keys are
    unchanged); buffers (BN running stats) are sliced; size attributes are updated. With ``optimizer``, its
    param_groups point at the new parameters and per-parameter state of the same shape (momentum, Adam moments) is
    sliced the same way. The whole plan is validated first; on error nothing is modified: against the network's own
    channel groups (:func:`.plan_check.check_plan_fits`: traced on ``example_inputs`` or the plan's recorded input
    shape) and module by module. Needs no example inputs: ``prune(fresh_model, plan)`` reproduces the pruned shapes
    exactly. With ``example_inputs``, one forward also checks that the pruned model runs; if it does not, the model is
    restored exactly and ``PrunedModelError`` is raised.

    With ``residual="select"`` plans, ``fuse`` (default) rewrites the ``forward`` of the modules where a pruned
    stream writer's output is added to the shortcut, so the two become one ``index_add`` (:mod:`.fusion`);
    ``fuse=False``, and writers that cannot be fused, re-expand the output with a forward hook (see
    :mod:`.boundaries`). Both forms are exact.
    """
    if not isinstance(fuse, bool):
        raise TypeError(f"`fuse` must be a bool, got {fuse!r}.")
    if example_inputs is not None:
        return prune_checked(model, plan, example_inputs, optimizer,
                             lambda m, p, o: _prune(m, p, o, fuse, example_inputs=example_inputs))
    return _prune(model, plan, optimizer, fuse)


def _prune(model: nn.Module, plan: PruningPlan, optimizer: torch.optim.Optimizer | None = None,
           fuse: bool = True, example_inputs: Any = None) -> nn.Module:
    """The surgery of :func:`prune` without the post-prune check."""
    edits = compile_plan(model, plan)
    check_plan_fits(model, plan, example_inputs)
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"`optimizer` must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}.")
    with torch.no_grad():  # once for the whole surgery, not per tensor
        replaced = _cut(edits, plan)
    writers = [name for name, lp in plan.layers.items() if lp.reexpand]
    if writers:
        fuse_writers(model, writers, fuse)
    if optimizer is not None:
        _remap_optimizer(optimizer, replaced)
    return model


Replaced = dict[nn.Parameter, tuple[nn.Parameter, dict[int, torch.Tensor]]]  # old -> (new, kept indices per dim)


def _cut(edits: list[ModuleEdit], plan: PruningPlan) -> Replaced:
    """Apply compiled ``edits``; returns what :func:`_remap_optimizer` needs."""
    replaced: Replaced = {}
    keep_cache: dict[tuple[int, bytes], torch.Tensor] = {}
    for edit in edits:
        module = edit.module
        for attr, dims in edit.slices.items():
            old = tensor_attr(module, attr)
            if isinstance(old, nn.Parameter) and old in replaced:  # tied weights: one new parameter
                setattr(module, attr, replaced[old][0])
                continue
            keeps = {dim: _keep(old.shape[dim], idx, keep_cache) for dim, idx in dims.items()}
            new_data = _slice(old.detach(), keeps)
            if isinstance(old, nn.Parameter):
                new = nn.Parameter(new_data, requires_grad=old.requires_grad)
                if old.grad is not None:
                    new.grad = _slice(old.grad, keeps)
                _replace(module, attr, new, module._parameters)
                replaced[old] = (new, keeps)
            else:
                _replace(module, attr, new_data, module._buffers)
        for rule in {id(r): r for r in edit.rules.values()}.values():
            rule.update(module, edit.removed)
        layer = plan.layers[edit.name]
        for slot, dim in layer.reexpand.items():
            attach_reexpand(module, dim, layer.slots[slot].kept_indices(), layer.slots[slot].size, hook=False)
        for slot, dim in layer.select.items():
            attach_select(module, dim, layer.slots[slot].kept_indices())
    return replaced


def _replace(module: nn.Module, attr: str, value: torch.Tensor, registry: dict[str, Any]) -> None:
    """``setattr(module, attr, value)``; straight into the parameter / buffer dict when ``attr`` is registered there
    (the same result without ``nn.Module.__setattr__``'s checks, the largest part of surgery on small models)."""
    if attr in registry:
        registry[attr] = value
    else:
        setattr(module, attr, value)


def _remap_optimizer(optimizer: torch.optim.Optimizer, replaced: Replaced) -> None:
    for group in optimizer.param_groups:
        group["params"] = [replaced[p][0] if p in replaced else p for p in group["params"]]
    for old, (new, keeps) in replaced.items():
        if old not in optimizer.state:
            continue
        state = optimizer.state.pop(old)
        optimizer.state[new] = {
            k: _slice(v, keeps) if isinstance(v, torch.Tensor) and v.shape == old.shape else v
            for k, v in state.items()
        }
