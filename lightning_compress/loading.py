"""The one loader of every model, weights, plan, checkpoint and run-record file the app and the library read.

``load_file(path, key)`` returns what ``torch.load(path, map_location="cpu", weights_only=True)`` returns (``.json``
files: what ``json.loads`` returns). Every failure raises :class:`LoadError` (a ``ValueError``; a missing file also
is a ``FileNotFoundError``) whose message names the file and ``key``, the config key or argument the path came from
(``method.pretrained``, ``weights``, ...). Only tensors and plain Python values are ever unpickled, and no message
suggests loading with ``weights_only=False``. The function reads the file and changes nothing.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
import zipfile
from os import PathLike
from pathlib import Path
from typing import Any

import torch

# What torch.load(weights_only=True) reports after this marker is the actual reason (the text before it is advice).
_TORCH_REASON_MARKER = "WeightsUnpickler error:"


class LoadError(ValueError):
    """A file that cannot be used; ``path`` and ``key`` say which file and which config key it came from."""

    def __init__(self, message: str, path: str | PathLike | None = None, key: str = "") -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.key = key


class MissingFileError(LoadError, FileNotFoundError):
    """The path names no file (also a ``FileNotFoundError``)."""


class SkippedObject:
    """Stands in for a pickled Python object that was *not* unpickled (:func:`load_file` with ``skip_objects``): it
    is never built, its arguments and state are dropped; ``name`` is the class or function the file named."""

    name = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"<{self.name}: not unpickled>"


def skipped_objects(value: Any) -> list[str]:
    """The names of the :class:`SkippedObject` s inside ``value`` (dicts, lists, tuples), sorted and unique."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, SkippedObject):
            found.add(item.name)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return sorted(found)


def load_file(path: str | PathLike, key: str, skip_objects: bool = False) -> Any:
    """The content of ``path``: a ``torch.save`` file (loaded on CPU with ``weights_only=True``) or a ``.json`` file.

    Args:
        path: the file.
        key: the config key or argument that named the file, e.g. ``"method.teacher"``; every error message starts
            with it.
        skip_objects: a file holding pickled Python objects (e.g. a Lightning checkpoint whose hyper-parameters hold
            a Hydra-instantiated optimizer partial) is read anyway: each such object becomes a
            :class:`SkippedObject` (nothing of it is imported, called or built; :func:`skipped_objects` lists them),
            tensors and plain values are read as usual. Needs torch >= 2.5 (``safe_globals`` with names).

    Raises:
        MissingFileError: ``path`` is empty or names no file.
        LoadError: ``path`` is a folder, or the file is empty, truncated, not a PyTorch/JSON file, or holds pickled
            Python objects (classes, modules) that ``weights_only=True`` refuses.
    """
    if path is None or str(path) == "":
        raise MissingFileError(f"`{key}` must be a file path, got {path!r}.", path, key)
    file = Path(path)
    where = f"`{key}`={str(path)!r}"
    if file.is_dir():
        raise LoadError(f"{where} is a folder; expected a file.", path, key)
    if not file.is_file():
        raise MissingFileError(f"{where} does not exist.", path, key)
    if file.stat().st_size == 0:
        raise LoadError(f"{where} is an empty file (0 bytes): an interrupted save?", path, key)
    if file.suffix == ".json":
        return _load_json(file, where, key)
    try:
        return _load_torch(file, where, key)
    except _PickledObjects as err:
        if not skip_objects or not hasattr(torch.serialization, "get_unsafe_globals_in_checkpoint"):
            raise LoadError(str(err), file, key) from None
    return _load_skipping_objects(file, where, key)


class _PickledObjects(Exception):
    """The file holds pickled Python objects (the message says which)."""


def _load_skipping_objects(file: Path, where: str, key: str) -> Any:
    """``torch.load(weights_only=True)`` with every global it refuses replaced by a :class:`SkippedObject` class."""
    names = torch.serialization.get_unsafe_globals_in_checkpoint(file)
    stand_ins = [(type(f"Skipped_{i}", (SkippedObject,), {"name": name}), name) for i, name in enumerate(names)]
    try:
        with torch.serialization.safe_globals(stand_ins):
            return _load_torch(file, where, key)
    except _PickledObjects as err:
        raise LoadError(str(err), file, key) from None


def _load_json(file: Path, where: str, key: str) -> Any:
    try:
        return json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LoadError(f"{where} is not valid JSON: {err}.", file, key) from None


def _load_torch(file: Path, where: str, key: str) -> Any:
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols just before refusing the file
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = _torch_reason(err)
        blocked = re.search(r"unsupported GLOBAL (\S+) whose module (\S+) is blocked", str(err))
        if blocked:
            raise LoadError(f"{where} refers to {blocked.group(1)} (module {blocked.group(2)}, which is never loaded "
                            "from a file); refused.", file, key) from None
        pickled = re.search(r"Unsupported global: GLOBAL (\S+)", reason)
        if pickled:
            raise _PickledObjects(
                f"{where} holds pickled Python objects ({pickled.group(1)}); only tensors and plain values are loaded "
                "(weights_only=True). Save `net.state_dict()` or a stage model (stages/<stage>/model.pt) instead."
            ) from None
        raise LoadError(f"{where} is not a file written by torch.save ({reason}).", file, key) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        reason = str(err).split(". ")[0] or type(err).__name__
        raise LoadError(f"{where} is truncated or corrupt ({reason}).", file, key) from None


def _torch_reason(err: Exception) -> str:
    """The reason torch gives, without its surrounding advice (which suggests ``weights_only=False``)."""
    text = str(err)
    if _TORCH_REASON_MARKER in text:
        text = text.split(_TORCH_REASON_MARKER, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = lines[0] if lines else type(err).__name__
    return reason.rstrip(".")


__all__ = ["LoadError", "MissingFileError", "SkippedObject", "load_file", "skipped_objects"]
