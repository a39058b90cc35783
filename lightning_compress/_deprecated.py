"""Old import paths that keep working: a moved module's old name forwards every attribute to the new module."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


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
