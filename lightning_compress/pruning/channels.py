"""Channel identities carried by traced tensors, and the union-find that couples them.

Every channel the engine could remove gets an integer id. Ops that tie channels together (a residual add, a BN that
normalises a conv's output, a consumer's input channels) *union* ids, so after tracing each union-find class is a set
of channel slices that must be removed together. A tensor's ``Carry`` records which of its dims hold channel ids (its
"carrying" dims) and the ids jointly over those dims; ``Opaque`` marks a tensor the engine cannot slice (model inputs,
unknown ops): every element shares one frozen id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def unique_sorted(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` of a 1-D array by sorting: numpy 2's hash-based ``unique`` (the path taken without
    ``return_*``) was slower on the engine's id arrays, from a few to ~20k ids."""
    ordered = np.sort(np.asarray(values).ravel())
    if ordered.size < 2:
        return ordered
    keep = np.empty(ordered.size, dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def unique_sorted_of(parts: list[np.ndarray]) -> np.ndarray:
    """:func:`unique_sorted` of several 1-D arrays together (no copy-and-concatenate for a lone one)."""
    return unique_sorted(parts[0] if len(parts) == 1 else np.concatenate(parts))


@dataclass(frozen=True)
class Carry:
    """Channel ids of a tensor: ``ids.shape == tuple(tensor.shape[d] for d in dims)``; other dims carry none."""

    dims: tuple[int, ...]
    ids: np.ndarray


@dataclass(frozen=True)
class Opaque:
    """A tensor whose elements all share one (frozen) id: it can never be sliced by the engine."""

    id: int


Info = Carry | Opaque | None


class UnionFind:
    """Union-find over channel ids, vectorised over numpy arrays of ids.

    The classes, not the root ids, are the result (the graph is built from classes only). Frozen reasons are kept on
    whichever id was frozen and gathered per root on demand (``frozen_roots``), so a union never has to move them.
    """

    def __init__(self) -> None:
        self._parent = np.zeros(1024, dtype=np.int64)
        self._size = 0
        self._reasons: dict[int, set[str]] = {}
        self._by_root: dict[int, set[str]] | None = None  # reasons gathered per root; None when stale

    def copy(self) -> UnionFind:
        other = UnionFind()
        other._parent = self._parent.copy()
        other._size = self._size
        other._reasons = {k: set(v) for k, v in self._reasons.items()}
        return other

    def new(self, n: int, reason: str | None = None) -> np.ndarray:
        """Allocate ``n`` fresh ids (frozen with ``reason`` when given)."""
        start, end = self._size, self._size + n
        if end > len(self._parent):
            grown = np.zeros(max(2 * len(self._parent), end), dtype=np.int64)
            grown[:start] = self._parent[:start]
            self._parent = grown
        ids = np.arange(start, end, dtype=np.int64)
        self._parent[start:end] = ids
        self._size = end
        if reason is not None:
            for i in range(start, end):
                self._reasons[i] = {reason}
            self._by_root = None
        return ids

    def find_all(self, ids: np.ndarray) -> np.ndarray:
        """Root of every id in ``ids`` (same shape); compresses the paths it walks."""
        ids = np.asarray(ids, dtype=np.int64)
        parent = self._parent
        x = ids.ravel()
        while True:
            p = parent[x]
            if (p == x).all():  # cheaper than np.array_equal (no conversions or shape checks: same shape here)
                break
            parent[x] = parent[p]  # path halving
            x = p
        return x.reshape(ids.shape)

    def find(self, x: int) -> int:
        return int(self.find_all(np.array([x]))[0])

    def union_arrays(self, a: np.ndarray, b: np.ndarray) -> None:
        """Union ``a[i]`` with ``b[i]`` elementwise (arrays of equal shape, or ``b`` broadcast to ``a``): hook each
        pair's larger root under its smaller, until every pair agrees."""
        a = np.asarray(a, dtype=np.int64)
        b = np.broadcast_to(np.asarray(b, dtype=np.int64), a.shape).ravel()
        a = a.ravel()
        while a.size:
            ra, rb = self.find_all(a), self.find_all(b)
            differ = ra != rb
            if not differ.any():
                return
            self._by_root = None
            a, b = ra[differ], rb[differ]
            self._parent[np.maximum(a, b)] = np.minimum(a, b)  # conflicting hooks: the next round joins them

    def union(self, a: int, b: int) -> None:
        self.union_arrays(np.array([a]), np.array([b]))

    def union_all(self, ids: np.ndarray, target: int) -> None:
        """Union every id in ``ids`` with ``target``."""
        self.union_arrays(np.asarray(ids).ravel(), np.int64(target))

    def union_along(self, ids: np.ndarray, axis: int) -> None:
        """Union entries that differ only in their index along ``axis`` (keeps that axis' size fixed)."""
        arr = np.moveaxis(np.asarray(ids), axis, 0)
        if arr.shape[0] > 1:
            self.union_arrays(arr[1:], np.broadcast_to(arr[:1], arr[1:].shape))

    def freeze(self, ids: np.ndarray, reason: str) -> None:
        """Mark all classes of ``ids`` frozen (never pruned) for ``reason``."""
        for x in unique_sorted(self.find_all(np.asarray(ids).ravel())).tolist():
            self._reasons.setdefault(x, set()).add(reason)
        self._by_root = None

    def roots(self) -> np.ndarray:
        """Root of every id, as an array indexed by id."""
        parent = self._parent[:self._size].copy()
        while True:  # pointer jumping: every id reaches its root in O(log depth) vectorised steps
            grand = parent[parent]
            if np.array_equal(grand, parent):
                return parent
            parent = grand

    def frozen_roots(self) -> dict[int, set[str]]:
        """Root -> the reasons its class is frozen for (only frozen classes; do not modify)."""
        if self._by_root is None:
            keys = list(self._reasons)
            owners = self.find_all(np.asarray(keys, dtype=np.int64)).tolist() if keys else []
            by_root: dict[int, set[str]] = {}
            for key, owner in zip(keys, owners):
                by_root.setdefault(owner, set()).update(self._reasons[key])
            self._by_root = by_root
        return self._by_root
