"""Rules for leaf modules: how each maps channel ids while tracing, and how its tensors are sliced.

A rule's *slots* name the prunable sides of a module ("out"/"in" for conv and linear, "channels" for norms); each
slot index maps to slices of the module's tensors (``tensor_slices``). Surgery, masking, gradient zeroing and
optimizer-state slicing are all generic over those slices. Users register rules for their own module types with
:func:`register_module_rule`; :class:`ElementwiseRule` and :class:`ChannelwiseRule` cover most custom layers.
Rules are looked up by exact type, so a subclass with its own ``forward`` is traced through, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from . import transfer
from .channels import Carry, Info, unique_sorted
from .context import Call, TraceContext

TensorSlice = tuple[str, int, np.ndarray]  # (tensor attribute, dim, indices along dim)


class ModuleRule:
    """Base class: override ``trace`` and, for modules with prunable tensors, the slot methods."""

    def trace(self, ctx: TraceContext, call: Call, name: str) -> Info:
        raise NotImplementedError

    def slot_sizes(self, module: nn.Module) -> dict[str, int]:
        return {}

    def tensor_slices(self, module: nn.Module, slot: str, idx: np.ndarray) -> list[TensorSlice]:
        return []

    def validate(self, module: nn.Module, removed: dict[str, np.ndarray]) -> None:
        """Raise ValueError if removing ``removed`` (slot -> indices) would leave an invalid module."""

    def update(self, module: nn.Module, removed: dict[str, np.ndarray]) -> None:
        """Update size attributes after the tensors were sliced."""

    def out_rows(self, module: nn.Module) -> torch.Tensor | None:
        """Weights as (out_slot_size, -1) rows, for magnitude/FPGM importance (None if not a producer)."""
        return None

    def scale(self, module: nn.Module) -> torch.Tensor | None:
        """Per-channel scale (BN gamma) for ``bn_scale`` importance."""
        return None


class ElementwiseRule(ModuleRule):
    """Modules that act on each element independently (activations, dropout, identity)."""

    def trace(self, ctx: TraceContext, call: Call, name: str) -> Info:
        return transfer.unary(ctx, call)


class ConvRule(ModuleRule):
    """Conv1d/2d/3d incl. grouped and depthwise convs.

    groups == 1: out channels are fresh, in channels are the input's. Depthwise (groups == in_channels): in channel
    k and its out channels are one class (removed together, ``groups`` shrinks). Other grouped convs: position p of
    every group is one class on each side, so all groups keep equal widths and ``groups`` stays.
    """

    def trace(self, ctx: TraceContext, call: Call, name: str) -> Info:
        m: nn.Conv2d = call.module  # type: ignore[assignment]
        x = call.args[0]
        ch = x.dim() - len(m.kernel_size) - 1
        in_ids = transfer.channel_ids(ctx, x, call.info(0), ch, f"{name}: input carries channels on a spatial dim")
        g, cin, cout = m.groups, m.in_channels, m.out_channels
        if g > 1 and cin == g:
            out_ids = np.repeat(in_ids, cout // g)
        elif g > 1:
            ctx.uf.union_along(in_ids.reshape(g, cin // g), 0)
            out_ids = np.tile(ctx.produce(name, m, cout // g), g)
        else:
            out_ids = ctx.produce(name, m, cout)
        ctx.record(name, m, "in", in_ids)
        ctx.record(name, m, "out", out_ids)
        return Carry((ch,), out_ids)

    def slot_sizes(self, module: nn.Module) -> dict[str, int]:
        return {"out": module.out_channels, "in": module.in_channels}

    @staticmethod
    def _depthwise(m: nn.Module) -> bool:
        return m.groups > 1 and m.in_channels == m.groups

    def tensor_slices(self, module: nn.Module, slot: str, idx: np.ndarray) -> list[TensorSlice]:
        m = module
        if slot == "out":
            return [("weight", 0, idx), ("bias", 0, idx)]
        if m.groups == 1:
            return [("weight", 1, idx)]
        if self._depthwise(m):
            co = m.out_channels // m.groups
            rows = (np.asarray(idx)[:, None] * co + np.arange(co)[None, :]).ravel()
            return [("weight", 0, rows), ("bias", 0, rows)]
        ci = m.in_channels // m.groups
        return [("weight", 1, unique_sorted(np.asarray(idx) % ci))]

    def validate(self, module: nn.Module, removed: dict[str, np.ndarray]) -> None:
        m = module
        if m.groups == 1:
            return
        rin = np.asarray(removed.get("in", []), dtype=np.int64)
        rout = np.asarray(removed.get("out", []), dtype=np.int64)
        if self._depthwise(m):
            co = m.out_channels // m.groups
            expected = (rin[:, None] * co + np.arange(co)[None, :]).ravel()
            if set(expected.tolist()) != set(rout.tolist()):
                raise ValueError(
                    f"`plan` does not fit depthwise conv: removed out channels must be exactly those of removed "
                    f"input channels {sorted(rin.tolist())}, got {sorted(rout.tolist())!r}."
                )
            return
        for side, ids, per in (("in", rin, m.in_channels // m.groups), ("out", rout, m.out_channels // m.groups)):
            pos = set((ids % per).tolist())
            expected = {k * per + p for k in range(m.groups) for p in pos}
            if expected != set(ids.tolist()):
                raise ValueError(
                    f"`plan` does not fit grouped conv ({m.groups} groups): removed {side} channels must be the same "
                    f"positions in every group, got {sorted(ids.tolist())!r}."
                )

    def update(self, module: nn.Module, removed: dict[str, np.ndarray]) -> None:
        m = module
        n_in, n_out = len(removed.get("in", [])), len(removed.get("out", []))
        if self._depthwise(m):
            m.groups -= n_in
        m.in_channels -= n_in
        m.out_channels -= n_out

    def out_rows(self, module: nn.Module) -> torch.Tensor:
        return module.weight.flatten(1)


class ConvTransposeRule(ModuleRule):
    """ConvTranspose1d/2d/3d with groups == 1 (weight is (in, out, *k)); grouped ones are frozen."""

    def trace(self, ctx: TraceContext, call: Call, name: str) -> Info:
        m = call.module
        if m.groups != 1:
            return transfer.unknown(ctx, call, f"grouped {type(m).__name__} {name!r}")
        x = call.args[0]
        ch = x.dim() - len(m.kernel_size) - 1
        in_ids = transfer.channel_ids(ctx, x, call.info(0), ch, f"{name}: input carries channels on a spatial dim")
        out_ids = ctx.produce(name, m, m.out_channels)
        ctx.record(name, m, "in", in_ids)
        ctx.record(name, m, "out", out_ids)
        return Carry((ch,), out_ids)

    def slot_sizes(self, module: nn.Module) -> dict[str, int]:
        return {"out": module.out_channels, "in": module.in_channels}

    def tensor_slices(self, module: nn.Module, slot: str, idx: np.ndarray) -> list[TensorSlice]:
        if slot == "out":
            return [("weight", 1, idx), ("bias", 0, idx)]
        return [("weight", 0, idx)]

    def update(self, module: nn.Module, removed: dict[str, np.ndarray]) -> None:
        module.in_channels -= len(removed.get("in", []))
        module.out_channels -= len(removed.get("out", []))

    def out_rows(self, module: nn.Module) -> torch.Tensor:
        return module.weight.transpose(0, 1).flatten(1)


class EmbeddingRule(ModuleRule):
    """nn.Embedding: the embedding dim (last output dim) is a fresh set of channels; slot "out" = weight dim 1."""

    def trace(self, ctx: TraceContext, call: Call, name: str) -> Info:
        m = call.module
        for _, info in call.tensors():
            ctx.freeze(info, f"{name}: embedding indices")
        out_ids = ctx.produce(name, m, m.embedding_dim)
        ctx.record(name, m, "out", out_ids)
        return Carry((call.out.dim() - 1,), out_ids)

    def slot_sizes(self, module: nn.Module) -> dict[str, int]:
        return {"out": module.embedding_dim}

    def tensor_slices(self, module: nn.Module, slot: str, idx: np.ndarray) -> list[TensorSlice]:
        return [("weight", 1, idx)]

    def update(self, module: nn.Module, removed: dict[str, np.ndarray]) -> None:
        module.embedding_dim -= len(removed.get("out", []))

    def out_rows(self, module: nn.Module) -> torch.Tensor:
        return module.weight.t()


class LinearRule(ModuleRule):
    """nn.Linear over the last dim: out features fresh, in features the input's."""

    def trace(self, ctx: TraceContext, call: Call, name: str) -> Info:
        m = call.module
        x = call.args[0]
        in_ids = transfer.channel_ids(ctx, x, call.info(0), -1, f"{name}: input carries channels outside the last dim")
        out_ids = ctx.produce(name, m, m.out_features)
        ctx.record(name, m, "in", in_ids)
        ctx.record(name, m, "out", out_ids)
        return Carry((x.dim() - 1,), out_ids)

    def slot_sizes(self, module: nn.Module) -> dict[str, int]:
        return {"out": module.out_features, "in": module.in_features}

    def tensor_slices(self, module: nn.Module, slot: str, idx: np.ndarray) -> list[TensorSlice]:
        if slot == "out":
            return [("weight", 0, idx), ("bias", 0, idx)]
        return [("weight", 1, idx)]

    def update(self, module: nn.Module, removed: dict[str, np.ndarray]) -> None:
        module.in_features -= len(removed.get("in", []))
        module.out_features -= len(removed.get("out", []))

    def out_rows(self, module: nn.Module) -> torch.Tensor:
        return module.weight


class ChannelwiseRule(ModuleRule):
    """A per-channel module along ``dim`` whose tensors ``tensors`` (dim 0 each) have one entry per channel.

    ``size_attr`` (e.g. "num_features") is decremented on pruning. Use it for custom BN-like or scaling layers:
    ``register_module_rule(MyScale, ChannelwiseRule(tensors=("scale",), size_attr="channels"))``.
    """

    def __init__(self, tensors: Sequence[str] = ("weight", "bias"), size_attr: str | None = None, dim: int = 1,
                 scale_attr: str | None = None) -> None:
        self.tensors = tuple(tensors)
        self.size_attr = size_attr
        self.dim = dim
        self.scale_attr = scale_attr

    def trace(self, ctx: TraceContext, call: Call, name: str) -> Info:
        x, info = call.args[0], call.info(0)
        dim = self.dim if x.dim() > 1 else 0
        ids = transfer.channelwise(ctx, x, info, dim, f"{name}: channels not separable")
        if ids is not None:
            ctx.record(name, call.module, "channels", ids)
        return info

    def _size(self, module: nn.Module) -> int:
        if self.size_attr is not None:
            return int(getattr(module, self.size_attr))
        for attr in self.tensors:
            t = getattr(module, attr, None)
            if isinstance(t, torch.Tensor):
                return t.shape[0]
        raise ValueError(f"cannot tell the channel count of {type(module).__name__}")

    def slot_sizes(self, module: nn.Module) -> dict[str, int]:
        return {"channels": self._size(module)}

    def tensor_slices(self, module: nn.Module, slot: str, idx: np.ndarray) -> list[TensorSlice]:
        return [(attr, 0, idx) for attr in self.tensors]

    def update(self, module: nn.Module, removed: dict[str, np.ndarray]) -> None:
        if self.size_attr is not None:
            setattr(module, self.size_attr, getattr(module, self.size_attr) - len(removed.get("channels", [])))

    def scale(self, module: nn.Module) -> torch.Tensor | None:
        t = getattr(module, self.scale_attr, None) if self.scale_attr else None
        return t if isinstance(t, torch.Tensor) else None


class GroupNormRule(ChannelwiseRule):
    """GroupNorm: position p of every group is one class (groups keep equal widths); 1 channel/group is per-channel."""

    def __init__(self) -> None:
        super().__init__(("weight", "bias"), "num_channels", 1, "weight")

    def trace(self, ctx: TraceContext, call: Call, name: str) -> Info:
        m, x, info = call.module, call.args[0], call.info(0)
        ids = transfer.channelwise(ctx, x, info, 1, f"{name}: channels not separable")
        if ids is not None:
            cg = m.num_channels // m.num_groups
            if cg > 1:
                ctx.uf.union_along(ids.reshape(m.num_groups, cg), 0)
            ctx.record(name, m, "channels", ids)
        return info

    def validate(self, module: nn.Module, removed: dict[str, np.ndarray]) -> None:
        cg = module.num_channels // module.num_groups
        ids = np.asarray(removed.get("channels", []), dtype=np.int64)
        if cg > 1:
            pos = set((ids % cg).tolist())
            if {k * cg + p for k in range(module.num_groups) for p in pos} != set(ids.tolist()):
                raise ValueError(f"`plan` does not fit GroupNorm: removed channels must be the same positions in every "
                                 f"group, got {sorted(ids.tolist())!r}.")

    def update(self, module: nn.Module, removed: dict[str, np.ndarray]) -> None:
        n = len(removed.get("channels", []))
        if module.num_channels // module.num_groups == 1:
            module.num_groups -= n
        module.num_channels -= n


class LayerNormRule(ChannelwiseRule):
    """LayerNorm over the last dim only when that dim carries channels (ConvNeXt channels-last); not separable."""

    def __init__(self) -> None:
        super().__init__(("weight", "bias"), None, -1, "weight")

    def trace(self, ctx: TraceContext, call: Call, name: str) -> Info:
        m, x, info = call.module, call.args[0], call.info(0)
        nd = len(m.normalized_shape)
        norm_dims = set(range(x.dim() - nd, x.dim()))
        if not isinstance(info, Carry) or not norm_dims & set(info.dims):
            return info
        if nd == 1 and info.dims == (x.dim() - 1,):
            ctx.record(name, m, "channels", info.ids)
        else:
            ctx.uf.freeze(info.ids, f"{name}: LayerNorm over several dims including channels")
        return info

    def slot_sizes(self, module: nn.Module) -> dict[str, int]:
        return {"channels": int(module.normalized_shape[-1])}

    def update(self, module: nn.Module, removed: dict[str, np.ndarray]) -> None:
        module.normalized_shape = (module.normalized_shape[0] - len(removed.get("channels", [])),)


class PReLURule(ChannelwiseRule):
    def __init__(self) -> None:
        super().__init__(("weight",), "num_parameters", 1)

    def trace(self, ctx: TraceContext, call: Call, name: str) -> Info:
        if call.module.num_parameters == 1:
            return transfer.unary(ctx, call)
        return super().trace(ctx, call, name)


class SpatialRule(ModuleRule):
    """Pooling / upsampling: keep batch and channel dims, resample the others."""

    def trace(self, ctx: TraceContext, call: Call, name: str) -> Info:
        info = transfer.spatial(ctx, call, call.info(0))
        if isinstance(call.out, tuple):
            return tuple(info for _ in call.out)
        return info


class PadRule(ModuleRule):
    def trace(self, ctx: TraceContext, call: Call, name: str) -> Info:
        m = call.module
        pads = list(m.padding)
        if "Constant" not in type(m).__name__ and "Zero" not in type(m).__name__:
            return transfer.spatial(ctx, call, call.info(0))
        return transfer.pad(ctx, call, call.args[0], call.info(0), pads)


class FlattenRule(ModuleRule):
    def trace(self, ctx: TraceContext, call: Call, name: str) -> Info:
        return transfer.reshape(ctx, call, call.args[0], call.info(0), call.out)


class UnflattenRule(ModuleRule):
    def trace(self, ctx: TraceContext, call: Call, name: str) -> Info:
        m, x = call.module, call.args[0]
        dim = m.dim % x.dim()
        fixed = [False] * call.out.dim()
        for k, s in enumerate(m.unflattened_size):
            fixed[dim + k] = not transfer.is_dynamic(s)
        return transfer.reshape(ctx, call, x, call.info(0), call.out, fixed)


class SoftmaxRule(ModuleRule):
    def trace(self, ctx: TraceContext, call: Call, name: str) -> Info:
        x = call.args[0]
        dim = call.module.dim if call.module.dim is not None else -1
        return transfer.along_dim(ctx, call, call.info(0), dim, x.dim())


class ChannelShuffleRule(ModuleRule):
    def trace(self, ctx: TraceContext, call: Call, name: str) -> Info:
        return shuffle(ctx, call, call.args[0], call.info(0), call.module.groups)


def shuffle(ctx: TraceContext, call: Call, x: torch.Tensor, info: Info, groups: int) -> Info:
    """Channel shuffle: the same position of every group is one class; then interleave."""
    if not isinstance(info, Carry) or 1 not in info.dims:
        return info
    if info.dims != (1,) or x.shape[1] % groups:
        ctx.uf.freeze(info.ids, f"{call.name}: channel shuffle of non-separable channels")
        return info
    parts = info.ids.reshape(groups, -1)
    ctx.uf.union_along(parts, 0)
    return Carry((1,), np.ascontiguousarray(parts.T.reshape(-1)))


class ParamSlotRule(ModuleRule):
    """A tensor attribute used directly in ``forward`` (e.g. a layer-scale gamma): slot ``"attr[dim]"``."""

    pattern = re.compile(r"^(?P<attr>[A-Za-z_][A-Za-z0-9_]*)\[(?P<dim>\d+)\]$")

    def __init__(self, attr: str, dim: int) -> None:
        self.attr, self.dim = attr, dim

    def slot_sizes(self, module: nn.Module) -> dict[str, int]:
        return {f"{self.attr}[{self.dim}]": getattr(module, self.attr).shape[self.dim]}

    def tensor_slices(self, module: nn.Module, slot: str, idx: np.ndarray) -> list[TensorSlice]:
        return [(self.attr, self.dim, idx)]


class IntAttrSlotRule(ModuleRule):
    """An int attribute that ``forward`` uses as a size (slot ``"int:<attr>"`` or ``"int:<attr>[i]"`` for an element
    of a list/tuple attribute; see ``sizes.py``): pruning decrements it by the number of removed channels."""

    pattern = re.compile(r"^int:(?P<attr>[A-Za-z_][A-Za-z0-9_]*)(\[(?P<index>\d+)\])?$")

    def __init__(self, attr: str, index: int | None) -> None:
        self.attr, self.index = attr, index

    def _value(self, module: nn.Module) -> int | None:
        value = getattr(module, self.attr, None)
        if self.index is not None:
            ok = isinstance(value, (list, tuple)) and self.index < len(value)
            value = value[self.index] if ok else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def slot_sizes(self, module: nn.Module) -> dict[str, int]:
        value = self._value(module)
        return {} if value is None else {self.slot: value}

    @property
    def slot(self) -> str:
        return f"int:{self.attr}" if self.index is None else f"int:{self.attr}[{self.index}]"

    def update(self, module: nn.Module, removed: dict[str, np.ndarray]) -> None:
        n = len(removed.get(self.slot, []))
        value = getattr(module, self.attr)
        if self.index is None:
            setattr(module, self.attr, value - n)
        else:
            items = list(value)
            items[self.index] -= n
            setattr(module, self.attr, type(value)(items))


class StandardizedConvRule(ConvRule):
    """Convs whose weight is standardised in ``forward`` (timm's StdConv2d / ScaledStdConv2d, NF-ResNets): the conv
    rule plus the per-filter ``gain``. Output channels are separable (each filter is standardised on its own);
    removing input channels changes the remaining weights' mean and variance, so pruned != masked there (like
    LayerNorm over channels)."""

    def tensor_slices(self, module: nn.Module, slot: str, idx: np.ndarray) -> list[TensorSlice]:
        slices = super().tensor_slices(module, slot, idx)
        if slot == "out" and isinstance(getattr(module, "gain", None), torch.Tensor):
            slices.append(("gain", 0, idx))
        return slices


_BN = ChannelwiseRule(("weight", "bias", "running_mean", "running_var"), "num_features", 1, "weight")
_MODULE_RULES: dict[type, ModuleRule] = {}
# rules for classes of optional libraries, by "module.qualname" (the engine never imports them)
_MODULE_RULES_BY_NAME: dict[str, ModuleRule] = {}


def register_module_rule(module_type: type, rule: ModuleRule) -> None:
    """Register (or replace) the rule for an exact module type; instances become fx leaves."""
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise TypeError(f"`module_type` must be an nn.Module subclass, got {module_type!r}.")
    if not isinstance(rule, ModuleRule):
        raise TypeError(f"`rule` must be a ModuleRule instance, got {rule!r}.")
    _MODULE_RULES[module_type] = rule


def register_module_rule_by_name(qualified_name: str, rule: ModuleRule) -> None:
    """Register the rule for a class of an optional library by ``"package.module.ClassName"`` (exact class)."""
    if not isinstance(rule, ModuleRule):
        raise TypeError(f"`rule` must be a ModuleRule instance, got {rule!r}.")
    _MODULE_RULES_BY_NAME[qualified_name] = rule


def _rule_for_type(cls: type) -> ModuleRule | None:
    rule = _MODULE_RULES.get(cls)
    if rule is None and _MODULE_RULES_BY_NAME:
        rule = _MODULE_RULES_BY_NAME.get(f"{cls.__module__}.{cls.__qualname__}")
    return rule


def get_module_rule(module: nn.Module) -> ModuleRule | None:
    """The rule registered for ``module``'s exact type (by type, else by qualified class name)."""
    return _rule_for_type(type(module))


def slot_rule(module: nn.Module, slot: str) -> ModuleRule | None:
    """The rule that knows ``slot`` of ``module`` for surgery (param slots ``"attr[dim]"`` are generic).

    Unlike tracing, surgery may use a base class's rule: tensor layout and size attributes are inherited (a
    LayerNorm subclass that permutes in ``forward`` still has LayerNorm's weight and ``normalized_shape``).
    """
    match = ParamSlotRule.pattern.match(slot)
    if match:
        return ParamSlotRule(match["attr"], int(match["dim"]))
    match = IntAttrSlotRule.pattern.match(slot)
    if match:
        return IntAttrSlotRule(match["attr"], None if match["index"] is None else int(match["index"]))
    for cls in type(module).__mro__:
        rule = _rule_for_type(cls)
        if rule is not None:
            return rule
    return None


def _register_builtins() -> None:
    for t in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
        register_module_rule(t, ConvRule())
    register_module_rule(nn.Linear, LinearRule())
    for t in (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d):
        register_module_rule(t, ConvTransposeRule())
    register_module_rule(nn.Embedding, EmbeddingRule())
    for t in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
              nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d):
        register_module_rule(t, _BN)
    register_module_rule(nn.GroupNorm, GroupNormRule())
    register_module_rule(nn.LayerNorm, LayerNormRule())
    register_module_rule(nn.PReLU, PReLURule())
    for t in (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid,
              nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Softsign, nn.Tanhshrink,
              nn.Threshold, nn.LogSigmoid, nn.Hardshrink, nn.Softshrink, nn.Identity, nn.Dropout, nn.Dropout1d,
              nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout):
        register_module_rule(t, ElementwiseRule())
    for t in (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
              nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
              nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.LPPool1d, nn.LPPool2d, nn.Upsample,
              nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d):
        register_module_rule(t, SpatialRule())
    for t in (nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d, nn.ReflectionPad1d,
              nn.ReflectionPad2d, nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d):
        register_module_rule(t, PadRule())
    register_module_rule(nn.Flatten, FlattenRule())
    register_module_rule(nn.Unflatten, UnflattenRule())
    register_module_rule(nn.Softmax, SoftmaxRule())
    register_module_rule(nn.LogSoftmax, SoftmaxRule())
    register_module_rule(nn.ChannelShuffle, ChannelShuffleRule())
    for name in ("StdConv2d", "StdConv2dSame", "ScaledStdConv2d", "ScaledStdConv2dSame"):
        register_module_rule_by_name(f"timm.layers.std_conv.{name}", StandardizedConvRule())


_register_builtins()
