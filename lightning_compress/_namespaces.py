"""Both Lightning packages at once: ``pytorch_lightning`` and the unified ``lightning`` (``lightning.pytorch``).

The two packages hold the same code under two names, and each one's Trainer accepts only its own classes
(``isinstance(model, LightningModule)``). This module is the one place that knows both:

* ``*_TYPES`` tuples (the classes of every installed namespace) for ``isinstance`` checks, and :func:`namespace_of`;
* :class:`LightningModuleBase`, :class:`LightningDataModuleBase`, :class:`CallbackBase`: the bases of this project's
  modules, data modules and callbacks, subclasses of the classes of *every* installed namespace, so that a
  ``lightning.Trainer`` and a ``pytorch_lightning.Trainer`` both accept them.

A class with both bases inherits the methods of the first (``pytorch_lightning``). The two copies of a few default
hooks differ only in their docstrings, and Lightning decides whether a hook is *overridden* by comparing code objects
with its own namespace's base class: under a ``lightning.Trainer`` those defaults would all look overridden (e.g.
``configure_sharded_model`` together with ``configure_model``, which Lightning refuses). Such hooks are therefore
looked up in the base class of the namespace of the Trainer the object is attached to (:class:`_PerTrainerHook`),
so either Trainer sees the class exactly as it sees a class written for it alone.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytorch_lightning


def _installed() -> tuple[ModuleType, ...]:
    found = [pytorch_lightning]
    if importlib.util.find_spec("lightning") is not None:
        found.append(importlib.import_module("lightning.pytorch"))
    return tuple(found)


NAMESPACES: tuple[ModuleType, ...] = _installed()
"""The installed Lightning namespaces: ``pytorch_lightning`` first, then ``lightning.pytorch`` if installed."""

LIGHTNING_MODULE_TYPES: tuple[type, ...] = tuple(ns.LightningModule for ns in NAMESPACES)
DATAMODULE_TYPES: tuple[type, ...] = tuple(ns.LightningDataModule for ns in NAMESPACES)
TRAINER_TYPES: tuple[type, ...] = tuple(ns.Trainer for ns in NAMESPACES)
CALLBACK_TYPES: tuple[type, ...] = tuple(ns.Callback for ns in NAMESPACES)


def namespace_of(obj: Any) -> ModuleType | None:
    """The namespace (``pytorch_lightning`` or ``lightning.pytorch``) whose Trainer, LightningModule, data module or
    callback ``obj`` (an instance or a class) is; ``None`` if it is none of them. A class of this project counts as
    the first namespace."""
    cls = obj if isinstance(obj, type) else type(obj)
    for ns in NAMESPACES:
        if issubclass(cls, (ns.Trainer, ns.LightningModule, ns.LightningDataModule, ns.Callback)):
            return ns
    return None


def is_lightning_module(obj: Any) -> bool:
    """Whether ``obj`` is a LightningModule instance of either namespace."""
    return isinstance(obj, LIGHTNING_MODULE_TYPES)


def is_lightning_module_class(obj: Any) -> bool:
    """Whether ``obj`` is a LightningModule subclass of either namespace."""
    return isinstance(obj, type) and issubclass(obj, LIGHTNING_MODULE_TYPES)


def spawn_launcher_types() -> tuple[type, ...]:
    """The ``_MultiProcessingLauncher`` classes (``ddp_spawn``) of every installed namespace (a private API)."""
    return tuple(importlib.import_module(f"{ns.__name__}.strategies.launchers.multiprocessing")._MultiProcessingLauncher
                 for ns in NAMESPACES)


class _PerTrainerHook:
    """A default hook whose two namespace copies differ (docstrings only): the copy of the attached Trainer's
    namespace (the first namespace when detached or accessed on the class)."""

    def __init__(self, name: str, bases: tuple[type, ...]) -> None:
        self.name = name
        self.bases = bases  # one base class per namespace, in NAMESPACES order

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return getattr(self.bases[0], self.name)
        trainer = instance.__dict__.get("_trainer", instance.__dict__.get("trainer"))
        base = self.bases[0]
        for ns, candidate in zip(NAMESPACES, self.bases):
            if trainer is not None and isinstance(trainer, ns.Trainer):
                base = candidate
                break
        return getattr(base, self.name).__get__(instance, owner)


def _combined(name: str, bases: tuple[type, ...], doc: str) -> type:
    """A subclass of every class in ``bases`` (one per namespace) whose differing default hooks follow the Trainer."""
    if len(bases) == 1:
        return type(name, bases, {"__doc__": doc, "__module__": __name__})
    namespace: dict[str, Any] = {"__doc__": doc, "__module__": __name__}
    for attr in dir(bases[-1]):
        codes = [getattr(getattr(base, attr, None), "__code__", None) for base in bases]
        if all(code is not None for code in codes) and any(code != codes[0] for code in codes):
            namespace[attr] = _PerTrainerHook(attr, bases)
    return type(name, bases, namespace)


if TYPE_CHECKING:  # type checkers see the pytorch_lightning classes
    LightningModuleBase = pytorch_lightning.LightningModule
    LightningDataModuleBase = pytorch_lightning.LightningDataModule
    CallbackBase = pytorch_lightning.Callback
else:
    LightningModuleBase = _combined(
        "LightningModuleBase", LIGHTNING_MODULE_TYPES,
        "A LightningModule of every installed Lightning namespace (the base of this project's modules).")
    LightningDataModuleBase = _combined(
        "LightningDataModuleBase", DATAMODULE_TYPES,
        "A LightningDataModule of every installed Lightning namespace (the base of this project's data modules).")
    CallbackBase = _combined(
        "CallbackBase", CALLBACK_TYPES,
        "A Callback of every installed Lightning namespace (the base of this project's callbacks).")

__all__ = ["CALLBACK_TYPES", "DATAMODULE_TYPES", "LIGHTNING_MODULE_TYPES", "NAMESPACES", "TRAINER_TYPES",
           "CallbackBase", "LightningDataModuleBase", "LightningModuleBase", "is_lightning_module",
           "is_lightning_module_class", "namespace_of", "spawn_launcher_types"]
