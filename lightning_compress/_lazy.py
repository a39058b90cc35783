"""The module ``__getattr__`` of packages that load some names on first access (PEP 562)."""

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
