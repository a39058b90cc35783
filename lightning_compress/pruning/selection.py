"""Choosing channels to remove: per-group ratios, importance ranking (local or global), floors and rounding."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import nn

from .errors import check_positive_int, check_ratio
from .graph import ChannelGraph, ChannelGroup, build_channel_graph
from .importance import IMPORTANCES
from .plan import PruningPlan


def _check_importance(importance: Any) -> Callable:
    if isinstance(importance, str):
        if importance not in IMPORTANCES:
            raise ValueError(f"`importance` must be one of {sorted(IMPORTANCES)} or a callable, got {importance!r}.")
        return IMPORTANCES[importance]
    if callable(importance):
        return importance
    raise TypeError(f"`importance` must be one of {sorted(IMPORTANCES)} or a callable, got {importance!r}.")


def _ignored_names(model: nn.Module, ignored_layers: Any) -> set[str]:
    if isinstance(ignored_layers, (str, nn.Module)):
        ignored_layers = [ignored_layers]
    if not isinstance(ignored_layers, (Sequence, set, frozenset)):
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
                raise ValueError(f"`ignored_layers` glob {item!r} matches no module of the model.")
            names |= hits
        else:
            raise TypeError(f"`ignored_layers` entries must be str or nn.Module, got {item!r}.")
    return names


def group_ratios(graph: ChannelGraph, model: nn.Module, pruning_ratio: Any, ignored_layers: Any = ()
                 ) -> dict[str, float]:
    """Ratio per prunable group. With a dict of globs, a group takes the first glob (in dict order) that matches
    one of its producers; groups matched by none, ignored groups and ratio-0 groups are left out."""
    ratio = check_ratio(pruning_ratio)
    ignored = _ignored_names(model, ignored_layers)
    names = [n for n, _ in model.named_modules()]
    if isinstance(ratio, dict):
        for glob in ratio:
            if not any(fnmatchcase(n, glob) for n in names):
                raise ValueError(f"`pruning_ratio` glob {glob!r} matches no module of the model.")
    out: dict[str, float] = {}
    for g in graph.prunable_groups:
        if any(m.module in ignored and m.slot != "in" for m in g.members):
            continue
        if isinstance(ratio, dict):
            r = next((v for glob, v in ratio.items() if any(fnmatchcase(p, glob) for p in g.producers)), None)
        else:
            r = ratio
        if r:
            out[g.id] = r
    return out


def _group_scopes(graph: ChannelGraph, pruning_ratio: Any, ratios: dict[str, float]) -> dict[Any, list[str]]:
    """Global ranking scopes: one for a float ratio, one per glob for a dict."""
    if not isinstance(pruning_ratio, Mapping):
        return {None: list(ratios)}
    scopes: dict[Any, list[str]] = {}
    for gid in ratios:
        producers = graph.group(gid).producers
        glob = next(gl for gl in pruning_ratio if any(fnmatchcase(p, gl) for p in producers))
        scopes.setdefault(glob, []).append(gid)
    return scopes


def keep_count(size: int, ratio: float, min_channels: int, round_to: int) -> int:
    """Channels kept by one group: floor(size * (1 - ratio)), rounded up to ``round_to``, at least ``min_channels``."""
    keep = math.floor(size * (1.0 - ratio) + 1e-9)
    if round_to > 1:
        keep = math.ceil(keep / round_to) * round_to
    return min(size, max(keep, min_channels, 1))


def _scores(group: ChannelGroup, model: nn.Module, fn: Callable) -> torch.Tensor | None:
    scores = fn(group, model)
    if scores is None:
        return None
    scores = torch.as_tensor(scores).detach().float().flatten().cpu()
    if scores.numel() != group.size:
        raise ValueError(f"`importance` must return {group.size} scores for group {group.id!r}, got "
                         f"{scores.numel()}.")
    return scores


def select_on_graph(graph: ChannelGraph, model: nn.Module, pruning_ratio: Any, importance: Any = "l1",
                    ignored_layers: Any = (), global_pruning: bool = False, min_channels: int = 1,
                    round_to: int = 1) -> PruningPlan:
    fn = _check_importance(importance)
    check_positive_int("min_channels", min_channels)
    check_positive_int("round_to", round_to)
    if not isinstance(global_pruning, bool):
        raise TypeError(f"`global_pruning` must be a bool, got {global_pruning!r}.")
    ratios = group_ratios(graph, model, pruning_ratio, ignored_layers)
    graph.check(model)
    scores = {gid: _scores(graph.group(gid), model, fn) for gid in ratios}
    scores = {gid: s for gid, s in scores.items() if s is not None}
    removed: dict[str, list[int]] = {}
    if not global_pruning:
        for gid, s in scores.items():
            size = graph.group(gid).size
            n_remove = size - keep_count(size, ratios[gid], min_channels, round_to)
            if n_remove > 0:
                removed[gid] = torch.argsort(s, stable=True)[:n_remove].tolist()
    else:
        paper = importance == "bn_scale"
        for scope in _group_scopes(graph, pruning_ratio, ratios).values():
            gids = [g for g in scope if g in scores]
            if gids:
                ratio = ratios[gids[0]]
                removed.update(_global(graph, gids, scores, ratio, min_channels, round_to, paper))
    return graph.plan(removed)


def _global(graph: ChannelGraph, gids: list[str], scores: dict[str, torch.Tensor], ratio: float,
            min_channels: int, round_to: int, raw_threshold: bool) -> dict[str, list[int]]:
    """One ranking over several groups.

    Default: scores are divided by their group's mean (so groups of different fan-in compete on a relative scale)
    and the ``floor(N * ratio)`` lowest are removed. ``raw_threshold`` (bn_scale): Network Slimming's rule on raw
    scores, ``thre = sorted(all)[int(N * ratio)]`` and every channel with score <= thre is removed.
    Then every group keeps at least ``min_channels`` (its best ones) and is rounded up to ``round_to``.
    """
    flat, owner, pos = [], [], []
    for gid in gids:
        s = scores[gid]
        if not raw_threshold:
            mean = s.mean()
            s = s / mean if mean > 0 else s
        flat.append(s)
        owner += [gid] * len(s)
        pos += list(range(len(s)))
    allv = torch.cat(flat)
    n = len(allv)
    chosen: dict[str, list[int]] = {gid: [] for gid in gids}
    if ratio <= 0:
        return {}
    if raw_threshold:
        thre = torch.sort(allv).values[int(n * ratio)]
        picks = torch.nonzero(allv <= thre).flatten().tolist()
    else:
        picks = torch.argsort(allv, stable=True)[: math.floor(n * ratio + 1e-9)].tolist()
    for i in picks:
        chosen[owner[i]].append(pos[i])
    out: dict[str, list[int]] = {}
    for gid, rem in chosen.items():
        size = graph.group(gid).size
        s = scores[gid]
        keep = size - len(rem)
        target = max(keep, min_channels, 1)
        if round_to > 1:
            target = math.ceil(target / round_to) * round_to
        target = min(size, target)
        if target > keep:  # give back the best-scored removed channels
            rem = sorted(rem, key=lambda p: float(s[p]))[: size - target]
        if rem:
            out[gid] = sorted(rem)
    return out


def select_channels(model: nn.Module, example_inputs: Any, pruning_ratio: float | Mapping[str, float],
                    importance: str | Callable = "l1", ignored_layers: Any = (), global_pruning: bool = False,
                    min_channels: int = 1, round_to: int = 1, strict: bool = False,
                    graph: ChannelGraph | None = None) -> PruningPlan:
    """Choose channels to remove; changes nothing.

    ``pruning_ratio``: float in [0, 1) (fraction of each group's channels, or of all channels with
    ``global_pruning``) or {module-name glob: float}: a group is pruned only if one of its producers (conv/linear
    output side) matches a glob; the first matching glob wins. ``importance``: "l1", "l2", "fpgm", "bn_scale",
    "random" or ``callable(group, model) -> scores`` (higher = keep). ``ignored_layers``: names, globs or modules
    whose output width must not change. Pass ``graph`` (from :func:`build_channel_graph`) to skip tracing.
    """
    check_ratio(pruning_ratio)
    _check_importance(importance)
    check_positive_int("min_channels", min_channels)
    check_positive_int("round_to", round_to)
    if graph is None:
        graph = build_channel_graph(model, example_inputs, strict=strict)
    return graph.select(model, pruning_ratio, importance, ignored_layers, global_pruning, min_channels, round_to)
