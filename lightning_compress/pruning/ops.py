"""Rules for traced functions (``torch.cat``, ``operator.add``, ``F.relu``...) and tensor methods (``x.view``)."""

from __future__ import annotations

import builtins
import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx

from . import transfer
from .channels import Carry, Info, Opaque
from .context import Call, TraceContext
from .rules import shuffle, slot_rule
from .sizes import SizeAttr, python_reads, size_attr

OpRule = Callable[[TraceContext, Call], Any]
FUNCTION_RULES: dict[Any, OpRule] = {}
METHOD_RULES: dict[str, OpRule] = {}
# functions of optional libraries, by "module.qualname" (so the engine never imports them)
FUNCTION_RULES_BY_NAME: dict[str, OpRule] = {}


def function_rule(fn: Any) -> OpRule | None:
    """The rule for a traced function: by object, else by its qualified name."""
    rule = FUNCTION_RULES.get(fn)
    if rule is None:
        rule = FUNCTION_RULES_BY_NAME.get(f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', '')}")
    return rule


def _unary(ctx: TraceContext, call: Call) -> Info:
    return transfer.unary(ctx, call)


def _elementwise(ctx: TraceContext, call: Call) -> Info:
    return transfer.elementwise(ctx, call)


def _dim_arg(call: Call, index: int = 1) -> Any:
    return call.arg(index, "dim", None)


def _reduce(ctx: TraceContext, call: Call) -> Any:
    x = call.args[0]
    dim = _dim_arg(call, 2 if call.name in ("norm", ".norm()") else 1)
    keepdim = bool(call.arg(3 if call.name in ("norm", ".norm()") else 2, "keepdim", False))
    info = transfer.reduce(ctx, call, x, call.info(0), dim, keepdim)
    if isinstance(call.out, tuple):
        return tuple(info for _ in call.out)
    return info


def _max_min(ctx: TraceContext, call: Call) -> Any:
    other = call.arg(1, "other", None)
    if isinstance(other, torch.Tensor):
        return transfer.elementwise(ctx, call)
    return _reduce(ctx, call)


def _along_dim(ctx: TraceContext, call: Call) -> Info:
    x = call.args[0]
    dim = call.arg(1, "dim", -1)
    return transfer.along_dim(ctx, call, call.info(0), -1 if dim is None else dim, x.dim())


def _spatial(ctx: TraceContext, call: Call) -> Any:
    info = transfer.spatial(ctx, call, call.info(0))
    if isinstance(call.out, tuple):
        return tuple(info for _ in call.out)
    return info


def _pad(ctx: TraceContext, call: Call) -> Info:
    return transfer.pad(ctx, call, call.args[0], call.info(0), list(call.arg(1, "pad")))


def _flatten(ctx: TraceContext, call: Call) -> Info:
    return transfer.reshape(ctx, call, call.args[0], call.info(0), call.out)


def _shape_args(call: Call) -> list[Any] | None:
    """Unevaluated target-shape entries of view/reshape (None when the whole shape is one graph value)."""
    raw = list(call.node.args[1:])
    if "shape" in call.node.kwargs:
        raw = [call.node.kwargs["shape"]]
    if "size" in call.node.kwargs:
        raw = [call.node.kwargs["size"]]
    if len(raw) == 1 and isinstance(raw[0], (list, tuple)):
        raw = list(raw[0])
    elif len(raw) == 1 and isinstance(raw[0], fx.Node):
        return None
    return raw


def _view(ctx: TraceContext, call: Call) -> Info:
    raw = _shape_args(call)
    if raw is None or len(raw) != call.out.dim():
        return transfer.reshape(ctx, call, call.args[0], call.info(0), call.out)
    provisional = transfer.reshape(ctx, call, call.args[0], call.info(0), call.out)
    fixed = transfer.couple_size_args(ctx, call, call.node.args[0], raw, provisional)
    if isinstance(provisional, Carry) and len(provisional.dims) == 1:
        j = provisional.dims[0]
        value = size_attr(raw[j])
        if value is not None and value.divisor == 1 and _record_size(ctx, call, value, provisional.ids):
            fixed[j] = False  # x.view(b, self.dim, h, w): the attribute is rewritten with the pruned width
    if any(fixed):
        return transfer.reshape(ctx, call, call.args[0], call.info(0), call.out, fixed)
    return provisional


def _unflatten(ctx: TraceContext, call: Call) -> Info:
    x = call.args[0]
    dim = call.arg(1, "dim") % x.dim()
    sizes = call.raw(2, "sizes")
    fixed = [False] * call.out.dim()
    for k, s in enumerate(sizes):
        fixed[dim + k] = not transfer.is_dynamic(s)
    return transfer.reshape(ctx, call, x, call.info(0), call.out, fixed)


def _squeeze(ctx: TraceContext, call: Call) -> Info:
    return transfer.reshape(ctx, call, call.args[0], call.info(0), call.out)


def _permute(ctx: TraceContext, call: Call) -> Info:
    dims = call.args[1:] if "dims" not in call.kwargs else (call.kwargs["dims"],)
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = dims[0]
    return transfer.permute(call.info(0), list(dims))


def _transpose(ctx: TraceContext, call: Call) -> Info:
    x = call.args[0]
    nd = x.dim()
    d0, d1 = call.arg(1, "dim0") % nd, call.arg(2, "dim1") % nd
    perm = list(range(nd))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return transfer.permute(call.info(0), perm)


def _t(ctx: TraceContext, call: Call) -> Info:
    return transfer.permute(call.info(0), list(reversed(range(call.args[0].dim()))))


def _expand(ctx: TraceContext, call: Call) -> Info:
    x, info, out = call.args[0], call.info(0), call.out
    if not isinstance(info, Carry):
        return info
    off = out.dim() - x.dim()
    raw = list(call.node.args[1:])
    if len(raw) == 1 and isinstance(raw[0], (list, tuple)):
        raw = list(raw[0])
    keep = [d for d in info.dims if x.shape[d] == out.shape[d + off]]
    sel = tuple(slice(None) if d in keep else 0 for d in info.dims)
    ids = info.ids[sel]
    result = Carry(tuple(d + off for d in keep), ids) if keep else None
    if len(raw) == out.dim():
        fixed = transfer.couple_size_args(ctx, call, call.node.args[0], raw, result)
        if keep and all(fixed[d + off] for d in keep):
            ctx.uf.freeze(ids, f"{call.name}: expand to a constant channel size")
    return result


def _repeat(ctx: TraceContext, call: Call) -> Info:
    x, info, out = call.args[0], call.info(0), call.out
    if not isinstance(info, Carry):
        return info
    off = out.dim() - x.dim()
    if any(out.shape[d + off] != x.shape[d] for d in info.dims):
        return transfer.frozen(ctx, info, f"{call.name}: repeats a channel dim")
    return Carry(tuple(d + off for d in info.dims), info.ids)


def _cat(ctx: TraceContext, call: Call) -> Info:
    tensors = call.arg(0, "tensors")
    infos = call.info(0, "tensors")
    if not isinstance(infos, (list, tuple)):
        infos = [None] * len(tensors)
    return transfer.cat(ctx, call, tensors, infos, call.arg(1, "dim", 0))


def _stack(ctx: TraceContext, call: Call) -> Info:
    infos = call.info(0, "tensors")
    return transfer.stack(ctx, call, infos, call.arg(1, "dim", 0))


def _chunk(ctx: TraceContext, call: Call) -> Any:
    x, info, outs = call.args[0], call.info(0), call.out
    dim = call.arg(2, "dim", 0) % x.dim()
    k = call.arg(1, "chunks")
    return _split_parts(ctx, call, x, info, outs, dim, k)


def _split(ctx: TraceContext, call: Call) -> Any:
    x, info, outs = call.args[0], call.info(0), call.out
    dim = call.arg(2, "dim", 0) % x.dim()
    raw = call.raw(1, "split_size_or_sections", call.raw(1, "split_size"))
    if isinstance(info, Carry) and info.dims == (dim,):
        pieces = _split_by_attr(ctx, call, info, outs, dim, raw)
        if pieces is not None:
            return pieces
    k = transfer.size_fraction(raw, call.node.args[0], dim)
    return _split_parts(ctx, call, x, info, outs, dim, k)


def _split_by_attr(ctx: TraceContext, call: Call, info: Carry, outs: Any, dim: int, raw: Any) -> Any:
    """Split sizes read from module attributes: ``split(x, self.width)`` (equal parts, tied), ``split(x,
    self.expand_chs // 2)`` (the attribute counts the whole dim) or ``split(x, self.splits)`` (independent parts).
    Records the attribute as an ``int:`` slot so pruning rewrites it; None when the sizes are not attributes."""
    total = len(info.ids)
    one = size_attr(raw)
    if one is not None:
        if total % int(one) or len(outs) != total // int(one):
            return None
        k = total // int(one)
        if one.divisor > 1 and int(one) * one.divisor != total:
            return None
        parts = transfer.equal_parts(ctx, info, dim, k)
        counted = info.ids if one.divisor > 1 else parts[0]
        if not _record_size(ctx, call, one, counted):
            return None
        return tuple(transfer.part_info(info, dim, parts[i]) for i in range(k))
    if not isinstance(raw, (list, tuple)) or not raw or len(raw) != len(outs):
        return None
    sizes = [size_attr(v) for v in raw]
    if any(v is None or v.divisor != 1 for v in sizes) or sum(int(v) for v in sizes) != total:
        return None
    bounds = np.cumsum([0] + [int(v) for v in sizes])
    pieces = [info.ids[bounds[i]:bounds[i + 1]] for i in range(len(sizes))]
    if not all(_record_size(ctx, call, v, ids) for v, ids in zip(sizes, pieces)):
        return None
    return tuple(Carry(info.dims, np.ascontiguousarray(ids)) for ids in pieces)


def _record_size(ctx: TraceContext, call: Call, value: SizeAttr, ids: np.ndarray) -> bool:
    """Record ``ids`` as the channels the attribute counts; False (caller freezes) when it cannot be rewritten."""
    if value.key in python_reads or ctx.root is None:
        return False
    module = ctx.root.get_submodule(value.owner)
    ctx.record(value.owner, module, value.slot, ids)
    return True


def _split_parts(ctx: TraceContext, call: Call, x: torch.Tensor, info: Info, outs: Any, dim: int,
                 k: int | None) -> Any:
    if not isinstance(info, Carry) or dim not in info.dims:
        return tuple(info for _ in outs)
    if k is None or len(outs) != k or x.shape[dim] % k:
        ctx.uf.freeze(info.ids, f"{call.name}: split of a channel dim into fixed sizes")
        axis = info.dims.index(dim)
        bounds = np.cumsum([0] + [o.shape[dim] for o in outs])
        return tuple(Carry(info.dims, np.ascontiguousarray(np.take(info.ids, np.arange(bounds[i], bounds[i + 1]),
                                                                    axis=axis))) for i in range(len(outs)))
    parts = transfer.equal_parts(ctx, info, dim, k)
    return tuple(transfer.part_info(info, dim, parts[i]) for i in range(k))


def _unbind(ctx: TraceContext, call: Call) -> Any:
    x, info, outs = call.args[0], call.info(0), call.out
    dim = call.arg(1, "dim", 0) % x.dim()
    if not isinstance(info, Carry):
        return tuple(info for _ in outs)
    if dim in info.dims:
        fid = transfer.frozen(ctx, info, f"{call.name}: unbinds a channel dim")
        return tuple(fid for _ in outs)
    return tuple(Carry(tuple(d - (d > dim) for d in info.dims), info.ids) for _ in outs)


def _getitem(ctx: TraceContext, call: Call) -> Any:
    base, idx = call.args[0], call.args[1]
    binfo = call.info(0)
    if not isinstance(base, torch.Tensor):
        if isinstance(binfo, (list, tuple)) and isinstance(idx, (int, slice)):
            return binfo[idx]
        return None
    return _index_tensor(ctx, call, base, binfo, idx, call.node.args[1])


def _index_tensor(ctx: TraceContext, call: Call, x: torch.Tensor, info: Info, idx: Any, raw: Any) -> Info:
    idx_t = idx if isinstance(idx, tuple) else (idx,)
    raw_t = raw if isinstance(raw, tuple) else (raw,)
    if any(isinstance(i, (torch.Tensor, list, bool)) for i in idx_t):
        return transfer.unknown(ctx, call, "advanced tensor indexing")
    consumed = sum(1 for i in idx_t if i is not None and i is not Ellipsis)
    expanded: list[tuple[Any, Any]] = []
    for i, r in zip(idx_t, raw_t):
        if i is Ellipsis:
            expanded.extend((slice(None), slice(None)) for _ in range(x.dim() - consumed))
        else:
            expanded.append((i, r))
    while sum(1 for i, _ in expanded if i is not None) < x.dim():
        expanded.append((slice(None), slice(None)))
    if not isinstance(info, Carry):
        return info if isinstance(info, Opaque) else None
    dim_map: dict[int, int] = {}
    ids = info.ids
    in_d = out_d = 0
    frozen = False
    for i, r in expanded:
        if i is None:
            out_d += 1
            continue
        if isinstance(i, int):
            if in_d in info.dims:
                frozen = True
            in_d += 1
            continue
        # slice
        if in_d in info.dims and i != slice(None) and i != slice(None, None, 1):
            new = _slice_channels(ctx, call, info, ids, in_d, x.shape[in_d], i, r)
            if new is None:
                frozen = True
                ids = np.take(ids, np.arange(x.shape[in_d])[i], axis=info.dims.index(in_d))
            else:
                ids = new
        dim_map[in_d] = out_d
        in_d += 1
        out_d += 1
    if frozen:
        ctx.uf.freeze(info.ids, f"{call.name}: indexes a channel dim with constants")
    kept = [d for d in info.dims if d in dim_map]
    if not kept:
        return None
    sel = tuple(slice(None) if d in dim_map else 0 for d in info.dims)
    return Carry(tuple(dim_map[d] for d in kept), np.ascontiguousarray(ids[sel]))


def _slice_channels(ctx: TraceContext, call: Call, info: Carry, ids: np.ndarray, dim: int, size: int, sl: slice,
                    raw: Any) -> np.ndarray | None:
    """Slices like ``x[:, : x.size(1) // k]`` select equal parts (positions unioned); ``x[:, :self.c]`` /
    ``x[:, self.c:]`` record the attribute (it counts the channels before it); constant bounds -> None."""
    if not isinstance(raw, slice) or sl.step not in (None, 1):
        return None
    bounds = [b for b in (raw.start, raw.stop) if b is not None and not (b is raw.start and b == 0)]
    if bounds and all(size_attr(b) is not None and size_attr(b).divisor == 1 for b in bounds):
        if len(info.dims) != 1 or not all(0 < int(b) <= size for b in bounds):
            return None
        if not all(_record_size(ctx, call, b, ids[: int(b)]) for b in bounds):
            return None
        return ids[sl]
    base = call.node.args[0]
    ks = {transfer.size_fraction(b, base, dim) for b in (raw.start, raw.stop) if b is not None}
    if len(ks) != 1 or None in ks:
        return None
    k = ks.pop()
    if size % k:
        return None
    start = 0 if raw.start is None else 1
    stop = k if raw.stop is None else 1
    if start >= stop:
        return None
    parts = transfer.equal_parts(ctx, Carry(info.dims, ids), dim, k)
    chosen = parts[start:stop].reshape((-1,) + parts.shape[2:])
    return np.moveaxis(chosen, 0, info.dims.index(dim))


def _getattr(ctx: TraceContext, call: Call) -> Info:
    out, x = call.out, call.args[0]
    if not isinstance(out, torch.Tensor):
        return None
    attr = call.args[1]
    if attr == "data":
        return call.info(0)
    if attr in ("T", "mT"):
        nd = x.dim()
        perm = list(reversed(range(nd))) if attr == "T" else list(range(nd - 2)) + [nd - 1, nd - 2]
        return transfer.permute(call.info(0), perm)
    return transfer.unknown(ctx, call, f"tensor attribute .{attr}")


def _layer_norm(ctx: TraceContext, call: Call) -> Info:
    """F.layer_norm (e.g. a channels-first LayerNorm subclass that permutes and calls it)."""
    x, info = call.args[0], call.info(0)
    shape = call.arg(1, "normalized_shape")
    nd = len(shape)
    if not isinstance(info, Carry) or not set(range(x.dim() - nd, x.dim())) & set(info.dims):
        return info
    if nd != 1 or info.dims != (x.dim() - 1,):
        ctx.uf.freeze(info.ids, f"{call.name}: layer_norm over several dims including channels")
        return info
    ids = info.ids
    owner = None
    for index, key in ((2, "weight"), (3, "bias")):
        pinfo, raw = call.info(index, key), call.raw(index, key)
        if isinstance(pinfo, Carry) and pinfo.ids.shape == ids.shape:
            ctx.uf.union_arrays(ids, pinfo.ids)
        elif pinfo is not None:
            ctx.uf.freeze(ids, f"{call.name}: affine parameters not separable")
        if isinstance(raw, fx.Node) and raw.op == "get_attr" and owner is None:
            owner = raw.target.rpartition(".")[0]
    raw_shape = call.raw(1, "normalized_shape")
    dynamic = isinstance(raw_shape, fx.Node) or (
        isinstance(raw_shape, (list, tuple)) and any(isinstance(v, fx.Node) for v in raw_shape))
    if not dynamic:
        module = ctx.root.get_submodule(owner) if owner is not None and ctx.root is not None else None
        count = size_attr(raw_shape[0]) if isinstance(raw_shape, (list, tuple)) and len(raw_shape) == 1 else None
        if isinstance(module, torch.nn.LayerNorm):  # its normalized_shape attribute is updated on pruning
            ctx.record(owner, module, "channels", ids)
        elif count is None or count.divisor != 1 or not _record_size(ctx, call, count, ids):
            ctx.uf.freeze(ids, f"{call.name}: constant normalized_shape")
    return info


def _owner_of(ctx: TraceContext, call: Call, index: int, key: str) -> tuple[str, torch.nn.Module] | None:
    """(name, module) owning a parameter argument read straight from a module (``F.linear(x, self.weight)``)."""
    raw = call.raw(index, key)
    if not (isinstance(raw, fx.Node) and raw.op == "get_attr") or ctx.root is None:
        return None
    name = raw.target.rpartition(".")[0]
    return name, ctx.root.get_submodule(name)


def _tie_params(ctx: TraceContext, call: Call, ids: np.ndarray, params: tuple[tuple[int, str], ...]) -> None:
    """Per-channel parameter arguments (1-d, one entry per channel) share the channels' ids; others freeze."""
    for index, key in params:
        pinfo = call.info(index, key)
        if isinstance(pinfo, Carry) and pinfo.ids.shape == ids.shape:
            ctx.uf.union_arrays(ids, pinfo.ids)
        elif pinfo is not None:
            reason = f"{call.name}: {key} is not one entry per channel"
            ctx.uf.freeze(ids, reason)
            ctx.freeze(pinfo, reason)


def _record_owner(ctx: TraceContext, call: Call, ids: np.ndarray, keys: tuple[tuple[int, str], ...],
                  base: type) -> None:
    """When the parameters belong to a module of type ``base`` (e.g. a BatchNorm2d subclass with its own forward),
    record its ``channels`` slot too, so its size attribute (``num_features``) is updated on pruning."""
    for index, key in keys:
        owner = _owner_of(ctx, call, index, key)
        if owner is not None and isinstance(owner[1], base):
            ctx.record(owner[0], owner[1], "channels", ids)
            return


def _batch_norm(ctx: TraceContext, call: Call) -> Info:
    """F.batch_norm / F.instance_norm with per-channel statistics and affine parameters (timm's BatchNormAct2d)."""
    x, info = call.args[0], call.info(0)
    params = ((1, "running_mean"), (2, "running_var"), (3, "weight"), (4, "bias"))
    if x.dim() < 2 or not isinstance(info, Carry) or 1 not in info.dims:
        for index, key in params:
            ctx.freeze(call.info(index, key), f"{call.name}: input channels cannot change")
        return info
    ids = transfer.channelwise(ctx, x, info, 1, f"{call.name}: channels not separable")
    _tie_params(ctx, call, ids, params)
    _record_owner(ctx, call, ids, params, torch.nn.modules.batchnorm._NormBase)
    return info


def _group_norm(ctx: TraceContext, call: Call) -> Info:
    """F.group_norm: position p of every group is one class; one channel per group needs a rewritable count."""
    x, info = call.args[0], call.info(0)
    params = ((2, "weight"), (3, "bias"))
    if not isinstance(info, Carry) or 1 not in info.dims:
        for index, key in params:
            ctx.freeze(call.info(index, key), f"{call.name}: input channels cannot change")
        return info
    ids = transfer.channelwise(ctx, x, info, 1, f"{call.name}: channels not separable")
    groups = call.arg(1, "num_groups")
    per_group = x.shape[1] // groups
    if per_group > 1:
        ctx.uf.union_along(ids.reshape(groups, per_group), 0)
    _tie_params(ctx, call, ids, params)
    owner = next((o for o in (_owner_of(ctx, call, i, k) for i, k in params) if o is not None), None)
    if owner is not None and isinstance(owner[1], torch.nn.GroupNorm):
        ctx.record(owner[0], owner[1], "channels", ids)  # GroupNorm's rule updates num_channels / num_groups
    elif per_group == 1:
        count = size_attr(call.raw(1, "num_groups"))
        if count is None or count.divisor != 1 or not _record_size(ctx, call, count, ids):
            ctx.uf.freeze(ids, f"{call.name}: one channel per group with a constant num_groups")
    return info


def _linear(ctx: TraceContext, call: Call) -> Info:
    """F.linear(x, module.weight, module.bias) of an nn.Linear (subclass): the module's linear rule."""
    return _functional_module(ctx, call, torch.nn.Linear, 2)


def _conv(ctx: TraceContext, call: Call) -> Info:
    """F.conv1d/2d/3d(x, module.weight, module.bias, ...) of an nn.ConvNd (subclass, e.g. timm's Conv2dSame)."""
    return _functional_module(ctx, call, torch.nn.modules.conv._ConvNd, 2)


def _functional_module(ctx: TraceContext, call: Call, base: type, bias_index: int) -> Info:
    owner = _owner_of(ctx, call, 1, "weight")
    if owner is None or not isinstance(owner[1], base) or isinstance(owner[1], torch.nn.modules.conv._ConvTransposeNd):
        return transfer.unknown(ctx, call, f"{call.name} with a weight computed in forward")
    name, module = owner
    groups = call.arg(6, "groups", 1)
    if isinstance(module, torch.nn.modules.conv._ConvNd) and groups != module.groups:
        return transfer.unknown(ctx, call, f"{call.name} with groups={groups} on a conv built with {module.groups}")
    rule = slot_rule(module, "out")
    out = rule.trace(ctx, Call(call.node, call.name, call.args[:1], {}, call.infos[:1], {}, call.out, module), name)
    bias = call.info(bias_index, "bias")
    if isinstance(out, Carry) and bias is not None:
        _tie_params(ctx, call, out.ids if out.ids.ndim == 1 else out.ids.ravel(), ((bias_index, "bias"),))
    return out


def _reshape_as(ctx: TraceContext, call: Call) -> Info:
    """x.reshape_as(y) / x.view_as(y): the output's sizes are y's, so its channel dims follow y's channels."""
    x, other = call.args[0], call.args[1]
    oinfo = call.info(1)
    out = transfer.reshape(ctx, call, x, call.info(0), call.out)
    follows = set(oinfo.dims) if isinstance(oinfo, Carry) else set()
    if isinstance(out, Carry) and out.dims == tuple(sorted(follows)) and len(out.dims) == 1 and (
            out.ids.shape == oinfo.ids.shape):
        ctx.uf.union_arrays(out.ids, oinfo.ids)
        return out
    if follows:
        ctx.freeze(oinfo, f"{call.name}: the channels of the shape's source cannot change")
    if isinstance(out, Carry):
        return transfer.reshape(ctx, call, x, call.info(0), call.out, [True] * other.dim())
    return out


def _channel_shuffle(ctx: TraceContext, call: Call) -> Info:
    return shuffle(ctx, call, call.args[0], call.info(0), call.arg(1, "groups"))


def _no_channels(ctx: TraceContext, call: Call) -> Info:
    return None


def _register() -> None:
    unary_f = [torch.relu, torch.relu_, F.relu, F.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu,
               F.mish, F.hardswish, F.hardsigmoid, F.hardtanh, F.softplus, F.logsigmoid, F.softsign, F.tanhshrink,
               torch.sigmoid, F.sigmoid, torch.tanh, F.tanh, torch.exp, torch.abs, torch.neg, operator.neg,
               operator.pos, torch.sqrt, torch.rsqrt, torch.log, torch.square, torch.reciprocal, torch.erf,
               torch.sign, torch.clone, torch.detach, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d,
               F.alpha_dropout, F.feature_alpha_dropout, torch.nan_to_num]
    for f in unary_f:
        FUNCTION_RULES[f] = _unary
    binary_f = [operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.isub,
                operator.imul, operator.itruediv, operator.pow, torch.add, torch.sub, torch.subtract, torch.mul,
                torch.multiply, torch.div, torch.true_divide, torch.maximum, torch.minimum, torch.where, torch.clamp,
                torch.clip, torch.lerp, torch.addcmul, torch.addcdiv, torch.pow]
    for f in binary_f:
        FUNCTION_RULES[f] = _elementwise
    for f in (torch.mean, torch.sum, torch.amax, torch.amin, torch.std, torch.var, torch.prod, torch.logsumexp,
              torch.norm, torch.argmax, torch.argmin):
        FUNCTION_RULES[f] = _reduce
    FUNCTION_RULES[torch.max] = _max_min
    FUNCTION_RULES[torch.min] = _max_min
    for f in (torch.softmax, torch.log_softmax, F.softmax, F.log_softmax, torch.cumsum):
        FUNCTION_RULES[f] = _along_dim
    for f in (F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
              F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.adaptive_max_pool1d,
              F.adaptive_max_pool2d, F.adaptive_max_pool3d, F.max_pool2d_with_indices, F.lp_pool1d, F.lp_pool2d,
              F.interpolate, F.upsample, F.upsample_nearest, F.upsample_bilinear):
        FUNCTION_RULES[f] = _spatial
    FUNCTION_RULES[F.pad] = _pad
    FUNCTION_RULES[torch.flatten] = _flatten
    FUNCTION_RULES[torch.reshape] = _view
    FUNCTION_RULES[torch.squeeze] = _squeeze
    FUNCTION_RULES[torch.unsqueeze] = _squeeze
    FUNCTION_RULES[torch.unflatten] = _unflatten
    FUNCTION_RULES[torch.permute] = _permute
    FUNCTION_RULES[torch.transpose] = _transpose
    FUNCTION_RULES[torch.swapaxes] = _transpose
    FUNCTION_RULES[torch.t] = _t
    FUNCTION_RULES[torch.cat] = _cat
    FUNCTION_RULES[torch.concat] = _cat
    FUNCTION_RULES[torch.concatenate] = _cat
    FUNCTION_RULES[torch.stack] = _stack
    FUNCTION_RULES[torch.chunk] = _chunk
    FUNCTION_RULES[torch.split] = _split
    FUNCTION_RULES[torch.unbind] = _unbind
    FUNCTION_RULES[operator.getitem] = _getitem
    FUNCTION_RULES[builtins.getattr] = _getattr
    FUNCTION_RULES[torch.channel_shuffle] = _channel_shuffle
    FUNCTION_RULES[F.channel_shuffle] = _channel_shuffle
    FUNCTION_RULES[F.layer_norm] = _layer_norm
    for f in (F.batch_norm, F.instance_norm):
        FUNCTION_RULES[f] = _batch_norm
    FUNCTION_RULES[F.group_norm] = _group_norm
    FUNCTION_RULES[F.linear] = _linear
    for f in (F.conv1d, F.conv2d, F.conv3d):
        FUNCTION_RULES[f] = _conv
    # torchvision's stochastic depth: per-sample scaling (identity in eval), channels untouched
    FUNCTION_RULES_BY_NAME["torchvision.ops.stochastic_depth.stochastic_depth"] = _unary

    for m in ("relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "exp", "abs", "neg", "sqrt", "rsqrt", "log",
              "square", "reciprocal", "contiguous", "clone", "detach", "float", "double", "half", "bfloat16", "to",
              "type", "type_as", "cpu", "cuda", "sign", "erf", "hardswish", "nan_to_num"):
        METHOD_RULES[m] = _unary
    for m in ("add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "pow", "pow_", "maximum", "minimum",
              "masked_fill", "masked_fill_", "expand_as", "where", "lerp", "addcmul", "addcdiv", "clamp", "clamp_",
              "clamp_min", "clamp_max", "clip"):
        METHOD_RULES[m] = _elementwise
    for m in ("mean", "sum", "amax", "amin", "std", "var", "prod", "logsumexp", "norm", "argmax", "argmin"):
        METHOD_RULES[m] = _reduce
    METHOD_RULES["max"] = _max_min
    METHOD_RULES["min"] = _max_min
    for m in ("softmax", "log_softmax", "cumsum"):
        METHOD_RULES[m] = _along_dim
    METHOD_RULES["flatten"] = _flatten
    METHOD_RULES["view"] = _view
    METHOD_RULES["reshape"] = _view
    METHOD_RULES["unflatten"] = _unflatten
    METHOD_RULES["squeeze"] = _squeeze
    METHOD_RULES["unsqueeze"] = _squeeze
    METHOD_RULES["permute"] = _permute
    METHOD_RULES["transpose"] = _transpose
    METHOD_RULES["swapaxes"] = _transpose
    METHOD_RULES["t"] = _t
    METHOD_RULES["reshape_as"] = _reshape_as
    METHOD_RULES["view_as"] = _reshape_as
    METHOD_RULES["expand"] = _expand
    METHOD_RULES["repeat"] = _repeat
    METHOD_RULES["chunk"] = _chunk
    METHOD_RULES["split"] = _split
    METHOD_RULES["unbind"] = _unbind
    for m in ("size", "dim", "numel", "element_size", "nelement", "stride", "is_contiguous", "get_device"):
        METHOD_RULES[m] = _no_channels


def register_function_rule(fn: Any, rule: OpRule) -> None:
    """Register a rule for a function called in ``forward`` (README, "Custom ops"): ``elementwise_function_rule``,
    ``channelwise_function_rule(...)`` or your own ``rule(ctx, call) -> info``."""
    if not callable(fn) or not callable(rule):
        raise TypeError(f"`fn` and `rule` must be callables, got {fn!r} and {rule!r}.")
    FUNCTION_RULES[fn] = rule


def elementwise_function_rule(ctx: TraceContext, call: Call) -> Info:
    """For functions that act on each element (broadcasting like ``+``): ``f(x)``, ``f(x, y)``."""
    return transfer.elementwise(ctx, call)


def channelwise_function_rule(params: tuple[tuple[int, str], ...] = (), dim: int = 1) -> OpRule:
    """For functions of one input that act per channel along ``dim`` with per-channel parameters at argument
    positions/keywords ``params`` (e.g. ``((1, "alpha"),)`` for ``f(x, self.alpha)``): the parameters are cut with
    the channels; anything else passed there freezes them."""

    def rule(ctx: TraceContext, call: Call) -> Info:
        x, info = call.args[0], call.info(0)
        if not isinstance(info, Carry) or dim % x.dim() not in info.dims:
            for index, key in params:
                ctx.freeze(call.info(index, key), f"{call.name}: input channels cannot change")
            return info
        ids = transfer.channelwise(ctx, x, info, dim, f"{call.name}: channels not separable")
        _tie_params(ctx, call, ids, params)
        return info

    return rule


_register()
