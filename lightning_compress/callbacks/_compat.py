"""Every private Lightning API the callbacks rely on, in one place (each has a test in tests/callbacks/test_compat.py).

Lightning gives no public way to do these four things; if a Lightning release changes one of them, only this module
(and its test) changes:

* :func:`fit_dataloader`: the training dataloader of ``trainer.fit(model, train_dataloaders=...)`` before the fit
  loop builds it (``trainer.fit_loop._data_source``), for an example input when there is no datamodule.
* :func:`is_spawn_worker`: whether this process is a worker of a spawning launcher (``ddp_spawn``), whose module is
  copied back into the launching process after ``fit`` (``_MultiProcessingLauncher`` of either Lightning namespace).
* :func:`exclude_from_returned_state`: leave tensors out of the state Lightning copies back from a spawn worker
  (``nn.Module._register_state_dict_hook``).
* :func:`wrap_on_load_checkpoint`: run a function just before a checkpoint's weights are loaded into a module
  (Lightning restores weights before callback states, ``_restore_modules_and_callbacks``; an instance attribute
  ``on_load_checkpoint`` is the only hook that runs in time).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from torch import nn

from lightning_compress._namespaces import spawn_launcher_types


def fit_dataloader(trainer: pl.Trainer) -> Any:
    """The train dataloader given to ``trainer.fit`` (not yet built into the fit loop), or ``None``."""
    source = getattr(trainer.fit_loop, "_data_source", None)
    if source is None or not source.is_defined():
        return None
    return source.dataloader()


def is_spawn_worker(trainer: pl.Trainer) -> bool:
    """True inside a worker of ``ddp_spawn`` (its results are copied into another process), under either namespace."""
    return trainer.world_size > 1 and is_spawning(trainer)


def is_spawning(trainer: pl.Trainer) -> bool:
    """True when the strategy launches its workers by spawning (also in the launching process), under either
    namespace (``pytorch_lightning`` or ``lightning.pytorch``)."""
    return isinstance(getattr(trainer.strategy, "launcher", None), spawn_launcher_types())


def exclude_from_returned_state(module: nn.Module, prefixes: tuple[str, ...]) -> None:
    """Drop ``module.state_dict()`` keys starting with ``prefixes`` (the state a spawn worker sends back)."""

    def drop(_: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
        if prefix:
            return
        for key in [k for k in state_dict if k.startswith(prefixes)]:
            del state_dict[key]

    module._register_state_dict_hook(drop)


def wrap_on_load_checkpoint(module: pl.LightningModule, before: Callable[[dict], None]) -> Callable[[], None]:
    """Call ``before(checkpoint)`` ahead of ``module.on_load_checkpoint``; returns a function that undoes it."""
    original = module.on_load_checkpoint
    own = module.__dict__.get("on_load_checkpoint")  # an instance-level override (e.g. another wrapper)

    def on_load_checkpoint(checkpoint: dict) -> None:
        before(checkpoint)
        original(checkpoint)

    module.on_load_checkpoint = on_load_checkpoint  # type: ignore[method-assign]

    def undo() -> None:
        if module.__dict__.get("on_load_checkpoint") is on_load_checkpoint:
            if own is None:
                del module.__dict__["on_load_checkpoint"]
            else:
                module.on_load_checkpoint = own  # type: ignore[method-assign]

    return undo
