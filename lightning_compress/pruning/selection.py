"""Choosing channels to remove: per-group ratios, an importance, and the count (per group or one global threshold).

The counts and the threshold are :mod:`lightning_compress.functional.pruning`'s; the scores are the importance's
(:mod:`.importance`). ``select_channels`` and every pruning callback go through :func:`select_on_graph`, so a callback's
plan is the plan ``select_channels`` gives with the same arguments.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

from torch import nn

from lightning_compress.functional.pruning import ROUNDINGS, THRESHOLD_RULES, global_threshold, keep_count

from .errors import check_positive_int, check_ratio
from .graph import ChannelGraph, build_channel_graph
from .importance import BNScale, GeometricMedian, group_scores, remove_lowest, resolve_importance
from .masking import ChannelMask
from .plan import PruningPlan
from .streams import check_residual

STRATEGIES = ("independent", "greedy")


def ignored_names(model: nn.Module, ignored_layers: Any) -> set[str]:
    """Module names of ``model`` matched by ``ignored_layers`` (names, globs or modules); every entry must match."""
    if isinstance(ignored_layers, (str, nn.Module)):
        ignored_layers = [ignored_layers]
    if not isinstance(ignored_layers, (list, tuple, set, frozenset)):
        raise TypeError(
            f"`ignored_layers` must be a sequence of module names/globs or modules, got {ignored_layers!r}.")
    named = list(model.named_modules())
    by_id = {id(m): n for n, m in named}
    names: set[str] = set()
    for item in ignored_layers:
        if isinstance(item, nn.Module):
            if id(item) not in by_id:
                raise ValueError(f"`ignored_layers` contains a module that is not part of the model: {item!r}.")
            names.add(by_id[id(item)])
        elif isinstance(item, str):
            hits = {n for n, _ in named if fnmatchcase(n, item)}
            if not hits:
                raise ValueError(f"`ignored_layers` glob {item!r} matches no module of the model. Available: "
                                 f"{_short([n for n, _ in named if n])}.")
            names |= hits
        else:
            raise TypeError(f"`ignored_layers` entries must be str or nn.Module, got {item!r}.")
    return names


def eligible_groups(graph: ChannelGraph, model: nn.Module, ignored_layers: Any = ()) -> list[str]:
    """Ids of the prunable groups none of whose output-side members is ignored, in graph order."""
    ignored = ignored_names(model, ignored_layers)
    return [g.id for g in graph.prunable_groups if not any(m.module in ignored and m.slot != "in" for m in g.members)]


def group_ratios(graph: ChannelGraph, model: nn.Module, pruning_ratio: Any, ignored_layers: Any = ()
                 ) -> dict[str, float]:
    """Ratio per prunable group, in graph order. With a dict of globs, a group takes the first glob (in dict order)
    that matches one of its owners (producers, else norms); groups matched by none, ignored groups and ratio-0 groups
    are left out."""
    ratio = check_ratio(pruning_ratio)
    if isinstance(ratio, dict):
        names = [n for n, _ in model.named_modules() if n]
        for glob in ratio:
            if not any(fnmatchcase(n, glob) for n in names):
                raise ValueError(f"`pruning_ratio` glob {glob!r} matches no module of the model. Available: "
                                 f"{_short(names)}.")
    out: dict[str, float] = {}
    for gid in eligible_groups(graph, model, ignored_layers):
        g = graph.group(gid)
        if isinstance(ratio, dict):
            r = next((v for glob, v in ratio.items() if any(fnmatchcase(p, glob) for p in g.owners)), None)
        else:
            r = ratio
        if r:
            out[g.id] = r
    return out


def _scopes(graph: ChannelGraph, pruning_ratio: Any, ratios: dict[str, float]) -> list[list[str]]:
    """Global ranking scopes: one for a float ratio, one per glob for a dict."""
    if not isinstance(pruning_ratio, Mapping):
        return [list(ratios)]
    scopes: dict[str, list[str]] = {}
    for gid in ratios:
        owners = graph.group(gid).owners
        glob = next(gl for gl in pruning_ratio if any(fnmatchcase(p, gl) for p in owners))
        scopes.setdefault(glob, []).append(gid)
    return list(scopes.values())


def check_selection_args(min_channels: Any, round_to: Any, rounding: Any, strategy: Any, threshold: Any,
                         global_pruning: Any) -> None:
    """The shared argument checks of ``select_channels`` and the callbacks (raised before anything happens)."""
    check_positive_int("min_channels", min_channels)
    check_positive_int("round_to", round_to)
    for name, value, allowed in (("rounding", rounding, ROUNDINGS), ("strategy", strategy, STRATEGIES),
                                 ("threshold", threshold, THRESHOLD_RULES)):
        if value not in allowed:
            raise ValueError(f"`{name}` must be one of {allowed}, got {value!r}.")
    if not isinstance(global_pruning, bool):
        raise TypeError(f"`global_pruning` must be a bool, got {global_pruning!r}.")


def select_on_graph(graph: ChannelGraph, model: nn.Module, pruning_ratio: Any, importance: Any = "l1",
                    ignored_layers: Any = (), global_pruning: bool = False, min_channels: int = 1,
                    round_to: int = 1, rounding: str = "keep", strategy: str = "independent",
                    threshold: str = "count") -> PruningPlan:
    """The plan of :func:`select_channels` on an existing graph (see there)."""
    scorer = resolve_importance(importance)
    check_selection_args(min_channels, round_to, rounding, strategy, threshold, global_pruning)
    if global_pruning and isinstance(scorer, GeometricMedian) and scorer.norm_ratio > 0:
        raise ValueError("`global_pruning` ranks scores across groups; FPGM-mix (`norm_ratio` > 0) is a per-group "
                         "two-step choice. HINT: use global_pruning=False.")
    if global_pruning and strategy == "greedy":
        raise ValueError("`strategy='greedy'` scores layers one after the other; it needs global_pruning=False.")
    ratios = group_ratios(graph, model, pruning_ratio, ignored_layers)
    graph.check(model)
    removed: dict[str, list[int]] = {}
    if global_pruning:
        normalize = not isinstance(scorer, BNScale)  # BN scales share one scale: the paper's raw threshold
        for scope in _scopes(graph, pruning_ratio, ratios):
            scores = {gid: s for gid in scope if (s := group_scores(scorer, graph.group(gid), model)) is not None}
            if scores:
                removed.update(global_threshold(scores, ratios[next(iter(scores))], min_channels, round_to,
                                                threshold, normalize))
        return graph.plan(removed)
    scoring = copy.deepcopy(model) if strategy == "greedy" else model
    for gid, ratio in ratios.items():
        group = graph.group(gid)
        n = group.size - keep_count(group.size, ratio, min_channels, round_to, rounding)
        picks = remove_lowest(scorer, group, scoring, n) if n > 0 else None
        if not picks:
            continue
        removed[gid] = sorted(int(p) for p in picks)
        if strategy == "greedy":  # Li et al. 3.3: later layers are scored without the kernels of removed maps
            ChannelMask(scoring, graph.plan({gid: picks}), include_inputs=True, slots={"in"}).apply()
    return graph.plan(removed)


def select_channels(model: nn.Module, example_inputs: Any, pruning_ratio: float | Mapping[str, float],
                    importance: Any = "l1", ignored_layers: Any = (), global_pruning: bool = False,
                    min_channels: int = 1, round_to: int = 1, strict: bool = False,
                    graph: ChannelGraph | None = None, residual: str = "couple", rounding: str = "keep",
                    strategy: str = "independent", threshold: str = "count") -> PruningPlan:
    """Choose channels to remove; changes nothing.

    Args:
        pruning_ratio: float in [0, 1) (of each group's channels, or of all channels with ``global_pruning``), or
            ``{module-name glob: float}``: a group is pruned only if one of its producers (else its norms) matches a
            glob; the first matching glob wins.
        importance: ``"l1"``, ``"l2"``, ``"fpgm"``, ``"bn_scale"``, ``"random"``, an importance object
            (:class:`~.importance.Magnitude`, ``GeometricMedian``, ``BNScale``, ``Random``) or
            ``callable(group, model) -> scores`` (higher = keep).
        ignored_layers: names, globs or modules whose output width must not change.
        global_pruning: one threshold over all groups' scores (Network Slimming) instead of a count per group.
        min_channels, round_to: every group keeps at least ``min_channels``, rounded up to a multiple of ``round_to``.
        residual: ``"couple"`` (a residual stream and its writers/readers are one group) or ``"select"`` (each
            layer on its own; the stream keeps its width). See :func:`build_channel_graph`.
        rounding: ``"keep"`` keeps ``floor(n * (1 - ratio))`` (Li et al.'s code), ``"remove"`` removes
            ``floor(n * ratio)`` (the FPGM authors' code).
        strategy: ``"independent"`` or ``"greedy"`` (Li et al. 3.3: a layer is scored without the kernels of the
            feature maps already removed upstream).
        threshold: with ``global_pruning``: ``"count"`` (exactly ``floor(N * ratio)``) or ``"authors_code"``
            (Network Slimming's ``<= sorted[int(N * ratio)]``).
        graph: a graph from :func:`build_channel_graph` to skip tracing (its ``residual`` must match).
    """
    check_ratio(pruning_ratio)
    resolve_importance(importance)
    check_residual(residual)
    check_selection_args(min_channels, round_to, rounding, strategy, threshold, global_pruning)
    if graph is None:
        graph = build_channel_graph(model, example_inputs, strict=strict, residual=residual)
    elif graph.residual != residual:
        raise ValueError(f"`graph` was built with residual={graph.residual!r}, got residual={residual!r}.")
    return select_on_graph(graph, model, pruning_ratio, importance, ignored_layers, global_pruning, min_channels,
                           round_to, rounding, strategy, threshold)


def _short(names: list[str], limit: int = 30) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
