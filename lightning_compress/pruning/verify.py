"""The post-prune check: one forward on the example inputs after ``prune``; on failure the model is restored exactly.

A plan can be valid module by module and still give a model that does not run, when ``forward`` reads a size the
engine did not see (a width hard-coded in a helper, a size computed in Python from an attribute the engine could not
trace). ``prune(model, plan, example_inputs=x)`` runs :func:`prune_checked`: it keeps the replaced parameter,
buffer and attribute objects of every planned module (and the optimizer's parameter lists and state), prunes, runs
``model(x)`` once in eval mode under ``no_grad``, and on any exception puts every kept object back (the state dict
and the size attributes are then exactly the ones before) and raises :class:`PrunedModelError` naming the module
and source line that failed.
"""

from __future__ import annotations

import copy
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

_INTERNAL = ("/torch/", "/lightning_compress/pruning/")


class PrunedModelError(RuntimeError):
    """The pruned model failed on the example inputs; the model (and optimizer) were restored to before ``prune``."""


class _Snapshot:
    """The objects ``prune`` replaces on the planned modules (and the optimizer), kept to put them back."""

    def __init__(self, model: nn.Module, names: list[str], optimizer: torch.optim.Optimizer | None) -> None:
        modules = dict(model.named_modules())
        self.modules: list[tuple[nn.Module, dict[str, Any], dict[str, Any], dict[str, Any]]] = []
        for name in names:
            module = modules.get(name)
            if module is None:
                continue
            attrs = {k: copy.copy(v) if isinstance(v, (list, dict, set)) else v for k, v in vars(module).items()
                     if k not in ("_parameters", "_buffers", "_modules")}
            self.modules.append((module, dict(module._parameters), dict(module._buffers), attrs))
        self.classes = {m: type(m) for m in modules.values()}  # fused stream adds give modules a new class
        self.optimizer = optimizer
        if optimizer is not None:
            self.param_lists = [list(group["params"]) for group in optimizer.param_groups]
            self.state = dict(optimizer.state)

    def restore(self) -> None:
        for module, params, buffers, attrs in self.modules:
            module._parameters.clear()
            module._parameters.update(params)
            module._buffers.clear()
            module._buffers.update(buffers)
            for key in [k for k in vars(module) if k not in ("_parameters", "_buffers", "_modules")]:
                if key not in attrs:
                    del module.__dict__[key]
            module.__dict__.update(attrs)
        for module, cls in self.classes.items():
            if type(module) is not cls:
                module.__class__ = cls
        if self.optimizer is not None:
            for group, params in zip(self.optimizer.param_groups, self.param_lists):
                group["params"] = params
            self.optimizer.state.clear()
            self.optimizer.state.update(self.state)


def run_once(model: nn.Module, example_inputs: Any) -> Any:
    """``model(example_inputs)`` in eval mode under ``no_grad`` (a tensor, a tuple of tensors or a dict of kwargs);
    every module's train/eval mode is restored afterwards."""
    modes = {m: m.training for m in dict(model.named_modules()).values()}
    try:
        model.eval()
        with torch.no_grad():
            if isinstance(example_inputs, Mapping):
                return model(**example_inputs)
            if isinstance(example_inputs, (tuple, list)):
                return model(*example_inputs)
            return model(example_inputs)
    finally:
        for m, mode in modes.items():
            m.training = mode


def _failing_module(model: nn.Module, exc: BaseException) -> str:
    """Where the forward failed: the innermost module's name and the last source line outside torch."""
    names = {id(m): n for n, m in dict(model.named_modules()).items()}
    frames = traceback.extract_tb(exc.__traceback__)
    module = ""
    tb = exc.__traceback__
    while tb is not None:
        self_obj = tb.tb_frame.f_locals.get("self")
        if isinstance(self_obj, nn.Module) and id(self_obj) in names:  # the last one seen is the innermost
            module = f"module {names[id(self_obj)] or '<root>'!r} ({type(self_obj).__name__})"
        tb = tb.tb_next
    user = [f for f in frames if not any(part in f.filename.replace("\\", "/") for part in _INTERNAL)]
    where = f"{user[-1].filename}:{user[-1].lineno}: {user[-1].line}" if user else ""
    return ", ".join(part for part in (module, where) if part)


def prune_checked(model: nn.Module, plan: Any, example_inputs: Any, optimizer: torch.optim.Optimizer | None,
                  prune: Callable[[nn.Module, Any, torch.optim.Optimizer | None], nn.Module]) -> nn.Module:
    """``prune`` (the unchecked surgery) then one forward on ``example_inputs``; on failure restore and raise."""
    snapshot = _Snapshot(model, list(getattr(plan, "layers", {})), optimizer)
    prune(model, plan, optimizer)
    try:
        run_once(model, example_inputs)
    except Exception as exc:
        where = _failing_module(model, exc)
        snapshot.restore()
        raise PrunedModelError(
            f"the pruned model does not run on `example_inputs` ({where}): {type(exc).__name__}: {exc}. The model "
            f"was restored to its state before `prune`. forward reads a size the engine could not see; freeze that "
            f"part (ignored_layers) or register a rule for it (lightning_compress/pruning/README.md, 'Custom ops')."
        ) from exc
    return model
