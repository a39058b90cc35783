"""Choosing channels to remove: per-group ratios, an importance, and the count (per group or one global threshold).

The counts and the threshold are :mod:`lightning_compress.functional.pruning`'s; the scores are the importance's
(:mod:`.importance`). ``select_channels`` (:mod:`.api`) and every pruning callback go through :func:`select_on_graph`
(and, for a MACs or latency target, :func:`.budget.fit_budget`, which calls it), so a callback's plan is the plan
``select_channels`` gives with the same arguments.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

from torch import nn

from lightning_compress.functional.pruning import ROUNDINGS, THRESHOLD_RULES, global_threshold, keep_count

from .errors import check_positive_int, check_ratio
from .graph import ChannelGraph
from .importance import BNScale, GeometricMedian, group_scores, remove_lowest, resolve_importance
from .masking import ChannelMask
from .plan import PruningPlan

STRATEGIES = ("independent", "greedy")


def ignored_names(model: nn.Module, ignored_layers: Any) -> set[str]:
    """Module names of ``model`` matched by ``ignored_layers`` (names, globs or modules); every entry must match."""
    if isinstance(ignored_layers, (str, nn.Module)):
        ignored_layers = [ignored_layers]
    if not isinstance(ignored_layers, (list, tuple, set, frozenset)):
        raise TypeError(
            f"`ignored_layers` must be a sequence of module names/globs or modules, got {ignored_layers!r}.")
    named = list(dict(model.named_modules()).items())
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
        names = [n for n in dict(model.named_modules()) if n]
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
                         global_pruning: Any, max_pruning_ratio: Any = 1.0) -> None:
    """The shared argument checks of ``select_channels`` and the callbacks (raised before anything happens)."""
    check_positive_int("min_channels", min_channels)
    check_max_pruning_ratio(max_pruning_ratio)
    check_positive_int("round_to", round_to)
    for name, value, allowed in (("rounding", rounding, ROUNDINGS), ("strategy", strategy, STRATEGIES),
                                 ("threshold", threshold, THRESHOLD_RULES)):
        if value not in allowed:
            raise ValueError(f"`{name}` must be one of {allowed}, got {value!r}.")
    if not isinstance(global_pruning, bool):
        raise TypeError(f"`global_pruning` must be a bool, got {global_pruning!r}.")


def check_max_pruning_ratio(value: Any) -> float:
    """``max_pruning_ratio`` as a float in ``(0, 1]``, or a TypeError/ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`max_pruning_ratio` must be a number in (0, 1], got {value!r}.")
    if not 0 < value <= 1:
        raise ValueError(f"`max_pruning_ratio` must be in (0, 1] (1 = no cap), got {value!r}.")
    return float(value)


def select_on_graph(graph: ChannelGraph, model: nn.Module, pruning_ratio: Any, importance: Any = "l1",
                    ignored_layers: Any = (), global_pruning: bool = False, min_channels: int = 1,
                    round_to: int = 1, rounding: str = "keep", strategy: str = "independent",
                    threshold: str = "count", max_pruning_ratio: float = 1.0) -> PruningPlan:
    """The plan of :func:`~.api.select_channels` at a fixed ``pruning_ratio`` on an existing graph (see there; for a
    MACs or latency target: :func:`~.budget.fit_budget`)."""
    scorer = resolve_importance(importance)
    check_selection_args(min_channels, round_to, rounding, strategy, threshold, global_pruning, max_pruning_ratio)
    if global_pruning and isinstance(scorer, GeometricMedian) and scorer.norm_ratio > 0:
        raise ValueError("`global_pruning` ranks scores across groups; FPGM-mix (`norm_ratio` > 0) is a per-group "
                         "two-step choice. HINT: use global_pruning=False.")
    if global_pruning and strategy == "greedy":
        raise ValueError("`strategy='greedy'` scores layers one after the other; it needs global_pruning=False.")
    ratios = group_ratios(graph, model, pruning_ratio, ignored_layers)
    graph.check(model)
    if not global_pruning:
        plan = select_counts(graph, model, removal_counts(graph, ratios, min_channels, round_to, rounding,
                                                          max_pruning_ratio), scorer, strategy)
        _warn_if_nothing_scored(plan, graph, model, ratios, scorer)
        return plan
    removed: dict[str, list[int]] = {}
    normalize = not isinstance(scorer, BNScale)  # BN scales share one scale: the paper's raw threshold
    for scope in _scopes(graph, pruning_ratio, ratios):
        scores = {gid: s for gid in scope if (s := group_scores(scorer, graph.group(gid), model)) is not None}
        if scores:
            removed.update(global_threshold(scores, ratios[next(iter(scores))], min_channels, round_to, threshold,
                                            normalize, max_pruning_ratio))
    plan = graph.plan(removed)
    _warn_if_nothing_scored(plan, graph, model, ratios, scorer)
    return plan


def _warn_if_nothing_scored(plan: PruningPlan, graph: ChannelGraph, model: nn.Module, ratios: Mapping[str, float],
                            scorer: Any) -> None:
    """Warn when a non-zero ratio removed nothing because ``scorer`` could score none of the groups it applies to
    (``bn_scale`` on a network whose channels no batch norm normalises), instead of a silent empty plan."""
    wanted = [gid for gid, ratio in ratios.items() if ratio > 0]
    if not plan.is_empty or not wanted:
        return
    if any(group_scores(scorer, graph.group(gid), model) is not None for gid in wanted):
        return  # scored, but the ratio is too small for the group sizes
    hint = (" (bn_scale needs a batch norm, a `_BatchNorm` or F.batch_norm with module parameters, on every channel "
            "of a group)" if isinstance(scorer, BNScale) else "")
    warnings.warn(f"the pruning ratio removes 0 channels: importance {type(scorer).__name__} could score none of the "
                  f"{len(wanted)} groups it applies to{hint}.", stacklevel=3)


def removal_counts(graph: ChannelGraph, ratios: Mapping[str, float], min_channels: int = 1, round_to: int = 1,
                   rounding: str = "keep", max_pruning_ratio: float = 1.0) -> dict[str, int]:
    """Channels each group loses at its ratio (``ratios`` from :func:`group_ratios`) when every group is counted on
    its own (:func:`keep_count`); groups losing nothing are left out. Pure arithmetic: no scores."""
    counts: dict[str, int] = {}
    for gid, ratio in ratios.items():
        size = graph.group(gid).size
        n = size - keep_count(size, ratio, min_channels, round_to, rounding, max_pruning_ratio)
        if n > 0:
            counts[gid] = n
    return counts


def select_counts(graph: ChannelGraph, model: nn.Module, counts: Mapping[str, int], importance: Any = "l1",
                  strategy: str = "independent") -> PruningPlan:
    """The plan removing ``counts[group]`` channels of each group, chosen by ``importance`` within the group (groups
    it cannot score are left whole); ``strategy="greedy"`` scores the groups in graph order, each without the input
    kernels of the channels removed before it (Li et al. 3.3)."""
    scorer = resolve_importance(importance)
    if strategy not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}, got {strategy!r}.")
    removed: dict[str, list[int]] = {}
    scoring = copy.deepcopy(model) if strategy == "greedy" else model
    for g in graph.groups:
        n = counts.get(g.id, 0)
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < g.size:
            raise ValueError(f"`counts[{g.id!r}]` must be an int in [0, {g.size}), got {n!r}.")
        picks = remove_lowest(scorer, g, scoring, n) if n > 0 else None
        if not picks:
            continue
        removed[g.id] = picks  # graph.plan sorts and checks them
        if strategy == "greedy":  # Li et al. 3.3: later layers are scored without the kernels of removed maps
            ChannelMask(scoring, graph.plan({g.id: picks}), include_inputs=True, slots={"in"}).apply()
    unknown = set(counts) - {g.id for g in graph.groups}
    if unknown:
        raise ValueError(f"`counts` names groups the graph does not have: {sorted(unknown)}.")
    return graph.plan(removed)


def _short(names: list[str], limit: int = 30) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
