"""Decode-once cache of :class:`DecodedData` as uncompressed ``.npz`` files outside the data root.

The cache key hashes the reader version, the decode options and the absolute path, size and mtime of every
source file, so a changed, replaced or moved source is decoded again. Files are written to a temporary name and
renamed, so concurrent processes (DDP ranks) never see a half-written cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from lightning_compress.data.readers import DecodedData, Source, source_files

CACHE_VERSION = 1
_FIELDS = ("train_images", "train_labels", "test_images", "test_labels")


def default_cache_dir() -> Path:
    """``$LIGHTNING_COMPRESS_CACHE``, else ``$XDG_CACHE_HOME/lightning_compress``, else ``~/.cache/...``."""
    if os.environ.get("LIGHTNING_COMPRESS_CACHE"):
        return Path(os.environ["LIGHTNING_COMPRESS_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lightning_compress"


def cache_key(source: Source, **options: object) -> str:
    """Hex digest identifying the source files (path, size, mtime) and the decode options."""
    entries = []
    for path in source_files(source):
        stat = path.stat()
        entries.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    payload = {"version": CACHE_VERSION, "kind": source.kind, "files": entries, "options": options}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


def cache_path(cache_dir: Path, name: str, key: str) -> Path:
    """Where the cache of data set ``name`` with ``key`` lives."""
    return Path(cache_dir).expanduser() / f"{name}-{key}.npz"


def load_cache(path: Path) -> DecodedData | None:
    """The cached data, or None when the file is absent or unreadable (then the caller decodes again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {field: npz[field] for field in _FIELDS}
            classes = tuple(str(c) for c in npz["classes"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None
    return DecodedData(**arrays, classes=classes)


def save_cache(path: Path, data: DecodedData) -> None:
    """Write ``data`` atomically (temporary file in the same folder, then rename). Raises OSError if unwritable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{field: getattr(data, field) for field in _FIELDS}, classes=np.asarray(data.classes))
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a cache is not secret
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
