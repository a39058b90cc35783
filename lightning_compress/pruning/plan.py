"""PruningPlan: plain, name-based description of which channels to remove (JSON-serialisable)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FORMAT = "lightning_compress.PruningPlan"
VERSION = 2  # 2 added the stream boundaries of residual="select"; version 1 dicts still load


@dataclass(frozen=True)
class SlotPlan:
    """``removed`` indices (sorted, original numbering) out of ``size`` along one slot of one module."""

    size: int
    removed: tuple[int, ...]

    @property
    def kept(self) -> int:
        return self.size - len(self.removed)

    def kept_indices(self) -> list[int]:
        gone = set(self.removed)
        return [i for i in range(self.size) if i not in gone]


@dataclass(frozen=True)
class LayerPlan:
    """The slots of one module to cut; ``reexpand``/``select``: slot -> tensor dim of a stream boundary (see
    :mod:`.boundaries`): the pruned output is re-expanded to the slot's full size / the input is narrowed to it."""

    type: str
    slots: dict[str, SlotPlan]
    reexpand: dict[str, int] = field(default_factory=dict)
    select: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class GroupPlan:
    """Per-group record (for reports): ``removed`` group positions out of ``size``."""

    id: str
    size: int
    removed: tuple[int, ...]
    producers: tuple[str, ...] = ()


@dataclass
class PruningPlan:
    """Which channels of which modules to remove. Apply with :func:`prune` or :func:`mask`.

    ``layers[name].slots[slot]`` with slot ``"out"``/``"in"`` (conv, linear), ``"channels"`` (norms) or
    ``"attr[dim]"`` (a tensor attribute used directly in forward).
    """

    layers: dict[str, LayerPlan] = field(default_factory=dict)
    groups: list[GroupPlan] = field(default_factory=list)
    input_shape: tuple[int, ...] | None = None  # one input's shape (no batch) the plan was made on; saved
    graph: Any = field(default=None, repr=False, compare=False)  # the ChannelGraph it was made on; never saved

    # ----- queries -------------------------------------------------------------------------------------------
    @property
    def num_removed(self) -> int:
        """Removed coupled channels (group positions); without group records, removed producer outputs."""
        if self.groups:
            return sum(len(g.removed) for g in self.groups)
        return sum(len(s.removed) for lp in self.layers.values() for k, s in lp.slots.items() if k == "out")

    @property
    def is_empty(self) -> bool:
        return not any(s.removed for lp in self.layers.values() for s in lp.slots.values())

    def removed(self, module: str, slot: str) -> list[int]:
        lp = self.layers.get(module)
        return list(lp.slots[slot].removed) if lp and slot in lp.slots else []

    def kept_indices(self, module: str, slot: str) -> list[int]:
        return self.layers[module].slots[slot].kept_indices()

    def kept_channels(self) -> dict[str, dict[str, int]]:
        """{module: {slot: kept width}} for every module the plan touches."""
        return {name: {k: s.kept for k, s in lp.slots.items()} for name, lp in self.layers.items()}

    def summary_rows(self) -> list[dict[str, Any]]:
        """Rows for a per-layer table: name, type, slot, before, after."""
        return [
            {"name": name, "type": lp.type, "slot": slot, "before": s.size, "after": s.kept}
            for name, lp in self.layers.items() for slot, s in lp.slots.items() if s.removed
        ]

    def summary(self) -> str:
        rows = self.summary_rows()
        if not rows:
            return "(empty plan)"
        w = max(len(r["name"]) for r in rows)
        lines = [f"{'module':<{w}}  {'type':<12} {'slot':<9} {'before':>6} -> {'after':>5}"]
        lines += [f"{r['name']:<{w}}  {r['type']:<12} {r['slot']:<9} {r['before']:>6} -> {r['after']:>5}" for r in rows]
        return "\n".join(lines)

    # ----- serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain dict of str/int/list (JSON and ``torch.load(weights_only=True)`` safe)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "layers": {
                name: {"type": lp.type,
                       "slots": {k: {"size": s.size, "removed": list(s.removed)} for k, s in lp.slots.items()},
                       **({"reexpand": dict(lp.reexpand)} if lp.reexpand else {}),
                       **({"select": dict(lp.select)} if lp.select else {})}
                for name, lp in self.layers.items()
            },
            "groups": [{"id": g.id, "size": g.size, "removed": list(g.removed), "producers": list(g.producers)}
                       for g in self.groups],
            **({"input_shape": list(self.input_shape)} if self.input_shape is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PruningPlan:
        """Inverse of :meth:`to_dict`; raises ValueError/TypeError on malformed input."""
        if not isinstance(data, Mapping):
            raise TypeError(f"`data` must be a dict from PruningPlan.to_dict(), got {type(data).__name__}.")
        if data.get("format") != FORMAT or data.get("version") not in (1, VERSION):
            raise ValueError(f"`data` must have format {FORMAT!r} version 1 or {VERSION}, got "
                             f"{data.get('format')!r} version {data.get('version')!r}.")
        layers: dict[str, LayerPlan] = {}
        for name, lp in dict(data.get("layers", {})).items():
            slots = {}
            for slot, s in dict(lp["slots"]).items():
                size, removed = s["size"], s["removed"]
                if not isinstance(size, int) or not all(isinstance(i, int) for i in removed):
                    raise TypeError(f"`data['layers'][{name!r}]` sizes and indices must be ints, got {s!r}.")
                slots[str(slot)] = SlotPlan(size, tuple(sorted(set(removed))))
            boundaries = {}
            for key in ("reexpand", "select"):
                entry = dict(lp.get(key) or {})
                if not all(k in slots and isinstance(d, int) and not isinstance(d, bool) and d >= 0
                           for k, d in entry.items()):
                    raise ValueError(f"`data['layers'][{name!r}][{key!r}]` must map slots of the layer to dims "
                                     f"(ints >= 0), got {entry!r}.")
                boundaries[key] = {str(k): int(d) for k, d in entry.items()}
            layers[str(name)] = LayerPlan(str(lp["type"]), slots, **boundaries)
        groups = [GroupPlan(str(g["id"]), int(g["size"]), tuple(int(i) for i in g["removed"]),
                            tuple(g.get("producers", ()))) for g in data.get("groups", [])]
        shape = data.get("input_shape")
        if shape is not None and not (isinstance(shape, (list, tuple)) and all(
                isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
            raise TypeError(f"`data['input_shape']` must be a list of positive ints, got {shape!r}.")
        return cls(layers, groups, tuple(shape) if shape is not None else None)

    # ----- composition ---------------------------------------------------------------------------------------
    def then(self, later: PruningPlan) -> PruningPlan:
        """One plan equal to applying ``self`` and then ``later`` (made on the already-pruned model)."""
        layers = {name: LayerPlan(lp.type, dict(lp.slots), dict(lp.reexpand), dict(lp.select))
                  for name, lp in self.layers.items()}
        for name, lp in later.layers.items():
            base = layers.get(name)
            for slot, s in lp.slots.items():
                first = base.slots.get(slot) if base else None
                if first is None:
                    merged = s
                else:
                    if s.size != first.kept:
                        raise ValueError(f"`later` does not follow this plan: {name!r} {slot} has width {s.size}, "
                                         f"this plan leaves {first.kept}.")
                    kept = first.kept_indices()
                    merged = SlotPlan(first.size, tuple(sorted(set(first.removed) | {kept[i] for i in s.removed})))
                if base is None:
                    base = layers[name] = LayerPlan(lp.type, {})
                base.slots[slot] = merged
            if base is not None:
                base.reexpand.update(lp.reexpand)
                base.select.update(lp.select)
        groups = {g.id: g for g in self.groups}
        for g in later.groups:
            first = groups.get(g.id)
            if first is not None and g.size == first.size - len(first.removed):
                gone = set(first.removed)
                kept = [i for i in range(first.size) if i not in gone]
                removed = tuple(sorted(gone | {kept[i] for i in g.removed}))
                groups[g.id] = GroupPlan(g.id, first.size, removed, first.producers)
            elif first is None:
                groups[g.id] = g
        return PruningPlan(layers, list(groups.values()), self.input_shape)
