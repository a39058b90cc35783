"""Module ``__getattr__`` functions (PEP 562): names loaded on first access, and old import paths that keep working
with a DeprecationWarning."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, lazy: Mapping[str, str], moved: Mapping[str, str] | None = None
                 ) -> Callable[[str], Any]:
    """A ``__getattr__`` for ``package``: ``lazy[name]`` is the module a public name loads from on first access;
    ``moved[name]`` the module an old, no longer exported name now lives in (returned with a DeprecationWarning)."""
    moved = moved or {}

    def __getattr__(name: str) -> Any:
        if name in lazy:
            return getattr(importlib.import_module(lazy[name]), name)
        if name in moved:
            warnings.warn(f"`{package}.{name}` is internal and no longer exported; import it from `{moved[name]}`"
                          f"{_HINTS.get(name, '')}.", DeprecationWarning, stacklevel=2)
            return getattr(importlib.import_module(moved[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


_HINTS = {"select_on_graph": " (or call `select_channels(model, example_inputs, pruning_ratio, graph=graph)`)"}


def forward_to(old: str, new: str) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` for the old module ``old``: each attribute comes from ``new`` with a
    :class:`DeprecationWarning` naming the new import path."""

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(new), name)  # AttributeError names `new`'s missing attribute
        warnings.warn(f"`{old}` moved to `{new}`: import `{name}` from `{new}`.", DeprecationWarning, stacklevel=2)
        return value

    def __dir__() -> list[str]:
        return sorted(name for name in dir(importlib.import_module(new)) if not name.startswith("__"))

    return __getattr__, __dir__
