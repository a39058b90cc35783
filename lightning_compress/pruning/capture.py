"""Trace a model with torch.fx and propagate channel ids through every node.

Why torch.fx (symbolic trace + one concrete run of the graph) rather than forward hooks or walking
``grad_fn``: hooks only see module calls, so functional ops in ``forward`` (``x + y``, ``torch.cat``, ``chunk``,
``view``/``transpose`` channel shuffles, ``flatten``, slicing) are invisible, and autograd-node walking classifies ops
by ``grad_fn`` name and treats everything unknown as element-wise (Torch-Pruning's failure mode on ShuffleNetV2).
fx gives every op with its exact target and its unevaluated arguments (so ``x.size(1) // 2`` is distinguishable from
a hard-coded ``58``), and running the graph gives concrete shapes, so each op gets an explicit rule or is frozen.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import fx, nn

from . import transfer
from .boundaries import has_boundary_hooks
from .channels import Carry, Opaque
from .context import Call, TraceContext
from .errors import TraceError
from .ops import METHOD_RULES, function_rule
from .rules import get_module_rule
from .shape_only import shape_only_output
from .sizes import python_reads
from .streams import Link, boundary_module, stream_values, writes_stream
from .tracing import drop_unused_attrs, freeze_guarded_channels, runnable_train_graph, trace


def symbolic_trace(model: nn.Module, example_inputs: Any = None) -> fx.GraphModule:
    """fx-trace ``model`` (sharing its parameters) or raise :class:`TraceError` with a hint (see ``tracing.py``;
    with ``example_inputs``, shape-dependent Python control flow is followed on them)."""
    return fx.GraphModule(model, trace(model, example_inputs)[0])


_MISSING = object()


def _op_name(node: fx.Node, modules: Mapping[str, nn.Module]) -> tuple[str, str]:
    if node.op == "call_module":
        mod = modules[node.target]
        return f"{node.target} ({type(mod).__name__})", f"module {node.target!r} ({type(mod).__name__})"
    if node.op == "call_method":
        return f".{node.target}()", f"method .{node.target}()"
    name = getattr(node.target, "__name__", str(node.target))
    module = getattr(node.target, "__module__", "") or ""
    return name, f"function {module + '.' if module else ''}{name}"


class _ChannelInterpreter:
    """Runs ``graph`` on the model itself (no GraphModule, no codegen) and maps channel ids through every node.

    A plain loop over the nodes with ``fx.Interpreter``'s semantics for the six node kinds and its freeing of values
    after their last use; it skips the interpreter's per-node progress bar and metadata context, which cost more
    than the channel mapping of a node whose module output is shape-only (``shape_only.py``).
    """

    def __init__(self, graph: fx.Graph, ctx: TraceContext, root: nn.Module) -> None:
        self.graph = graph
        self.ctx = ctx
        self.root = root
        self.modules = dict(root.named_modules(remove_duplicate=False))  # shared modules under every name
        self.infos: dict[fx.Node, Any] = ctx.infos
        self.stream = stream_values(graph, self.modules)  # residual / dense-concat values (linked ids)
        self._reads: dict[tuple[fx.Node, fx.Node], Any] = {}

    def run(self, *inputs: Any) -> Any:
        last_uses: dict[fx.Node, list[fx.Node]] = {}  # user -> the values it is the last user of
        seen: set[fx.Node] = set()
        for node in reversed(self.graph.nodes):
            for source in node.all_input_nodes:
                if source not in seen:
                    seen.add(source)
                    last_uses.setdefault(node, []).append(source)
        env: dict[fx.Node, Any] = {}
        pending = iter(inputs)
        for n in self.graph.nodes:
            args = fx.node.map_arg(n.args, env.__getitem__)
            kwargs = fx.node.map_arg(n.kwargs, env.__getitem__)
            out = self._evaluate(n, args, kwargs, pending)
            info = self._transfer(n, args, kwargs, out)
            if writes_stream(n, self.stream, self.modules):
                info = self._link("write", info, boundary_module(n, self.modules), n)
            self.infos[n] = info
            if isinstance(out, torch.Tensor):
                self.ctx.ndims[n] = out.dim()
            if n.op == "output":
                return out
            env[n] = out
            for source in last_uses.get(n, ()):
                del env[source]
        return None

    def _evaluate(self, n: fx.Node, args: Any, kwargs: dict, pending: Iterator[Any]) -> Any:
        """The node's concrete value, as ``fx.Interpreter`` computes it (module outputs may be shape-only)."""
        if n.op == "call_module":
            module = self.modules[n.target]
            out = shape_only_output(module, args, kwargs)  # rules read shapes only (shape_only.py)
            return out if out is not None else module(*args, **kwargs)
        if n.op == "call_function":
            return n.target(*args, **kwargs)
        if n.op == "call_method":
            return getattr(args[0], n.target)(*args[1:], **kwargs)
        if n.op == "get_attr":
            value: Any = self.root
            for part in n.target.split("."):
                value = getattr(value, part)
            return value
        if n.op == "placeholder":
            if n.target.startswith("*"):
                return list(pending)
            value = next(pending, _MISSING)
            if value is not _MISSING:
                return value
            if n.args:
                return n.args[0]
            raise TypeError(f"forward expects an input {n.target!r}, `example_inputs` gives none.")
        return args[0]  # output

    def _transfer(self, n: fx.Node, args: tuple, kwargs: dict, out: Any) -> Any:
        ctx = self.ctx
        if n.op == "placeholder":
            fid = ctx.frozen_id("model input")
            return transfer._map_tensors(out, lambda t: Opaque(fid))
        if n.op == "output":
            ctx.freeze(fx.node.map_arg(n.args, lambda a: self.infos.get(a)), "model output")
            return None
        if n.op == "get_attr":
            return self._get_attr(n, out)
        infos = fx.node.map_arg(n.args, lambda a: self._seen_by(a, n))
        kwinfos = fx.node.map_arg(n.kwargs, lambda a: self._seen_by(a, n))
        short, description = _op_name(n, self.modules)
        call = Call(n, short, args, kwargs, tuple(infos), dict(kwinfos), out)
        if n.op == "call_module":
            call.module = self.modules[n.target]
            if has_boundary_hooks(call.module):
                return transfer.unknown(ctx, call, f"{description}, already pruned with residual='select'")
            rule = get_module_rule(call.module)
            apply = (lambda: rule.trace(ctx, call, n.target)) if rule is not None else None
        else:
            fn = function_rule(n.target) if n.op == "call_function" else METHOD_RULES.get(n.target)
            apply = (lambda: fn(ctx, call)) if fn is not None else None
        if apply is None and n.op == "call_function" and isinstance(n.target, type) and issubclass(n.target, tuple):
            fields = getattr(n.target, "_fields", ())  # a (named)tuple of outputs: carry each element's info
            return tuple(call.infos) + tuple(call.kwinfos.get(f) for f in fields[len(call.infos):])
        if apply is None:
            if not call.tensors() and not transfer._has_tensor(out):
                return None
            return transfer.unknown(ctx, call, description)
        try:
            return apply()
        except Exception as exc:  # a rule that cannot handle an unusual call freezes it instead of guessing
            return transfer.unknown(ctx, call, f"{description} (rule failed: {exc})")

    def _seen_by(self, arg: fx.Node, user: fx.Node) -> Any:
        """The info of ``arg`` as ``user`` sees it: a stream value read outside the stream gets linked ids."""
        info = self.infos.get(arg)
        if arg not in self.stream or user in self.stream or user.op == "output":
            return info
        key = (arg, user)
        if key not in self._reads:
            self._reads[key] = self._link("read", info, boundary_module(user, self.modules), user)
        return self._reads[key]

    def _link(self, kind: str, info: Any, module: str | None, node: fx.Node) -> Any:
        """Fresh ids for the channels of ``info`` across a stream boundary, linked to the old ones (see streams)."""
        if not isinstance(info, Carry):
            return info
        fresh = self.ctx.uf.new(info.ids.size).reshape(info.ids.shape)
        dim = info.dims[0] if len(info.dims) == 1 else None
        self.ctx.links.append(Link(kind, info.ids.ravel(), fresh.ravel(), module, dim, _op_name(node, self.modules)[1]))
        return Carry(info.dims, fresh)

    def _get_attr(self, n: fx.Node, value: Any) -> Any:
        if not isinstance(value, torch.Tensor):
            return None
        big = [d for d in range(value.dim()) if value.shape[d] > 1]
        owner, _, attr = n.target.rpartition(".")
        if len(big) == 1:
            module = self.root.get_submodule(owner) if owner else self.root
            d = big[0]
            ids = self.ctx.uf.new(value.shape[d])
            self.ctx.record(owner, module, f"{attr}[{d}]", ids)
            return Carry((d,), ids)
        fid = self.ctx.frozen_id(f"tensor attribute {n.target!r} used in forward")
        return Opaque(fid)


def _set_mode(modes: dict[nn.Module, bool], training: bool | None) -> None:
    for m, mode in modes.items():  # a plain attribute: no nn.Module.__setattr__ bookkeeping
        object.__setattr__(m, "training", mode if training is None else training)


def _positional(graph: fx.Graph, example_inputs: Any) -> list[Any]:
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if isinstance(example_inputs, Mapping):
        return [example_inputs[n.target] for n in placeholders if n.target in example_inputs]
    if isinstance(example_inputs, (tuple, list)):
        return list(example_inputs)
    return [example_inputs]


def _called_modules(graph: fx.Graph) -> set[str]:
    return {str(n.target) for n in graph.nodes if n.op == "call_module"}


def _code(graph: fx.Graph) -> str:
    return graph.python_code("self").src


def capture(model: nn.Module, example_inputs: Any) -> tuple[TraceContext, list[fx.Graph]]:
    """Trace ``model`` once per mode and propagate channel ids on ``example_inputs``.

    ``example_inputs``: a tensor, a tuple of tensors, or a dict of keyword inputs. ``forward`` is traced in train and
    in eval mode (branches on ``self.training``, e.g. auxiliary heads, exist in only one); the train graph runs with
    eval-mode batch norm and dropout and without buffer updates (``tracing.runnable_train_graph``), and when that makes
    both graphs the same, one is used. Both are run in eval mode under ``torch.no_grad`` (BN running stats untouched)
    into one context, and each module's mode is restored. When the train-mode graph still fails on the inputs and calls
    no module the eval graph does not, it is skipped (the eval graph covers every module). Shape-dependent Python
    control flow is followed on the inputs (``tracing.ConcreteTracer``); channels whose size it read are frozen.
    The forward runs single-threaded: it is tiny, and on a loaded CPU intra-op threads made it ~50x slower.
    """
    modes = {m: m.training for m in dict(model.named_modules()).values()}
    traced: list[tuple[fx.Graph, list]] = []
    python_reads.clear()  # size attributes read by Python in either mode's forward are not rewritten (sizes.py)
    try:
        for training in (True, False):
            _set_mode(modes, training)
            graph, guards = trace(model, example_inputs)
            graph = runnable_train_graph(graph) if training else drop_unused_attrs(graph)
            if not traced or _code(graph) != _code(traced[0][0]):
                traced.append((graph, guards))
    finally:
        _set_mode(modes, None)
    ctx = TraceContext(root=model)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _set_mode(modes, False)
        with torch.no_grad():
            for i, (graph, guards) in enumerate(traced):
                ctx.infos.clear()
                ctx.ndims.clear()
                try:
                    _ChannelInterpreter(graph, ctx, model).run(*_positional(graph, example_inputs))
                except Exception as exc:
                    if i + 1 < len(traced) and _called_modules(graph) <= _called_modules(traced[-1][0]):
                        continue  # a train-only failure; the eval graph reaches every module
                    mode = "train" if i + 1 < len(traced) else "eval"
                    raise TraceError(f"the {mode}-mode forward of {type(model).__name__} failed on "
                                     f"`example_inputs`: {type(exc).__name__}: {exc}") from exc
                freeze_guarded_channels(ctx, guards)
    finally:
        torch.set_num_threads(threads)
        _set_mode(modes, None)
    return ctx, [graph for graph, _ in traced]
