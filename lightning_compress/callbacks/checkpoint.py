"""Load a checkpoint of a pruned run into a fresh instance of your own LightningModule (``weights_only=True``).

A pruning callback writes ``checkpoint["lightning_compress"] = {"plan", "method", "net_path"}`` into every checkpoint
saved after pruning. :func:`load_pruned_checkpoint` builds (or takes) an *unpruned* module, prunes its network by that
name-based plan so every shape matches, then loads the weights. Nothing pickled is ever unpickled.
"""

from __future__ import annotations

from os import PathLike
from typing import Any, TypeVar

import pytorch_lightning as pl
import torch

from lightning_compress.callbacks.base import CHECKPOINT_KEY, resolve_net

ModuleT = TypeVar("ModuleT", bound=pl.LightningModule)


def read_checkpoint(path: str | PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``; raises a clear error when the file holds pickled objects."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises UnpicklingError (or RuntimeError) for non-weights content
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(
            f"`path` must be a checkpoint loadable with weights_only=True, got {str(path)!r}: {err}") from err


def load_pruned_checkpoint(module_cls_or_instance: type[ModuleT] | ModuleT, path: str | PathLike,
                           map_location: Any = "cpu", strict: bool = True, **kwargs: Any) -> ModuleT:
    """A LightningModule with the (pruned) weights of the checkpoint at ``path``.

    Args:
        module_cls_or_instance: your LightningModule class (built with the checkpoint's saved hyper-parameters
            updated by ``kwargs``, as ``load_from_checkpoint`` does) or an already built, *unpruned* instance.
        path: a Lightning checkpoint (``.ckpt``) written by a run with a pruning callback (or any plain one).
        map_location: where tensors are loaded.
        strict: passed to ``load_state_dict``.
        kwargs: constructor arguments that were not saved (e.g. ``net=`` for ``ImageClassifier``, which ignores it).

    Raises:
        TypeError: if ``module_cls_or_instance`` is neither a LightningModule subclass nor an instance.
        ValueError: if the file cannot be read with ``weights_only=True`` or has no ``state_dict``.
    """
    is_instance = isinstance(module_cls_or_instance, pl.LightningModule)
    if not is_instance and not (isinstance(module_cls_or_instance, type)
                                and issubclass(module_cls_or_instance, pl.LightningModule)):
        raise TypeError("`module_cls_or_instance` must be a LightningModule subclass or instance, "
                        f"got {module_cls_or_instance!r}.")
    checkpoint = read_checkpoint(path, map_location)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        keys = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"`path` must be a Lightning checkpoint with a 'state_dict', got {keys}.")
    if is_instance:
        if kwargs:
            raise TypeError(f"`kwargs` are constructor arguments; got {sorted(kwargs)} with a module instance.")
        module = module_cls_or_instance
    else:
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        module = module_cls_or_instance(**{**hparams, **kwargs})
    entry = checkpoint.get(CHECKPOINT_KEY)
    if entry and entry.get("plan") is not None:
        from lightning_compress.pruning import PruningPlan, prune

        net, _ = resolve_net(module, entry.get("net_path") or "")
        prune(net, PruningPlan.from_dict(entry["plan"]))
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"], strict=strict)
    return module
