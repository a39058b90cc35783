"""``select_channels``: the engine's entry point for choosing channels, at a fixed ratio or to a budget.

It validates every argument, traces the model (unless given a graph) and hands over to
:func:`.selection.select_on_graph` (a fixed ``pruning_ratio``) or :func:`.budget.fit_budget` (``target_macs`` /
``target_latency_ms``). The pruning callbacks call those two directly on their own graph, with the same arguments.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from torch import nn

from .alignment import AUTO, check_round_to, choose_round_to
from .budget import check_amount, fit_budget
from .graph import ChannelGraph, build_channel_graph
from .importance import resolve_importance
from .plan import PruningPlan
from .selection import check_selection_args, select_on_graph
from .streams import check_residual


def select_channels(model: nn.Module, example_inputs: Any, pruning_ratio: float | Mapping[str, float] | None = None,
                    importance: Any = "l1", ignored_layers: Any = (), global_pruning: bool = False,
                    min_channels: int = 1, round_to: int | str = 1, strict: bool = False,
                    graph: ChannelGraph | None = None, residual: str = "couple", rounding: str = "keep",
                    strategy: str = "independent", threshold: str = "count", target_macs: float | None = None,
                    target_latency_ms: float | None = None, latency_batch_size: int = 1,
                    max_pruning_ratio: float = 1.0) -> PruningPlan:
    """Choose channels to remove; changes nothing.

    Args:
        pruning_ratio: float in [0, 1) (of each group's channels, or of all channels with ``global_pruning``), or
            ``{module-name glob: float}``: a group is pruned only if one of its producers (else its norms) matches a
            glob; the first matching glob wins. With a target: ``None`` (the one rate is searched) or a dict (its
            rates are scaled by one common factor).
        importance: ``"l1"``, ``"l2"``, ``"fpgm"``, ``"bn_scale"``, ``"random"``, an importance object
            (:class:`~.importance.Magnitude`, ``GeometricMedian``, ``BNScale``, ``Random``) or
            ``callable(group, model) -> scores`` (higher = keep).
        ignored_layers: names, globs or modules whose output width must not change.
        global_pruning: one threshold over all groups' scores (Network Slimming) instead of a count per group.
        min_channels, round_to: every group keeps at least ``min_channels``, rounded up to a multiple of ``round_to``.
            ``round_to="auto"``: the plan at each of ``round_to`` 1, 8, 16 is timed on the model's device at
            ``latency_batch_size`` and the fastest is taken when measurably faster than 1
            (:func:`.alignment.choose_round_to`, which also returns what was measured; here it is logged at INFO).
        max_pruning_ratio: no group loses more than this fraction of its channels (Torch-Pruning's name; 1 = no
            cap). Under ``global_pruning`` the channels a capped group keeps are taken from the next-lowest scores
            of the other groups, so the global count still goes.
        residual: ``"couple"`` (a residual stream and its writers/readers are one group) or ``"select"`` (each
            layer on its own; the stream keeps its width). See :func:`build_channel_graph`.
        rounding: ``"keep"`` keeps ``floor(n * (1 - ratio))`` (Li et al.'s code), ``"remove"`` removes
            ``floor(n * ratio)`` (the FPGM authors' code).
        strategy: ``"independent"`` or ``"greedy"`` (Li et al. 3.3: a layer is scored without the kernels of the
            feature maps already removed upstream).
        threshold: with ``global_pruning``: ``"count"`` (exactly ``floor(N * ratio)``) or ``"authors_code"``
            (Network Slimming's ``<= sorted[int(N * ratio)]``).
        graph: a graph from :func:`build_channel_graph` to skip tracing (its ``residual`` must match).
        target_macs: instead of ``pruning_ratio``: MACs per image the pruned network may have, a fraction (<= 1) of
            the unpruned MACs (0.5 = half) or an absolute count (> 1); met within 1% below it (see
            :mod:`.budget`: the widths may then deviate from a uniform rate by a few channels in some groups).
        target_latency_ms: instead of ``pruning_ratio``: the median latency (ms) of one forward pass of
            ``latency_batch_size`` copies of ``example_inputs`` on the model's device
            (:func:`~lightning_compress.cost.measure_latency`).
        latency_batch_size: the batch timed for ``target_latency_ms`` and ``round_to="auto"``.

    Returns:
        The plan. For the ratio found and the MACs / latency reached, call :func:`.budget.fit_budget` (same
        arguments, on a graph): it returns ``(plan, budget)``.

    Raises:
        TypeError / ValueError: a bad argument (named), or none or two of ``pruning_ratio`` / ``target_macs`` /
            ``target_latency_ms``; a target below the smallest network the method reaches.
    """
    target = check_amount(pruning_ratio, target_macs, target_latency_ms, latency_batch_size)
    resolve_importance(importance)
    check_residual(residual)
    check_selection_args(min_channels, 1 if check_round_to(round_to) == AUTO else round_to, rounding, strategy,
                         threshold, global_pruning, max_pruning_ratio)
    if graph is None:
        graph = build_channel_graph(model, example_inputs, strict=strict, residual=residual)
    elif graph.residual != residual:
        raise ValueError(f"`graph` was built with residual={graph.residual!r}, got residual={residual!r}.")
    if round_to == AUTO:
        args = {"importance": importance, "ignored_layers": ignored_layers, "global_pruning": global_pruning,
                "min_channels": min_channels, "graph": graph, "residual": residual, "rounding": rounding,
                "strategy": strategy, "threshold": threshold, "target_macs": target_macs,
                "target_latency_ms": target_latency_ms, "latency_batch_size": latency_batch_size,
                "max_pruning_ratio": max_pruning_ratio}
        choice = choose_round_to(model, example_inputs, lambda m: select_channels(
            model, example_inputs, pruning_ratio, round_to=m, **args), batch_size=latency_batch_size)
        logging.getLogger(__name__).info("select_channels: round_to='auto' chose %s", choice.summary())
        return choice.plan
    method = {"importance": importance, "ignored_layers": ignored_layers, "global_pruning": global_pruning,
              "min_channels": min_channels, "round_to": round_to, "rounding": rounding, "strategy": strategy,
              "threshold": threshold, "max_pruning_ratio": max_pruning_ratio}
    if target is None:
        return select_on_graph(graph, model, pruning_ratio, **method)
    return fit_budget(graph, model, example_inputs, pruning_ratio, target_macs, target_latency_ms, latency_batch_size,
                      **method).plan
