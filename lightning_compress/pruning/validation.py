"""Check a plan against a model and compile it to tensor slices, before anything is modified."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from .boundaries import has_boundary_hooks
from .channels import unique_sorted, unique_sorted_of
from .plan import PruningPlan
from .rules import ModuleRule, slot_rule


@dataclass
class ModuleEdit:
    """Everything needed to edit one module: per slot removed indices and per (tensor, dim) removed indices."""

    name: str
    module: nn.Module
    removed: dict[str, np.ndarray]
    rules: dict[str, ModuleRule]
    slices: dict[str, dict[int, np.ndarray]]  # attr -> dim -> removed indices
    slot_slices: dict[str, list[tuple[str, int, np.ndarray]]]  # slot -> slices (for masks)


def tensor_attr(module: nn.Module, attr: str) -> Any:
    """``getattr(module, attr, None)``, read straight from the parameter / buffer dict when ``attr`` is registered
    there (``nn.Module.__getattr__``, the slow fallback, is skipped; a name cannot be both registered and a plain
    attribute or property, so the result is the same)."""
    for registry in (module._parameters, module._buffers):
        if attr in registry:
            return registry[attr]
    return getattr(module, attr, None)


def compile_plan(model: nn.Module, plan: PruningPlan) -> list[ModuleEdit]:
    """Validate ``plan`` against ``model`` and return the edits; raises ValueError/TypeError, modifies nothing."""
    if not isinstance(plan, PruningPlan):
        raise TypeError(f"`plan` must be a PruningPlan, got {type(plan).__name__}.")
    modules = dict(model.named_modules())
    edits: list[ModuleEdit] = []
    shared: dict[int, tuple[str, dict[int, np.ndarray]]] = {}  # tensor id -> (first user, slices)
    merged: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # id(index array) -> (it, sorted unique), for reuse
    for name, lp in plan.layers.items():
        module = _check_module(name, modules.get(name), lp)
        removed: dict[str, np.ndarray] = {}
        rules: dict[str, ModuleRule] = {}
        slot_slices: dict[str, list] = {}
        slices: dict[str, dict[int, list[np.ndarray]]] = {}  # attr -> dim -> the slots' index arrays
        for slot, sp in lp.slots.items():
            rules[slot], removed[slot] = _check_slot(name, module, slot, sp)
            slot_slices[slot] = []
            for attr, dim, tidx in rules[slot].tensor_slices(module, slot, removed[slot]):
                if tensor_attr(module, attr) is None:
                    continue
                tidx = np.asarray(tidx, dtype=np.int64)
                slot_slices[slot].append((attr, dim, tidx))
                slices.setdefault(attr, {}).setdefault(dim, []).append(tidx)
        for rule in {id(r): r for r in rules.values()}.values():
            rule.validate(module, removed)
        final = {a: {d: _merged(parts, merged) for d, parts in dims.items()} for a, dims in slices.items()}
        _check_tensors(name, module, final, shared)
        edits.append(ModuleEdit(name, module, removed, rules, final, slot_slices))
    return edits


def _check_module(name: str, module: nn.Module | None, lp: Any) -> nn.Module:
    """The plan's module ``name`` when it exists, was not pruned in select mode, and is of the planned type."""
    if module is None:
        raise ValueError(f"`plan` does not fit the model: module {name!r} not found.")
    if has_boundary_hooks(module) and (lp.reexpand or lp.select or any(sp.removed for sp in lp.slots.values())):
        raise ValueError(f"`plan` does not fit the model: {name!r} was already pruned with residual='select' (its "
                         "output is re-expanded or its input selected); its channels cannot be cut again.")
    if lp.type and type(module).__name__ != lp.type:
        raise ValueError(f"`plan` does not fit the model: {name!r} is a {type(module).__name__}, the plan "
                         f"expects {lp.type}.")
    return module


def _check_slot(name: str, module: nn.Module, slot: str, sp: Any) -> tuple[ModuleRule, np.ndarray]:
    """The rule of ``slot`` and the removed indices, when the slot exists with the planned width and the indices are
    distinct, in range and leave a channel."""
    rule = slot_rule(module, slot)
    sizes = rule.slot_sizes(module) if rule is not None else {}
    if slot not in sizes:
        raise ValueError(f"`plan` does not fit the model: {name!r} ({type(module).__name__}) has no "
                         f"prunable slot {slot!r}.")
    if sizes[slot] != sp.size:
        raise ValueError(f"`plan` does not fit the model: {name!r} {slot} has width {sizes[slot]}, the plan "
                         f"expects {sp.size} (already pruned, or another architecture?).")
    idx = np.asarray(sp.removed, dtype=np.int64)
    if len(idx) and (min(sp.removed) < 0 or max(sp.removed) >= sp.size):
        raise ValueError(f"`plan` indices for {name!r} {slot} must be in [0, {sp.size}), got "
                         f"{list(sp.removed)!r}.")
    if len(set(sp.removed)) != len(idx):  # a set, not np.unique: ~20x cheaper on the short lists of a plan
        raise ValueError(f"`plan` indices for {name!r} {slot} must be unique, got {list(sp.removed)!r}.")
    if len(idx) >= sp.size:
        raise ValueError(f"`plan` would remove every channel of {name!r} {slot} ({sp.size}).")
    return rule, idx


def _check_tensors(name: str, module: nn.Module, final: dict[str, dict[int, np.ndarray]],
                   shared: dict[int, tuple[str, dict[int, np.ndarray]]]) -> None:
    """No tensor is emptied, and a tensor shared by several modules (tied weights) is cut one way."""
    for attr, dims in final.items():
        t = tensor_attr(module, attr)
        for dim, cut in dims.items():
            if len(cut) >= t.shape[dim]:
                raise ValueError(f"`plan` would empty {name}.{attr} along dim {dim}.")
    for attr, dims in final.items():
        first = shared.setdefault(id(tensor_attr(module, attr)), (f"{name}.{attr}", dims))
        if first[1] is not dims and not _same_slices(first[1], dims):
            raise ValueError(f"`plan` slices the shared tensor {first[0]} and {name}.{attr} differently.")


def _merged(parts: list[np.ndarray], cache: dict[int, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The sorted distinct indices of ``parts``; a lone array seen before (a BN's four tensors and a conv's weight
    and bias are cut by the same one) is sorted once."""
    if len(parts) > 1:
        return unique_sorted_of(parts)
    hit = cache.get(id(parts[0]))
    if hit is None or hit[0] is not parts[0]:
        hit = cache[id(parts[0])] = (parts[0], unique_sorted(parts[0]))
    return hit[1]


def _same_slices(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> bool:
    """Whether two dim -> removed-indices maps cut a tensor the same way."""
    return a.keys() == b.keys() and all(np.array_equal(a[d], b[d]) for d in a)
