"""Integer attributes that ``forward`` uses as sizes (``x.split(self.width, 1)``, ``x[:, :self.out_chs]``,
``x.view(b, self.dim, h, w)``): found exactly while tracing, rewritten when their channels are pruned.

fx records a Python int read from ``self`` as a plain constant, so ``torch.split(x, self.width, 1)`` looks like a
hard-coded ``split(x, 14, 1)``. While tracing, every int (and list/tuple of ints) attribute of a module that is
traced through is temporarily replaced by a :class:`SizeAttr` (an ``int`` that remembers its module and attribute);
fx then stores that object in the node's arguments, and the op rules know where the size came from. A rule that can
express the size in channels records the slot ``"int:<attr>"`` (``"int:<attr>[i]"`` for a list element) of the
owning module with the channel ids the size counts; pruning decrements the attribute (:class:`IntAttrSlotRule`).
``attr // k`` stays tracked (``x.split(self.expand_chs // 2, 1)``); any other arithmetic gives a plain int, which the
rules treat as a constant (its channels are frozen). An attribute that forward also reads in Python (``range``,
comparisons, ``bool``) is marked, and its channels are frozen instead of rewritten.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

_active = False  # True only while a model is being traced (marks Python reads of the user's forward)
python_reads: set[tuple[str, str]] = set()  # (module name, attr) read by Python in forward (cleared by capture)


class SizeAttr(int):
    """An int read from ``owner.attr`` (element ``index`` of a list attribute), divided by ``divisor``."""

    owner: str
    attr: str
    index: int | None
    divisor: int

    def __new__(cls, value: int, owner: str, attr: str, index: int | None = None, divisor: int = 1) -> SizeAttr:
        obj = super().__new__(cls, value)
        obj.owner, obj.attr, obj.index, obj.divisor = owner, attr, index, divisor
        return obj

    @property
    def slot(self) -> str:
        return f"int:{self.attr}" if self.index is None else f"int:{self.attr}[{self.index}]"

    @property
    def key(self) -> tuple[str, str]:
        return self.owner, self.attr

    def __floordiv__(self, other: object) -> int:
        if type(other) is int and other > 0:
            return SizeAttr(int(self) // other, self.owner, self.attr, self.index, self.divisor * other)
        return int.__floordiv__(self, other)  # type: ignore[operator]

    def _read(self) -> None:
        if _active:
            python_reads.add(self.key)

    def __index__(self) -> int:
        self._read()
        return int(self)

    def __bool__(self) -> bool:
        self._read()
        return int(self) != 0

    def __lt__(self, other: object) -> bool:
        self._read()
        return int.__lt__(self, other)  # type: ignore[operator]

    def __le__(self, other: object) -> bool:
        self._read()
        return int.__le__(self, other)  # type: ignore[operator]

    def __gt__(self, other: object) -> bool:
        self._read()
        return int.__gt__(self, other)  # type: ignore[operator]

    def __ge__(self, other: object) -> bool:
        self._read()
        return int.__ge__(self, other)  # type: ignore[operator]

    def __eq__(self, other: object) -> bool:
        self._read()
        return int.__eq__(self, other)  # type: ignore[operator]

    def __ne__(self, other: object) -> bool:
        self._read()
        return int.__ne__(self, other)  # type: ignore[operator]

    __hash__ = int.__hash__

    def __repr__(self) -> str:
        return int.__repr__(self)

    def __reduce__(self):  # deepcopy / pickle of a traced graph give plain ints
        return int, (int(self),)


def _tracked(value: object, owner: str, attr: str) -> object | None:
    if type(value) is int:
        return SizeAttr(value, owner, attr)
    if isinstance(value, (list, tuple)) and value and all(type(v) is int for v in value) and (
            type(value) in (list, tuple)):
        return type(value)(SizeAttr(v, owner, attr, i) for i, v in enumerate(value))
    return None


@contextlib.contextmanager
def tracked_size_attrs(model: nn.Module, is_leaf: object) -> Iterator[None]:
    """Within the block, int attributes of the modules that are traced through are :class:`SizeAttr`."""
    global _active
    swapped: list[tuple[nn.Module, str, object]] = []
    try:
        for name, module in dict(model.named_modules()).items():
            if name and is_leaf(module, name):  # type: ignore[operator]
                continue
            for attr, value in list(vars(module).items()):
                new = _tracked(value, name, attr)
                if new is not None:
                    swapped.append((module, attr, value))
                    module.__dict__[attr] = new
        _active = True
        yield
    finally:
        _active = False
        for module, attr, value in swapped:
            module.__dict__[attr] = value


@contextlib.contextmanager
def untracked_reads() -> Iterator[None]:
    """Python reads inside the block are not the user's (e.g. a concrete evaluation while tracing)."""
    global _active
    was, _active = _active, False
    try:
        yield
    finally:
        _active = was


def size_attr(value: object) -> SizeAttr | None:
    return value if isinstance(value, SizeAttr) else None
