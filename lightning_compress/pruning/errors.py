"""Exceptions and argument checks of the pruning engine (all raised before anything is modified)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


class UnsupportedOpError(RuntimeError):
    """Raised with ``strict=True`` when the traced model contains ops the engine has no rule for."""


class TraceError(RuntimeError):
    """Raised when torch.fx cannot trace the model (e.g. data-dependent Python control flow)."""


def check_fraction(name: str, value: Any) -> float:
    """Return ``value`` as a float in [0, 1) or raise TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a float in [0, 1), got {value!r}.")
    if not math.isfinite(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be a float in [0, 1), got {value!r}.")
    return float(value)


def check_ratio(pruning_ratio: Any) -> float | dict[str, float]:
    """Validate ``pruning_ratio``: a float in [0, 1) or a non-empty dict {glob: float in [0, 1)}."""
    if isinstance(pruning_ratio, Mapping):
        if not pruning_ratio:
            raise ValueError(f"`pruning_ratio` must be a float or a non-empty dict of globs, got {pruning_ratio!r}.")
        out: dict[str, float] = {}
        for key, val in pruning_ratio.items():
            if not isinstance(key, str) or not key:
                raise TypeError(f"`pruning_ratio` keys must be module-name globs (str), got {key!r}.")
            out[key] = check_fraction(f"pruning_ratio[{key!r}]", val)
        return out
    return check_fraction("pruning_ratio", pruning_ratio)


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` if it is an int >= 1, else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int >= 1, got {value!r}.")
    if value < 1:
        raise ValueError(f"`{name}` must be an int >= 1, got {value!r}.")
    return value
