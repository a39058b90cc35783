"""Pruning plans in Lightning checkpoints: written on save, re-applied before a resumed fit loads pruned weights, and
:func:`load_pruned_checkpoint` for loading one into a fresh instance of your own LightningModule.

Every checkpoint saved after a callback pruned the network carries ``checkpoint["lightning_compress"]`` in the format of
:mod:`lightning_compress.pruning.saving` (plan + ``net_path`` + method). Lightning restores a checkpoint's weights
*before* callback states, so a resumed fit cannot wait for ``load_state_dict``: :class:`PlanRestorer` hooks into the
module's ``on_load_checkpoint`` and prunes the network to the checkpoint's plan just before its weights are loaded.
"""

from __future__ import annotations

import copy
import os
from os import PathLike
from typing import Any, TypeVar

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from lightning_compress._namespaces import is_lightning_module, is_lightning_module_class
from lightning_compress.callbacks._compat import wrap_on_load_checkpoint
from lightning_compress.callbacks.network import device_of, resolve_net
from lightning_compress.loading import load_file, skipped_objects
from lightning_compress.pruning import PruningPlan, prune
from lightning_compress.pruning.saving import (
    BEFORE_CUT_KEY,
    KEY,
    network_state,
    plan_of,
    pruned_payload,
    read_payload,
    restore,
)

ModuleT = TypeVar("ModuleT", bound=pl.LightningModule)
SOFT_KEY = "soft_selection"  # a checkpoint of a full-width, soft-pruned network (FPGM during its fit)
PRUNED_CHECKPOINT_KEY = "pruned_checkpoint"  # where the callback writes the checkpoint after its cut
PRUNED_FILENAME = "pruned.ckpt"  # written after the cut into the folder of every ModelCheckpoint
PLAN_ATTRIBUTE = "_lightning_compress_plan"  # on a pruned network: its cumulative plan (a plain attribute, not saved)


def attached_plan(net: nn.Module) -> PruningPlan | None:
    """The cumulative plan a pruning callback or a loader recorded on ``net`` (``None``: not pruned by them)."""
    plan = getattr(net, PLAN_ATTRIBUTE, None)
    return plan if isinstance(plan, PruningPlan) else None


def attach_plan(net: nn.Module, plan: PruningPlan) -> None:
    """Record ``plan`` (relative to the unpruned network) on ``net``, so that a later pruning composes with it (without
    the graph it was made on: copies of ``net`` stay light)."""
    object.__setattr__(net, PLAN_ATTRIBUTE, PruningPlan(plan.layers, plan.groups, plan.input_shape))


def write_plan(checkpoint: dict, plan: PruningPlan | None, net_path: str, method: str,
               soft_selection: PruningPlan | None = None, before_cut: bool = False,
               pruned_checkpoint: str | None = None) -> None:
    """Record the plan in a checkpoint being saved; before the callback's cut (``before_cut``, or a soft selection)
    mark the checkpoint as the full-width network and say where the pruned one will be (``pruned_checkpoint``)."""
    where = {PRUNED_CHECKPOINT_KEY: pruned_checkpoint} if pruned_checkpoint else {}
    if plan is not None:
        checkpoint[KEY] = pruned_payload(plan, net_path, method=method)
    elif soft_selection is not None:
        checkpoint[KEY] = pruned_payload(None, net_path, method=method, **{SOFT_KEY: soft_selection.to_dict()},
                                         **{BEFORE_CUT_KEY: True}, **where)
    elif before_cut:
        checkpoint[KEY] = pruned_payload(None, net_path, method=method, **{BEFORE_CUT_KEY: True}, **where)


def pruned_checkpoint_paths(trainer: pl.Trainer) -> list[str]:
    """Where a callback writes the checkpoint after its cut: ``pruned.ckpt`` in the folder of every checkpoint
    callback with a folder, and every existing ``last`` checkpoint (rewritten)."""
    paths: list[str] = []
    for callback in trainer.checkpoint_callbacks:
        dirpath = getattr(callback, "dirpath", None)
        if dirpath:
            paths.append(os.path.join(dirpath, PRUNED_FILENAME))
        last = getattr(callback, "last_model_path", "")
        if last:
            paths.append(last)
    return list(dict.fromkeys(paths))


def save_after_cut(trainer: pl.Trainer, method: str) -> list[str]:
    """Write the pruned network, its plan, the sliced optimizer state and the callback states to every path of
    :func:`pruned_checkpoint_paths` (on every rank: saving is collective); returns the paths."""
    paths = pruned_checkpoint_paths(trainer)
    for path in paths:
        trainer.save_checkpoint(path, weights_only=False)
    if paths:
        rank_zero_info(f"[{method}] saved the pruned network (plan and optimizer state included): {paths[0]}"
                       + (f" (also {', '.join(paths[1:])})" if paths[1:] else ""))
    return paths


def _pruned_hint(entry: dict) -> str:
    """Which checkpoint holds the pruned network, for a checkpoint written before the cut."""
    method, pruned = entry.get("method") or "the pruning callback", entry.get(PRUNED_CHECKPOINT_KEY)
    if pruned:
        return f"HINT: use the checkpoint {method} writes after the cut, {pruned!r}"
    return f"HINT: use a checkpoint {method} wrote after the cut ({PRUNED_FILENAME} or last.ckpt beside this one)"


def _before_cut_message(entry: dict, source: str) -> str:
    method = entry.get("method") or "the pruning callback"
    return (f"{source} was written by {method} before it pruned the network: it holds the full-width network, not "
            f"the pruned one. {_pruned_hint(entry)} (`trainer.test(ckpt_path=...)`, `load_pruned_checkpoint`).")


class PlanRestorer:
    """Re-prunes a callback's network to a checkpoint's plan right before Lightning loads the checkpoint's weights.

    ``arm(pl_module)`` in ``setup``; ``keep_unpruned()`` before a callback prunes in ``setup`` (so a checkpoint with a
    different plan can still be applied); ``release()`` once restoring is over; ``disarm()`` in ``teardown``.
    """

    def __init__(self, owner: Any) -> None:
        self.owner = owner  # the callback: has net, net_path, plan, finished
        self._undo = None
        self._module: pl.LightningModule | None = None
        self._unpruned: nn.Module | None = None

    def arm(self, pl_module: pl.LightningModule) -> None:
        if self._module is pl_module:
            return
        self.disarm()
        self._module = pl_module
        self._undo = wrap_on_load_checkpoint(pl_module, self._restore)

    def disarm(self) -> None:
        if self._undo is not None:
            self._undo()
        self._undo, self._module, self._unpruned = None, None, None

    def keep_unpruned(self, net: nn.Module) -> None:
        self._unpruned = copy.deepcopy(net).cpu()

    def release(self) -> None:
        self._unpruned = None

    def _restore(self, checkpoint: dict) -> None:
        entry = read_payload(checkpoint, "checkpoint")
        target = plan_of(entry, "checkpoint")
        owner = self.owner
        current = owner.plan if owner.plan is not None else attached_plan(owner.net)
        if entry is not None and entry.get(BEFORE_CUT_KEY) and current is not None:
            raise ValueError(_before_cut_message(entry, "The checkpoint being loaded"))
        if target is None or entry.get("net_path", owner.net_path) != owner.net_path:
            return
        if current is not None and current.to_dict() == target.to_dict():
            owner.plan = target
            return
        if current is not None:
            if self._unpruned is None:
                raise RuntimeError(
                    f"{type(owner).__name__}: the checkpoint was pruned by a different plan than the one applied in "
                    "this run, and the unpruned network is no longer available to re-prune it. HINT: resume with the "
                    "same pretrained weights and arguments, or load it with `load_pruned_checkpoint`.")
            _restore_modules(owner.net, self._unpruned)
        rank_zero_info(f"[{type(owner).__name__}] re-applying the checkpoint's pruning plan before loading its weights")
        prune(owner.net, target)
        attach_plan(owner.net, target)
        owner.plan, owner.finished = target, True


def _restore_modules(net: nn.Module, unpruned: nn.Module) -> None:
    """Put back every leaf module of ``unpruned`` whose parameter shapes differ in ``net`` (on ``net``'s device)."""
    device = device_of(net)
    for name, original in unpruned.named_modules():
        if not name or list(original.children()):
            continue
        current = net.get_submodule(name)
        shapes = {k: v.shape for k, v in current.state_dict().items()}
        if shapes != {k: v.shape for k, v in original.state_dict().items()}:
            parent_name, _, child = name.rpartition(".")
            setattr(net.get_submodule(parent_name) if parent_name else net, child, copy.deepcopy(original).to(device))


def read_checkpoint(path: str | PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """The checkpoint at ``path`` through the project's one loader (``weights_only=True``, errors name the file);
    pickled Python objects (e.g. in ``hyper_parameters``) are not unpickled but left as
    :class:`~lightning_compress.loading.SkippedObject` s."""
    data = load_file(path, "path", skip_objects=True)
    if map_location != "cpu" and isinstance(data, dict):
        data = _to(data, map_location)
    if not isinstance(data, dict) or "state_dict" not in data:
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"`path` {str(path)!r} must be a Lightning checkpoint with a 'state_dict', got {found}.")
    return data


def _to(value: Any, device: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device) for v in value)
    return value


def load_pruned_checkpoint(module_cls_or_instance: type[ModuleT] | ModuleT, path: str | PathLike,
                           map_location: Any = "cpu", **kwargs: Any) -> ModuleT:
    """A LightningModule with the (pruned) weights of the checkpoint at ``path``.

    Args:
        module_cls_or_instance: your LightningModule class (built with the checkpoint's saved hyper-parameters
            updated by ``kwargs``, as ``load_from_checkpoint`` does) or an already built, *unpruned* instance.
        path: a Lightning checkpoint (``.ckpt``) written by a run with a pruning callback (or any plain one).
        map_location: where tensors are loaded.
        kwargs: constructor arguments that were not saved (e.g. ``net=`` for ``ImageClassifier``, which ignores it).

    Raises:
        TypeError: ``module_cls_or_instance`` is neither a LightningModule subclass nor an instance.
        ValueError: the file cannot be read with ``weights_only=True``, has no ``state_dict``, its plan or weights do
            not fit the module, or it was written before the callback's cut (the full-width network).

    Nothing but tensors and plain values is unpickled: hyper-parameters holding Python objects (a Hydra-instantiated
    optimizer partial) are left out with a warning; pass them in ``kwargs`` if the constructor needs them.
    """
    is_instance = is_lightning_module(module_cls_or_instance)
    if not is_instance and not is_lightning_module_class(module_cls_or_instance):
        raise TypeError("`module_cls_or_instance` must be a LightningModule subclass or instance (of "
                        f"`pytorch_lightning` or `lightning.pytorch`), got {module_cls_or_instance!r}.")
    if is_instance and kwargs:
        raise TypeError(f"`kwargs` are constructor arguments; got {sorted(kwargs)} with a module instance.")
    checkpoint = read_checkpoint(path, map_location)
    source = f"checkpoint {str(path)!r}"
    entry = read_payload(checkpoint, source)
    if entry is not None and entry.get(SOFT_KEY) is not None:
        raise ValueError(f"{source} was written during soft pruning: it holds the full-width network with zeroed "
                         f"filters, not the pruned one. {_pruned_hint(entry)}.")
    if entry is not None and entry.get(BEFORE_CUT_KEY):
        raise ValueError(_before_cut_message(entry, source) + " To load the full-width network itself, use "
                         "`load_from_checkpoint`.")
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    unread = {k: skipped_objects(v) for k, v in hparams.items() if skipped_objects(v)}
    if unread:
        rank_zero_warn(f"{source}: the hyper-parameters {sorted(unread)} hold Python objects that were not unpickled "
                       f"({', '.join(sorted({n for names in unread.values() for n in names}))}); only the weights and "
                       "the pruning plan were read" + ("." if is_instance else
                                                       ", and the module is built without them (or with `kwargs`)."))
    if is_instance:
        module = module_cls_or_instance
    else:
        arguments = {**{k: v for k, v in hparams.items() if k not in unread}, **kwargs}
        try:
            module = module_cls_or_instance(**arguments)
        except TypeError as err:
            if not set(unread) - set(kwargs):
                raise
            raise TypeError(f"{source}: building {module_cls_or_instance.__name__} failed without the hyper-parameters "
                            f"that were not unpickled ({err}). HINT: pass {sorted(set(unread) - set(kwargs))} as "
                            "keyword arguments, or pass a built (unpruned) instance.") from err
    module.on_load_checkpoint(checkpoint)
    if entry is not None and entry.get("plan") is not None:
        net_path = entry.get("net_path") or ""
        net, _ = resolve_net(module, net_path)
        plan = plan_of(entry, source)
        restore(net, plan, network_state(checkpoint, net_path, source), source)
        attach_plan(net, plan)
        others = {k: v for k, v in checkpoint["state_dict"].items() if net_path and not k.startswith(net_path + ".")}
        if others:
            module.load_state_dict(others, strict=False)
        return module
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"{source}: the weights do not fit the module: {err}") from err
    return module
