"""fx tracing for the channel analysis: the rule-aware tracer, a concrete-value fallback for shape-dependent
Python control flow, the train-mode graph made runnable on any batch, and guards on followed branches.

- :class:`RuleTracer`: modules with a registered rule (exact type) are leaves; everything else is traced through.
- :class:`ConcreteTracer`: used only when the plain trace fails (e.g. timm's TF "same" padding,
  ``max(math.ceil(ih / s) ...)``). It runs every traced op on the example inputs while tracing, so a Python
  ``bool``/``int``/``len``/``math.ceil`` of a traced value gets the real value and tracing goes on along the branch
  the example takes. Sizes stay graph values (``x.size(1) // 2`` is still seen as computed). Every such point is a
  *guard*; :func:`freeze_guarded_channels` freezes (and names) the channels whose width a guard read, because
  pruning would change a decision that the graph has baked in. Guards on spatial sizes freeze nothing.
- :func:`runnable_train_graph`: the train-mode graph (needed for train-only branches such as auxiliary heads) runs
  in eval semantics: ``F.batch_norm(..., training=True)`` with running statistics uses them, dropout (and the other
  ops whose flag changes values only) gets ``training=False``, and in-place updates of buffers
  (``num_batches_tracked.add_(1)``) are dropped. Shapes are unchanged; a batch of one then traces, and no
  statistic is touched. When this makes it the same code as the eval graph, one trace is enough.
"""

from __future__ import annotations

import contextlib
import math
import operator
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from .boundaries import is_fused, stream_add
from .channels import Carry, Opaque
from .context import TraceContext
from .rules import get_module_rule
from .sizes import tracked_size_attrs, untracked_reads


class RuleTracer(fx.Tracer):
    """Modules with a registered rule are leaves; everything else is traced through."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return get_module_rule(m) is not None or super().is_leaf_module(m, module_qualified_name)


def _batch_norm_eval(*args: Any, **kwargs: Any) -> torch.Tensor:
    """F.batch_norm that uses running statistics whenever they are given (same output shape as training)."""
    names = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
    bound = dict(zip(names, args)) | kwargs
    if bound.get("running_mean") is not None and bound.get("running_var") is not None:
        bound["training"] = False
    return F.batch_norm(**bound)


class _ConcreteProxy(fx.Proxy):
    """A proxy whose Python conversions use the concrete value of its node (and record a guard)."""

    def _concrete(self, why: str) -> Any:
        tracer: ConcreteTracer = self.tracer  # type: ignore[assignment]
        tracer.guards.append((self.node, why))
        return tracer.values[self.node]

    def __bool__(self) -> bool:
        return bool(self._concrete("bool"))

    def __index__(self) -> int:
        return operator.index(self._concrete("index"))

    def __int__(self) -> int:
        return int(self._concrete("int"))

    def __float__(self) -> float:
        return float(self._concrete("float"))

    def __len__(self) -> int:
        return len(self._concrete("len"))

    def __ceil__(self) -> int:
        return math.ceil(self._concrete("ceil"))

    def __floor__(self) -> int:
        return math.floor(self._concrete("floor"))

    def __round__(self, ndigits: int | None = None) -> Any:
        return round(self._concrete("round"), ndigits)

    def __iter__(self) -> Iterator[fx.Proxy]:
        return iter([self[i] for i in range(len(self))])

    def __getattr__(self, k: str) -> Any:
        value = self.tracer.values.get(self.node)  # type: ignore[attr-defined]
        if isinstance(value, torch.Tensor) and k in ("device", "dtype", "is_cuda", "layout", "ndim"):
            return getattr(value, k)  # never a channel size: a constant in the graph
        return super().__getattr__(k)


class ConcreteTracer(RuleTracer):
    """Traces like :class:`RuleTracer` while evaluating every op on ``example_inputs`` (see the module docstring)."""

    def __init__(self, example_inputs: Any) -> None:
        super().__init__()
        self.example_inputs = example_inputs
        self.values: dict[fx.Node, Any] = {}
        self.guards: list[tuple[fx.Node, str]] = []
        self._placeholders = 0
        self._evaluating = False  # fx's patched Module.__getattr__/__call__ pass through while ops are evaluated

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict) -> Any:
        if self._evaluating:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def call_module(self, m: nn.Module, forward: Any, args: tuple, kwargs: dict) -> Any:
        if self._evaluating:
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _ConcreteProxy(node, self)

    def _value(self, a: Any) -> Any:
        return self.values[a.node] if isinstance(a, fx.Proxy) else a

    def _input(self, name: str) -> Any:
        inputs, index = self.example_inputs, self._placeholders
        self._placeholders += 1
        if isinstance(inputs, Mapping):
            return inputs.get(name.lstrip("*"))
        if isinstance(inputs, (tuple, list)):
            return inputs[index] if index < len(inputs) else None
        return inputs if index == 0 else None

    def _evaluate(self, kind: str, target: Any, args: tuple, kwargs: dict) -> Any:
        args = fx.node.map_aggregate(args, self._value)
        kwargs = fx.node.map_aggregate(kwargs, self._value)
        if kind == "get_attr":
            value: Any = self.root
            for part in str(target).split("."):
                value = getattr(value, part)  # fx's patched __getattr__ passes through (_evaluating)
            return value
        if kind == "call_function":
            fn = _batch_norm_eval if target is F.batch_norm else target
            return fn(*args, **kwargs)
        if kind == "call_method":
            return getattr(args[0], target)(*args[1:], **kwargs)
        if kind == "call_module":
            module = self.root.get_submodule(target)
            with _eval_mode(module):
                return module(*args, **kwargs)
        return None

    def create_proxy(self, kind: str, target: Any, args: tuple, kwargs: dict, name: str | None = None,
                     type_expr: Any = None, proxy_factory_fn: Any = None) -> fx.Proxy:
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        if kind == "placeholder":
            self.values[proxy.node] = self._input(str(target))
        elif kind != "output":
            self._evaluating = True
            try:
                with torch.no_grad(), untracked_reads():
                    self.values[proxy.node] = self._evaluate(kind, target, args, kwargs)
            finally:
                self._evaluating = False
        return proxy


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    modes = {m: m.training for m in module.modules()}
    try:
        module.eval()
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode


def _traced_through_buffers(model: nn.Module, is_leaf: Any, prefix: str = "") -> Iterator[torch.Tensor]:
    """Buffers of the modules whose forward the symbolic trace runs (a leaf module's forward never runs)."""
    yield from model.buffers(recurse=False)
    for name, child in model.named_children():
        qualified = f"{prefix}.{name}" if prefix else name
        if not is_leaf(child, qualified):
            yield from _traced_through_buffers(child, is_leaf, qualified)


@contextlib.contextmanager
def _buffers_kept(model: nn.Module, is_leaf: Any = None) -> Iterator[None]:
    """Buffers are put back as they were (Python in a traced forward may update BN statistics or counters); with
    ``is_leaf``, only those of the modules the symbolic trace runs (:func:`_traced_through_buffers`)."""
    buffers = model.buffers() if is_leaf is None else _traced_through_buffers(model, is_leaf)
    saved = [(b, b.detach().clone()) for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, value in saved:
                b.copy_(value)


# ops whose training flag changes values only, never shapes or which channels go where: the position of that flag
_TRAINING_ARG = {F.dropout: 2, F.dropout1d: 2, F.dropout2d: 2, F.dropout3d: 2, F.alpha_dropout: 2,
                 F.feature_alpha_dropout: 2, F.rrelu: 3}
_TRAINING_ARG_BY_NAME = {"torchvision.ops.stochastic_depth.stochastic_depth": 3}


def _training_arg(node: fx.Node) -> int | None:
    """Position of the training flag of a node calling one of the ops in ``_TRAINING_ARG``, else None."""
    if node.op != "call_function":
        return None
    target = node.target
    name = f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}"
    return _TRAINING_ARG.get(target, _TRAINING_ARG_BY_NAME.get(name))  # type: ignore[call-overload]


def trace(model: nn.Module, example_inputs: Any = None) -> tuple[fx.Graph, list[tuple[fx.Node, str]]]:
    """fx-trace ``model``; falls back to :class:`ConcreteTracer` when ``example_inputs`` are given and the plain
    trace fails. Returns the graph (its targets name ``model``'s submodules and attributes; no ``GraphModule`` is
    built, whose code generation costs more than the channel mapping on small models) and its guards (empty for a
    plain trace).
    """
    from .errors import TraceError

    fused = any(is_fused(m) for m in dict(model.named_modules()).values())
    tracer = RuleTracer(autowrap_functions=(stream_add,) if fused else ())  # a fused stream add is one op
    try:  # fx runs Python on real attributes while tracing (timm's `num_batches_tracked.add_(1)`): keep buffers
        with _buffers_kept(model, tracer.is_leaf_module), tracked_size_attrs(model, tracer.is_leaf_module):
            return tracer.trace(model), []
    except Exception as exc:  # fx raises many types (TraceError, TypeError, NotImplementedError...)
        first = exc
    if example_inputs is not None:
        concrete = ConcreteTracer(example_inputs)
        try:
            with _buffers_kept(model), tracked_size_attrs(model, concrete.is_leaf_module):
                graph = concrete.trace(model)
            return graph, concrete.guards
        except Exception as exc:
            first = exc
    raise TraceError(
        f"torch.fx could not trace {type(model).__name__}: {first}. Python control flow in forward that depends on "
        f"the data (not only on shapes) cannot be traced; wrap that part in a module and register a rule for it "
        f"(register_module_rule, see lightning_compress/pruning/README.md 'Custom ops')."
    ) from first


def runnable_train_graph(graph: fx.Graph) -> fx.Graph:
    """The train-mode graph with eval-mode batch norm and dropout, without in-place buffer updates (see module
    docstring)."""
    changed = False
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target is F.batch_norm:
            args = node.args
            stats = [args[i] if i < len(args) else node.kwargs.get(k) for i, k in ((1, "running_mean"),
                                                                                     (2, "running_var"))]
            if all(isinstance(s, fx.Node) for s in stats):
                changed |= _training_off(node, 5)
        elif (index := _training_arg(node)) is not None:
            changed |= _training_off(node, index)
        elif (node.op == "call_method" and str(node.target).endswith("_") and not node.users and node.args
              and isinstance(node.args[0], fx.Node) and node.args[0].op == "get_attr"):
            graph.erase_node(node)
            changed = True
    if changed:
        drop_unused_attrs(graph)
    return graph


def _training_off(node: fx.Node, index: int) -> bool:
    """Set the ``training`` argument of ``node`` (positional ``index`` or keyword) to False where it is given."""
    if len(node.args) > index:
        node.args = (*node.args[:index], False, *node.args[index + 1:])
    elif "training" in node.kwargs:
        node.kwargs = {**node.kwargs, "training": False}
    else:
        return False
    return True


def drop_unused_attrs(graph: fx.Graph) -> fx.Graph:
    """Remove get_attr nodes nothing uses (left by a removed buffer update) so equal graphs compare equal."""
    unused = [n for n in graph.nodes if n.op == "get_attr" and not n.users]
    for node in unused:
        graph.erase_node(node)
    return graph


def _size_reads(node: Any, picks: tuple = (), seen: set | None = None) -> set[tuple[fx.Node, tuple]]:
    """(tensor node, getitem chain on its shape) that ``node`` was computed from; an empty chain: any dim."""
    seen = set() if seen is None else seen
    if not isinstance(node, fx.Node) or (node, picks) in seen:
        return set()
    seen.add((node, picks))
    if node.op == "call_method" and node.target == "size":
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        return {(node.args[0], (dim,) if isinstance(dim, int) else picks)}
    if node.op == "call_function" and node.target is getattr and len(node.args) > 1 and node.args[1] == "shape":
        return {(node.args[0], picks)}
    if node.op == "call_function" and node.target is operator.getitem and isinstance(node.args[1], (int, slice)):
        index = node.args[1]
        pick = ("slice", index.start, index.stop, index.step) if isinstance(index, slice) else index
        return _size_reads(node.args[0], (pick, *picks), seen)
    if node.op == "call_method" and node.target in ("dim", "ndimension"):
        return set()
    out: set[tuple[fx.Node, tuple]] = set()
    for a in node.all_input_nodes:
        out |= _size_reads(a, (), seen)
    return out


def _picked_dims(picks: tuple, ndim: int) -> list[int]:
    """The dims a getitem chain selects from a shape (``x.shape[-2:][0]`` -> [ndim - 2]); all when unknown."""
    dims: Any = list(range(ndim))
    try:
        for p in picks:
            dims = dims[slice(*p[1:])] if isinstance(p, tuple) else [dims[p]]
    except (IndexError, TypeError):
        return list(range(ndim))
    return list(dims)


def _is_size_read(node: fx.Node) -> bool:
    return (node.op == "call_method" and node.target in ("size", "dim", "ndimension", "numel")) or (
        node.op == "call_function" and node.target is getattr and len(node.args) > 1
        and node.args[1] in ("shape", "ndim"))


def _value_sources(ctx: TraceContext, node: fx.Node, seen: set[fx.Node]) -> tuple[bool, set[fx.Node]]:
    """Whether ``node`` depends on tensor values (not only sizes), and the nearest tensors with channels it read."""
    if node in seen or _is_size_read(node):
        return False, set()
    seen.add(node)
    if node in ctx.ndims and isinstance(ctx.infos.get(node), (Carry, Opaque)):
        return True, {node}
    dependent, sources = node in ctx.ndims, set()
    for a in node.all_input_nodes:
        d, found = _value_sources(ctx, a, seen)
        dependent, sources = dependent or d, sources | found
    return dependent, sources


def freeze_guarded_channels(ctx: TraceContext, guards: list[tuple[fx.Node, str]]) -> None:
    """Freeze channels a followed Python branch depends on (pruning must not change the branch taken).

    A branch on sizes freezes the channel dims whose size it read (spatial sizes freeze nothing). A branch on
    tensor values (``if x.sum() > 0``) was followed for the example inputs only: the channels of the tensors it
    read are frozen and the branch is listed with the ops without a rule.
    """
    for node, why in guards:
        if why == "len":  # len(x) reads x.shape[0]; len(parts) of a split/chunk: its rule keeps the count
            reads = {(node, (0,))} if node in ctx.ndims else set()
        else:
            reads = _size_reads(node)
        for tensor, picks in reads:
            info, ndim = ctx.infos.get(tensor), ctx.ndims.get(tensor)
            if not isinstance(info, Carry) or ndim is None:
                continue
            if set(info.dims) & set(_picked_dims(picks, ndim)):
                ctx.uf.freeze(info.ids, f"Python control flow ({why}) on the size of a channel dim at {node.name}")
        dependent, sources = _value_sources(ctx, node, set()) if why != "len" else (False, set())
        if dependent:
            description = (f"Python control flow ({why}) on tensor values at {node.name}, followed for the example "
                           f"inputs only")
            for source in sources:
                ctx.freeze(ctx.infos[source], description)
            ctx.mark_unknown(f"control flow at {node.name}", description)
