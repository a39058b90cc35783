"""Generic channel-transfer functions shared by module rules and function/method rules.

Each takes the trace context and concrete tensors/infos and returns the output's ``Info``. They are conservative:
whatever they cannot map exactly is frozen (never pruned), so the graph never guesses.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import fx

from .channels import Carry, Info, Opaque
from .context import Call, TraceContext


def is_dynamic(value: Any) -> bool:
    """True when a size argument is computed in the graph (tracks pruning) or is -1 (inferred)."""
    return isinstance(value, fx.Node) or value == -1


_ARITH = {operator.floordiv, operator.mul, operator.add, operator.sub, operator.truediv, operator.mod, operator.neg}


def size_sources(node: Any) -> list[tuple[fx.Node, int]]:
    """(tensor node, dim) pairs a size value is computed from (``x.size(1)``, ``x.shape[1] // 2``...)."""
    if not isinstance(node, fx.Node):
        return []
    if node.op == "call_method" and node.target == "size" and len(node.args) > 1 and isinstance(node.args[1], int):
        return [(node.args[0], node.args[1])]
    if node.op == "call_function" and node.target is operator.getitem:
        base, idx = node.args
        if isinstance(base, fx.Node) and isinstance(idx, int) and (
            (base.op == "call_function" and base.target is getattr and base.args[1] == "shape")
            or (base.op == "call_method" and base.target == "size" and len(base.args) == 1)
        ):
            return [(base.args[0], idx)]
        return []
    if node.op == "call_function" and node.target in _ARITH:
        return [src for a in node.args for src in size_sources(a)]
    return []


def _same_classes(ctx: TraceContext, a: Carry, da: int, b: Carry, db: int) -> bool:
    """True when dim ``da`` of ``a`` and dim ``db`` of ``b`` hold the same multiset of classes (same width forever)."""
    if len(a.dims) != 1 or len(b.dims) != 1 or a.ids.shape != b.ids.shape:
        return False
    find = ctx.uf.find
    return sorted(find(int(i)) for i in a.ids) == sorted(find(int(i)) for i in b.ids)


def couple_size_args(ctx: TraceContext, call: Call, source: Any, raw_sizes: list[Any], out: Info) -> list[bool]:
    """Sizes taken from *another* tensor tie that tensor's dim to the output dim.

    Returns ``fixed`` flags: True where an output dim's size is a constant or comes from a dim of another tensor that
    carries no channels. Where the other tensor's dim carries channels, they are unioned with the output's channels
    along that dim (same width after pruning), or frozen when that cannot be expressed.
    """
    fixed = []
    for j, raw in enumerate(raw_sizes):
        if not isinstance(raw, fx.Node):
            fixed.append(raw != -1)
            continue
        foreign = [(n, d) for n, d in size_sources(raw) if n is not source]
        is_fixed = False
        for node, d in foreign:
            info = ctx.infos.get(node)
            ndim = ctx.ndims.get(node)
            if ndim is None:
                continue
            d %= ndim
            if not isinstance(info, Carry) or d not in info.dims:
                is_fixed = True
                continue
            if isinstance(out, Carry) and j in out.dims and _same_classes(ctx, out, j, info, d):
                continue  # e.g. a channel shuffle viewed back with the pre-shuffle width: a permutation
            if (isinstance(out, Carry) and out.dims == (j,) and info.dims == (d,)
                    and out.ids.shape == info.ids.shape and len(foreign) == 1 and size_sources(raw) == foreign):
                ctx.uf.union_arrays(out.ids, info.ids)
            else:
                ctx.uf.freeze(info.ids, f"{call.name}: size of a channel dim reused for another tensor")
                if isinstance(out, Carry):
                    ctx.uf.freeze(out.ids, f"{call.name}: size of a channel dim reused for another tensor")
        fixed.append(is_fixed)
    return fixed


def channel_ids(ctx: TraceContext, x: torch.Tensor, info: Info, dim: int, reason: str) -> np.ndarray:
    """Ids along ``dim`` of ``x`` for a consumer that mixes every other dim; unrepresentable ids are frozen."""
    dim = dim % x.dim()
    size = x.shape[dim]
    if isinstance(info, Carry) and dim in info.dims:
        if len(info.dims) == 1:  # the common case: ids along ``dim`` only, nothing to compare
            return np.ascontiguousarray(info.ids)
        axis = info.dims.index(dim)
        ids = np.moveaxis(info.ids, axis, 0).reshape(size, -1)
        if ids.shape[1] > 1 and not (ids == ids[:, :1]).all():
            ctx.uf.freeze(ids, reason)
        return np.ascontiguousarray(ids[:, 0])
    if isinstance(info, Carry):
        ctx.uf.freeze(info.ids, reason)
    fid = info.id if isinstance(info, Opaque) else ctx.frozen_id(reason)
    return np.full(size, fid, dtype=np.int64)


def channelwise(ctx: TraceContext, x: torch.Tensor, info: Info, dim: int, reason: str) -> np.ndarray | None:
    """Ids along ``dim`` for a per-channel op that does not mix other dims (BN, PReLU); None if nothing to couple."""
    dim = dim % x.dim()
    if isinstance(info, Carry) and dim in info.dims:
        if len(info.dims) == 1:
            return info.ids
        return channel_ids(ctx, x, info, dim, reason)
    return None


def frozen(ctx: TraceContext, info: Info, reason: str) -> Opaque:
    """The output of an op that froze its input's channels: an opaque tensor tied to them.

    Never ``None`` (which means "no channels"): an op downstream (``frozen_output + conv(y)``) must freeze the
    channels it meets, or they would be pruned against a width that cannot change.
    """
    ctx.freeze(info, reason)
    return Opaque(ctx.frozen_id(reason))


def unary(ctx: TraceContext, call: Call) -> Info:
    """Output carries exactly the first argument's channels (activations, dropout, dtype casts...)."""
    info = call.info(0)
    return info if isinstance(info, (Carry, Opaque)) else None


def _same_shape_union(ctx: TraceContext, operands: list[tuple[torch.Tensor, Info]], out: torch.Tensor
                      ) -> Carry | None:
    """:func:`elementwise` when no operand broadcasts (a residual add: every operand has the output's shape and
    carries ids along the same dims): their ids are unioned position by position. None for any other call."""
    first = operands[0][1] if operands else None
    if not isinstance(first, Carry) or not all(
            isinstance(info, Carry) and info.dims == first.dims and value.shape == out.shape
            for value, info in operands):
        return None
    for _, info in operands[1:]:
        ctx.uf.union_arrays(first.ids, info.ids)
    return Carry(first.dims, np.ascontiguousarray(first.ids))


def elementwise(ctx: TraceContext, call: Call) -> Info:
    """Broadcasting n-ary op: union ids of operands that are not broadcast along a carrying dim."""
    out = call.out
    if not isinstance(out, torch.Tensor):
        return None
    operands = call.tensors()
    same = _same_shape_union(ctx, operands, out)
    if same is not None:
        return same
    oshape, nd = tuple(out.shape), out.dim()
    contribs: list[tuple[np.ndarray, list[int]]] = []
    opaques: list[tuple[torch.Tensor, Opaque]] = []
    dout: set[int] = set()
    for value, info in operands:
        off = nd - value.dim()
        if isinstance(info, Carry):
            part = [d for d in info.dims if value.shape[d] == oshape[d + off]]
            if not part:
                continue
            sel = tuple(slice(None) if d in part else 0 for d in info.dims)
            contribs.append((info.ids[sel], [d + off for d in part]))
            dout.update(d + off for d in part)
        elif isinstance(info, Opaque):
            opaques.append((value, info))
    if not dout:
        live = [info for value, info in opaques if value.numel() > 1]
        for info in live[1:]:
            ctx.uf.union(live[0].id, info.id)
        return Opaque(live[0].id) if live else None
    dims = sorted(dout)
    shape = tuple(oshape[d] for d in dims)
    arrays = []
    for ids, part in contribs:
        bshape = [1] * len(dims)
        for k, d in enumerate(part):
            bshape[dims.index(d)] = ids.shape[k]
        arrays.append(np.broadcast_to(ids.reshape(bshape), shape))
    base = arrays[0]
    for arr in arrays[1:]:
        ctx.uf.union_arrays(base, arr)
    for value, info in opaques:
        off = nd - value.dim()
        if any(value.shape[d - off] == oshape[d] for d in dims if d - off >= 0):
            ctx.uf.union_all(base, info.id)
    return Carry(tuple(dims), np.ascontiguousarray(base))


def reshape(ctx: TraceContext, call: Call, x: torch.Tensor, info: Info, out: torch.Tensor,
            fixed: Sequence[bool] | None = None) -> Info:
    """view/reshape/flatten/unflatten/squeeze/unsqueeze: map ids by element position.

    ``fixed[d]`` is True when output dim d's size is a constant written in the code; such a dim cannot shrink, so
    ids along it are unioned (e.g. the ``groups`` dim of a channel shuffle); if every carrying dim is fixed the
    channels are frozen (e.g. ``x.view(-1, 512 * 7 * 7)``).
    """
    if not isinstance(info, Carry):
        return info
    in_shape, out_shape = tuple(x.shape), tuple(out.shape)
    pos = np.arange(info.ids.size, dtype=np.int64).reshape(info.ids.shape)
    bshape = [in_shape[d] if d in info.dims else 1 for d in range(len(in_shape))]
    full = np.broadcast_to(pos.reshape(bshape), in_shape)
    off = 0
    if (in_shape and out_shape and in_shape[0] == out_shape[0] and 0 not in info.dims
            and math.prod(in_shape[1:]) == math.prod(out_shape[1:])):
        full, off = full[0], 1
        target = out_shape[1:]
    else:
        target = out_shape
    full = full.reshape(target)
    new_dims = [d for d in range(full.ndim) if full.shape[d] > 1 and not (np.diff(full, axis=d) == 0).all()]
    if not new_dims:
        reason = f"{call.name}: channels collapsed by a reshape"
        ctx.uf.freeze(info.ids, reason)
        return frozen(ctx, info, reason)
    sel = tuple(slice(None) if d in new_dims else 0 for d in range(full.ndim))
    ids = info.ids.ravel()[full[sel]]
    dims = tuple(d + off for d in new_dims)
    if fixed is not None:
        fixed_axes = [k for k, d in enumerate(dims) if d < len(fixed) and fixed[d]]
        if len(fixed_axes) == len(dims):
            ctx.uf.freeze(ids, f"{call.name}: reshape to a constant channel size")
        else:
            for axis in fixed_axes:
                ctx.uf.union_along(ids, axis)
    return Carry(dims, ids)


def permute(info: Info, perm: Sequence[int]) -> Info:
    """Output dim j is input dim perm[j]."""
    if not isinstance(info, Carry):
        return info
    nd = len(perm)
    perm = [p % nd for p in perm]
    out_dims = [j for j in range(nd) if perm[j] in info.dims]
    axes = [info.dims.index(perm[j]) for j in out_dims]
    return Carry(tuple(out_dims), np.ascontiguousarray(info.ids.transpose(axes)))


def spatial(ctx: TraceContext, call: Call, info: Info, keep: int = 2) -> Info:
    """Ops that keep dims < ``keep`` (batch, channel) and resample the rest (pooling, interpolation, padding)."""
    if not isinstance(info, Carry):
        return info
    if any(d >= keep for d in info.dims):
        reason = f"{call.name}: mixes a channel dim"
        ctx.uf.freeze(info.ids, reason)
        return frozen(ctx, info, reason)
    return info


def reduce(ctx: TraceContext, call: Call, x: torch.Tensor, info: Info, dims: Any, keepdim: bool) -> Info:
    """mean/sum/amax over ``dims``; reducing a carrying dim freezes its channels."""
    if not isinstance(info, Carry):
        return info if keepdim or isinstance(info, Opaque) else None
    nd = x.dim()
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        red = set(range(nd))
    elif isinstance(dims, int):
        red = {dims % nd}
    else:
        red = {d % nd for d in dims}
    if red & set(info.dims):
        ctx.uf.freeze(info.ids, f"{call.name}: reduces over a channel dim")
        return None
    if keepdim:
        return info
    new_dims = tuple(d - sum(r < d for r in red) for d in info.dims)
    return Carry(new_dims, info.ids)


def along_dim(ctx: TraceContext, call: Call, info: Info, dim: int, nd: int) -> Info:
    """Ops that mix values along one dim (softmax, cumsum): freeze if that dim carries channels."""
    if isinstance(info, Carry) and dim % nd in info.dims:
        ctx.uf.freeze(info.ids, f"{call.name}: mixes along a channel dim")
    return info


def joint(ctx: TraceContext, info: Info, dims: Sequence[int], shape: Sequence[int], reason: str) -> np.ndarray:
    """Ids of ``info`` tiled to the joint shape over ``dims`` (a free tensor gets a fresh frozen id)."""
    if isinstance(info, Carry):
        bshape = [1] * len(dims)
        sel = []
        for d in info.dims:
            if d in dims:
                sel.append(slice(None))
                bshape[list(dims).index(d)] = info.ids.shape[info.dims.index(d)]
            else:
                sel.append(0)
        return np.broadcast_to(info.ids[tuple(sel)].reshape(bshape), tuple(shape))
    fid = info.id if isinstance(info, Opaque) else ctx.frozen_id(reason)
    return np.full(tuple(shape), fid, dtype=np.int64)


def cat(ctx: TraceContext, call: Call, tensors: Sequence[torch.Tensor], infos: Sequence[Info], dim: int) -> Info:
    """Concatenation: ids of each input occupy its offset range along ``dim``."""
    out = call.out
    nd = out.dim()
    dim = dim % nd
    carried = set()
    for info in infos:
        if isinstance(info, Carry):
            carried.update(info.dims)
    if not carried and not any(isinstance(i, Opaque) for i in infos):
        return None
    dims = sorted(carried | {dim})
    parts = []
    for t, info in zip(tensors, infos):
        shape = [t.shape[d] for d in dims]
        parts.append(joint(ctx, info, dims, shape, f"{call.name}: constant tensor concatenated"))
    ids = np.concatenate(parts, axis=dims.index(dim))
    return Carry(tuple(dims), ids)


def stack(ctx: TraceContext, call: Call, infos: Sequence[Info], dim: int) -> Info:
    """torch.stack: inputs are unioned elementwise (they stay the same width) and a new free dim is inserted."""
    tensors = [t for t, _ in call.tensors()]
    fake = Call(call.node, call.name, tuple(tensors), {}, tuple(infos), {}, tensors[0] if tensors else None)
    merged = elementwise(ctx, fake)
    if not isinstance(merged, Carry):
        return merged
    dim = dim % call.out.dim()
    return Carry(tuple(d + 1 if d >= dim else d for d in merged.dims), merged.ids)


def size_fraction(node: Any, source: Any, dim: int) -> int | None:
    """k when ``node`` is ``source.size(dim) // k`` (or ``source.shape[dim] // k``), else None."""
    if not (isinstance(node, fx.Node) and node.op == "call_function" and node.target is operator.floordiv):
        return None
    size_node, k = node.args
    if not isinstance(k, int) or not isinstance(size_node, fx.Node):
        return None
    if (size_node.op == "call_method" and size_node.target == "size" and size_node.args[0] is source
            and len(size_node.args) > 1 and size_node.args[1] == dim):
        return k
    if size_node.op == "call_function" and size_node.target is operator.getitem:
        base, idx = size_node.args
        if idx == dim and isinstance(base, fx.Node) and base.args and base.args[0] is source and (
            (base.op == "call_function" and base.target is getattr and base.args[1] == "shape")
            or (base.op == "call_method" and base.target == "size" and len(base.args) == 1)
        ):
            return k
    return None


def equal_parts(ctx: TraceContext, info: Carry, dim: int, k: int) -> np.ndarray:
    """Split carrying ``dim`` into k equal parts whose positions are unioned; returns ids shaped (k, ..)."""
    axis = info.dims.index(dim)
    ids = np.moveaxis(info.ids, axis, 0)
    parts = ids.reshape((k, ids.shape[0] // k) + ids.shape[1:])
    ctx.uf.union_along(parts, 0)
    return parts


def part_info(info: Carry, dim: int, part_ids: np.ndarray) -> Carry:
    axis = info.dims.index(dim)
    return Carry(info.dims, np.ascontiguousarray(np.moveaxis(part_ids, 0, axis)))


def pad(ctx: TraceContext, call: Call, x: torch.Tensor, info: Info, pads: Sequence[int]) -> Info:
    """Constant/reflect padding; padding a channel dim adds frozen channels at both ends."""
    if not isinstance(info, Carry):
        return info
    nd = x.dim()
    padded = {nd - 1 - i // 2 for i, p in enumerate(pads) if p != 0}
    hit = padded & set(info.dims)
    if not hit:
        return info
    mode = call.arg(2, "mode", "constant")
    if len(info.dims) != 1 or mode != "constant" or any(p < 0 for p in pads):
        reason = f"{call.name}: pads a channel dim"
        ctx.uf.freeze(info.ids, reason)
        return frozen(ctx, info, reason)
    d = info.dims[0]
    k = nd - 1 - d
    lo, hi = pads[2 * k], pads[2 * k + 1]
    reason = f"{call.name}: constant padding channels"
    ids = np.concatenate([ctx.uf.new(lo, reason), info.ids, ctx.uf.new(hi, reason)]).astype(np.int64)
    return Carry(info.dims, ids)


def unknown(ctx: TraceContext, call: Call, description: str) -> Any:
    """No rule: freeze every channel the op touches, return frozen outputs, and remember the op for the warning."""
    touched = False
    for _, info in call.tensors():
        if isinstance(info, (Carry, Opaque)):
            touched = True
            ctx.freeze(info, f"no rule for {description}")
    out_has_tensor = _has_tensor(call.out)
    if touched or out_has_tensor:
        ctx.mark_unknown(call.name, description)
    if not out_has_tensor:
        return None
    fid = ctx.frozen_id(f"output of {description} (no rule)")
    return _map_tensors(call.out, lambda t: Opaque(fid))


def _has_tensor(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_tensor(v) for v in value)
    if isinstance(value, dict):
        return any(_has_tensor(v) for v in value.values())
    return False


def _map_tensors(value: Any, fn: Any) -> Any:
    """Apply ``fn`` to every tensor of a (nested) list/tuple output; non-tensors map to None."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, (list, tuple)):
        return tuple(_map_tensors(v, fn) for v in value)
    return None
