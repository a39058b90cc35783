"""State shared by the op rules while one model is traced: ids, recorded members, producers, unknown ops."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from .channels import Carry, Info, Opaque, UnionFind


@dataclass
class Call:
    """One traced op: its fx node, concrete arguments/output, and the channel infos of its arguments."""

    node: fx.Node
    name: str
    args: tuple
    kwargs: dict
    infos: tuple
    kwinfos: dict
    out: Any
    module: nn.Module | None = None

    def arg(self, index: int, key: str, default: Any = None) -> Any:
        """Concrete argument by position or keyword."""
        if key in self.kwargs:
            return self.kwargs[key]
        return self.args[index] if index < len(self.args) else default

    def raw(self, index: int, key: str, default: Any = None) -> Any:
        """Unevaluated argument (an fx.Node when computed in the graph, else the constant)."""
        if key in self.node.kwargs:
            return self.node.kwargs[key]
        return self.node.args[index] if index < len(self.node.args) else default

    def info(self, index: int, key: str = "") -> Info:
        if key and key in self.kwinfos:
            return self.kwinfos[key]
        return self.infos[index] if index < len(self.infos) else None

    def tensors(self) -> list[tuple[torch.Tensor, Info]]:
        """All tensor arguments (flattened from lists/tuples) with their infos."""
        out: list[tuple[torch.Tensor, Info]] = []

        def walk(value: Any, info: Any) -> None:
            if isinstance(value, torch.Tensor):
                out.append((value, info if isinstance(info, (Carry, Opaque)) else None))
            elif isinstance(value, (list, tuple)):
                infos = info if isinstance(info, (list, tuple)) else [None] * len(value)
                for v, i in zip(value, infos):
                    walk(v, i)

        walk(self.args, self.infos)
        for key, value in self.kwargs.items():
            walk(value, self.kwinfos.get(key))
        return out


@dataclass
class TraceContext:
    """Mutable state of one trace; op rules call its methods."""

    uf: UnionFind = field(default_factory=UnionFind)
    members: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    module_types: dict[str, str] = field(default_factory=dict)
    produced: dict[str, np.ndarray] = field(default_factory=dict)
    origins: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (producer, ids): ids[i] is its channel i
    order: dict[str, int] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)
    root: nn.Module | None = None
    infos: dict[fx.Node, Any] = field(default_factory=dict)  # info of every traced node so far
    ndims: dict[fx.Node, int] = field(default_factory=dict)  # ndim of every tensor-valued node
    links: list[Any] = field(default_factory=list)  # streams.Link: channels crossing a stream boundary

    def frozen_id(self, reason: str) -> int:
        return int(self.uf.new(1, reason)[0])

    def freeze(self, info: Any, reason: str) -> None:
        """Freeze every id in ``info`` (nested lists/tuples allowed)."""
        if isinstance(info, (list, tuple)):
            for item in info:
                self.freeze(item, reason)
        elif isinstance(info, Carry):
            self.uf.freeze(info.ids, reason)
        elif isinstance(info, Opaque):
            self.uf.freeze(np.array([info.id]), reason)

    def _touch(self, module_name: str, module: nn.Module) -> None:
        self.module_types.setdefault(module_name, type(module).__name__)
        self.order.setdefault(module_name, len(self.order))

    def record(self, module_name: str, module: nn.Module, slot: str, ids: np.ndarray) -> None:
        """Record that index i of ``module``'s ``slot`` belongs to class ``ids[i]`` (reused modules are unioned)."""
        self._touch(module_name, module)
        ids = np.asarray(ids, dtype=np.int64).ravel()
        key = (module_name, slot)
        if key in self.members:
            prev = self.members[key]
            if prev.shape != ids.shape:
                self.uf.freeze(np.concatenate([prev, ids]), f"{module_name} called with different widths")
            else:
                self.uf.union_arrays(prev, ids)
            return
        self.members[key] = ids

    def produce(self, module_name: str, module: nn.Module, n: int) -> np.ndarray:
        """Fresh ids for ``n`` output channels created by ``module`` (the same ids when it is called again)."""
        self._touch(module_name, module)
        if module_name in self.produced and len(self.produced[module_name]) == n:
            return self.produced[module_name]
        ids = self.uf.new(n)
        self.origins.append((module_name, ids))
        self.produced.setdefault(module_name, ids)
        return ids

    def mark_unknown(self, name: str, description: str) -> None:
        self.unknown.setdefault(name, description)

