"""The fused form of a pruned stream writer (``residual="select"``): the ``forward`` of the module holding the
residual add is rewritten with torch.fx so that the writer's output is added to the shortcut by one ``index_add``
(:func:`.boundaries.stream_add`) instead of being re-expanded by a hook first. When each form is used:
:mod:`.boundaries`.
"""

from __future__ import annotations

import copy
import operator
import warnings

import torch
from torch import fx, nn

from .boundaries import _FUSED_WRITERS, _REEXPAND_INDEX, _UNFUSED, REEXPAND, _reexpand, stream_add
from .rules import ElementwiseRule, get_module_rule
from .tracing import RuleTracer, _buffers_kept

_ADDS = {operator.add, torch.add}
_SUBS = {operator.sub, torch.sub, torch.subtract}


def fuse_writers(model: nn.Module, writers: list[str], fuse: bool = True) -> list[str]:
    """Give each writer (module names of ``model``, recorded by ``attach_reexpand(..., hook=False)``) its fused form
    where it can have one, else the hook (see the module docstring); returns the fused writers' names.

    A writer is looked for in the traced ``forward`` of its parent, then of the parent's parent, while its output is
    the traced module's output; innermost modules are rewritten first (an outer trace then runs their fused code).
    """
    modules = dict(model.named_modules())
    counts: dict[int, int] = {}
    for m in dict(model.named_modules(remove_duplicate=False)).values():
        counts[id(m)] = counts.get(id(m), 0) + 1
    pending = {w for w in writers if fuse and counts[id(modules[w])] == 1}  # a shared module: its other calls unseen
    fused: list[str] = []
    owners = sorted({w.rsplit(".", 1)[0] if "." in w else "" for w in pending}, key=_depth, reverse=True)
    while owners and pending:
        owner = owners.pop(0)
        mine = sorted(w for w in pending if _under(w, owner))
        if not mine:
            continue
        graph = _mode_free_graph(modules[owner])
        inner = dict(modules[owner].named_modules()) if graph is not None else {}
        done: list[str] = []
        for writer in mine:
            verdict = "up" if graph is None else _rewrite(graph, writer[len(owner) + 1:] if owner else writer,
                                                          modules[writer], inner)
            if verdict != "up" or not owner:
                pending.discard(writer)
            if verdict == "fused":
                done.append(writer)
        if done:
            _install(modules[owner], graph, [w[len(owner) + 1:] if owner else w for w in done])
            fused += done
        parent = owner.rsplit(".", 1)[0] if "." in owner else ""
        if owner and parent not in owners and any(_under(w, parent) for w in pending):
            owners.append(parent)
            owners.sort(key=_depth, reverse=True)
    for w in writers:
        if w not in fused:
            modules[w].register_forward_hook(_reexpand)
    return fused


def _depth(name: str) -> int:
    return name.count(".") + 1 if name else 0


def _under(name: str, owner: str) -> bool:
    return not owner or name.startswith(owner + ".")


def _mode_free_graph(owner: nn.Module) -> fx.Graph | None:
    """The fx graph of ``owner``'s forward when it traces, never reads ``training`` (the same code in train and eval
    mode), keeps no tensor made in forward, drops no result (fx records ``a += b`` as ``a + b``: an alias of ``a`` read
    later would differ) and traces through no hooked submodule; else ``None``."""
    modes = {m: m.training for m in owner.modules()}
    attrs, made = set(vars(owner)), set()
    tracer = RuleTracer(autowrap_functions=(stream_add,))
    try:
        graphs = []
        for training in (True, False):
            owner.train(training)
            with _buffers_kept(owner, tracer.is_leaf_module):
                graphs.append(tracer.trace(owner))
    except Exception:  # fx raises many types: an untraceable forward keeps the hooked form
        return None
    finally:
        for m, mode in modes.items():
            m.training = mode
        made = set(vars(owner)) - attrs  # fx stores tensors made in forward on the traced module: take them off
        for attr in made:
            delattr(owner, attr)
    graph, eval_graph = graphs
    if graph.python_code("self").src != eval_graph.python_code("self").src:
        return None  # forward differs by mode (it reads `self.training`)
    if any(n.op == "get_attr" and n.target in made for n in graph.nodes):
        return None  # such a constant would not follow .to(device)
    if any(n.op in ("call_function", "call_method") and not n.users and not _mutates(n) for n in graph.nodes):
        return None  # a result nothing reads: `a += b` where `a` is read under another name (fx adds out of place)
    called = {n.target for n in graph.nodes if n.op == "call_module"}
    for name, m in owner.named_modules():
        if name and name not in called and not tracer.is_leaf_module(m, name) and (
                m._forward_hooks or m._forward_pre_hooks):
            return None  # traced through: its hooks would be lost
    return graph


def _mutates(node: fx.Node) -> bool:
    """An in-place op (``x.add_(y)``, ``x[i] = y``): the graph keeps its effect even when nothing reads its result."""
    return node.target is operator.setitem or str(getattr(node.target, "__name__", node.target)).endswith("_")


def _rewrite(graph: fx.Graph, target: str, writer: nn.Module, modules: dict[str, nn.Module]) -> str:
    """Replace ``shortcut + f(writer(...))`` in ``graph`` by :func:`stream_add` (``f``: element-wise modules that keep
    zeros, which commute with re-expansion; ``modules``: the traced module's ``named_modules()``): ``"fused"``,
    ``"up"`` (the writer is not called here or its output is the graph's output: look in the module above) or
    ``"no"``."""
    calls = [n for n in graph.nodes if n.op == "call_module" and n.target == target]
    if not calls:
        return "up"
    if len(calls) > 1:
        return "no"
    out = calls[0]
    while len(out.users) == 1 and _keeps_zeros(next(iter(out.users)), modules):
        out = next(iter(out.users))
    if len(out.users) != 1:
        return "no"
    join = next(iter(out.users))
    if join.op == "output":
        return "up"
    other, alpha = _shortcut_of(join, out)
    if other is None:
        return "no"
    dim, size = getattr(writer, REEXPAND)
    with graph.inserting_before(join):
        index = graph.get_attr(f"{target}.{_REEXPAND_INDEX}")
        node = graph.call_function(stream_add, (other, out, index, dim, size, alpha))
    join.replace_all_uses_with(node)
    graph.erase_node(join)
    return "fused"


def _keeps_zeros(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """``node`` calls an element-wise module (activation, dropout, identity) that maps 0 to 0 in train and eval mode."""
    module = modules.get(node.target) if node.op == "call_module" else None
    if module is None or not isinstance(get_module_rule(module), ElementwiseRule) or len(node.args) != 1:
        return False
    training = module.training
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return all(not module.train(mode)(torch.zeros(1, 1, 2, 2)).any() for mode in (True, False))
    except Exception:  # a module that needs other shapes: not used for fusion
        return False
    finally:
        module.train(training)


def _shortcut_of(join: fx.Node, call: fx.Node) -> tuple[fx.Node | None, int]:
    """The other operand of ``join`` when it is ``other + call``, ``call + other`` (also ``.add``; in place only on
    ``call``: ``call += other``, ``call.add_(other)``) or ``other - call``, and the sign of ``call``; else
    ``(None, 0)`` (an in-place add on ``other`` changes ``other`` for its later users)."""
    if join.kwargs or len(join.args) != 2 or not all(isinstance(a, fx.Node) for a in join.args):
        return None, 0
    a, b = join.args
    if a is b:
        return None, 0
    if join.op == "call_function" and join.target in _ADDS or join.op == "call_method" and join.target == "add":
        return (b if a is call else a), 1
    in_place = join.op == "call_method" and join.target == "add_" or join.op == "call_function" and (
        join.target is operator.iadd)
    if in_place and a is call:
        return b, 1
    if join.op == "call_function" and join.target in _SUBS and b is call:
        return a, -1
    return None, 0


def _install(owner: nn.Module, graph: fx.Graph, writers: list[str]) -> None:
    """Give ``owner`` a subclass of its class (same name) whose ``forward`` is ``graph``'s code; ``writers``: the
    writers it fused (names below ``owner``), from which pickling re-makes it."""
    forward = type(fx.GraphModule(owner, graph)).forward
    base = getattr(type(owner), _UNFUSED, type(owner))
    writers = [*getattr(type(owner), _FUSED_WRITERS, ()), *writers]
    owner.__class__ = type(base.__name__, (base,), {
        "forward": forward, _UNFUSED: base, _FUSED_WRITERS: tuple(writers), "__doc__": base.__doc__,
        "__module__": base.__module__, "__qualname__": base.__qualname__, "__reduce_ex__": _reduce_fused,
        "__deepcopy__": _deepcopy_fused})


def _reduce_fused(module: nn.Module, protocol: int) -> tuple:
    """Pickle a rewritten module as its original class, its state and its writers: unpickling fuses it again (the
    generated forward itself is not picklable)."""
    cls = type(module)
    return _unpickle_fused, (getattr(cls, _UNFUSED), getattr(cls, _FUSED_WRITERS), module.__getstate__())


def _unpickle_fused(base: type, writers: tuple[str, ...], state: dict) -> nn.Module:
    module = base.__new__(base)
    module.__setstate__(state)
    fuse_writers(module, list(writers))
    return module


def _deepcopy_fused(module: nn.Module, memo: dict) -> nn.Module:
    """``copy.deepcopy`` keeping the rewritten class (no re-fusing)."""
    new = type(module).__new__(type(module))
    memo[id(module)] = new
    new.__dict__.update(copy.deepcopy(vars(module), memo))
    return new
