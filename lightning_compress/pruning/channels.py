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
    """Union-find over channel ids; each root remembers why its class is frozen (if it is)."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.reasons: dict[int, set[str]] = {}

    def new(self, n: int, reason: str | None = None) -> np.ndarray:
        """Allocate ``n`` fresh ids (frozen with ``reason`` when given)."""
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        if reason is not None:
            for i in range(start, start + n):
                self.reasons[i] = {reason}
        return np.arange(start, start + n, dtype=np.int64)

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if rb < ra:
            ra, rb = rb, ra
        self.parent[rb] = ra
        moved = self.reasons.pop(rb, None)
        if moved:
            self.reasons.setdefault(ra, set()).update(moved)

    def union_arrays(self, a: np.ndarray, b: np.ndarray) -> None:
        """Union ``a[i]`` with ``b[i]`` elementwise (arrays of equal shape)."""
        a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
        diff = a != b
        if not diff.any():
            return
        a, b = a[diff], b[diff]
        keys = np.unique(a * len(self.parent) + b)  # distinct pairs (ids < len(parent)), much faster than axis=0
        for x, y in zip((keys // len(self.parent)).tolist(), (keys % len(self.parent)).tolist()):
            self.union(x, y)

    def union_all(self, ids: np.ndarray, target: int) -> None:
        """Union every id in ``ids`` with ``target``."""
        for x in np.unique(np.asarray(ids)).tolist():
            self.union(target, x)

    def union_along(self, ids: np.ndarray, axis: int) -> None:
        """Union entries that differ only in their index along ``axis`` (keeps that axis' size fixed)."""
        arr = np.moveaxis(np.asarray(ids), axis, 0)
        for k in range(1, arr.shape[0]):
            self.union_arrays(arr[0], arr[k])

    def freeze(self, ids: np.ndarray, reason: str) -> None:
        """Mark all classes of ``ids`` frozen (never pruned) for ``reason``."""
        for x in np.unique(np.asarray(ids)).tolist():
            self.reasons.setdefault(self.find(x), set()).add(reason)

    def roots(self) -> np.ndarray:
        """Root of every id, as an array indexed by id."""
        parent = np.asarray(self.parent, dtype=np.int64)
        while True:  # pointer jumping: every id reaches its root in O(log depth) vectorised steps
            grand = parent[parent]
            if np.array_equal(grand, parent):
                return parent
            parent = grand

    def frozen_reasons(self, root: int) -> set[str]:
        return self.reasons.get(root, set())
