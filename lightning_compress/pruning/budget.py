"""Pruning to a budget: the scale of a method's pruning ratio that meets a MACs or a latency target.

The method's structure stays, only its amount is searched. ``pruning_ratio=None`` searches one rate for every group
(with ``global_pruning``: the one global ratio, so Network Slimming's threshold moves); a ``{glob: ratio}`` dict is
multiplied by one common factor, so per-stage rates keep their proportions and layers outside the dict stay whole (Li
et al.'s ResNet settings). Every candidate is :func:`.selection.select_on_graph`'s plan at the scaled ratio, and its
MACs (:func:`~lightning_compress.cost.count_macs`) or latency
(:func:`~lightning_compress.cost.measure_latency`: median and quartiles) are measured on a pruned deep copy, never
on the caller's model. The factor is found by bisection; a candidate whose per-group counts equal those of a measured
one is not built again.

A budget is a ceiling: MACs (the median latency) of the result never exceed the target. A MACs target is met within
:data:`~.budget_search.MACS_TOLERANCE` (1%) below it wherever single-channel moves reach that window (every model of
the tests); on networks so narrow that one channel is several percent of the MACs the result is the closest plan under
the target that the moves reach (``benchmarks/budget_window.py``). The bisection gives the least-pruned uniform
candidate under the target; integer widths make the reachable MACs discrete (one uniform step can shrink many groups
at once), so when it lies more than 1% below, single groups get their best removed channel back while the MACs stay
under the target, and when none fits one group widens while another narrows (the method's own scores choose the
channels and the order; :meth:`~.budget_search.Candidates.refine`). ``Budget.adjusted`` names the groups that then
deviate from the uniform rate, and by how many channels. A latency target whose uniform result lies more than its
measured inter-quartile range below the target is refined the same way towards the MACs interpolated linearly between
the two uniform candidates around it, and kept only if its measured median still meets the target.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from .budget_search import GRID, Candidates
from .errors import check_positive_int, check_ratio
from .graph import ChannelGraph
from .importance import resolve_importance
from .plan import PruningPlan
from .selection import check_selection_args, group_ratios

TARGETS = ("macs", "latency_ms")


@dataclass(frozen=True)
class Budget:
    """What a budget search reached (JSON-ready via :meth:`as_dict`).

    Attributes:
        target: ``"macs"`` or ``"latency_ms"``; ``target_value`` the absolute target (MACs per image, or ms).
        pruning_ratio: the uniform ratio found (``select_on_graph`` at it gives the plan before any refinement): a
            float, or the dict's rates scaled by ``factor``; ``None`` when the model already meets the target.
        base_macs, macs: MACs per image of the unpruned and the pruned network.
        counts: channels removed per group; ``adjusted``: the groups whose width the refinement moved off the uniform
            rate, by how many channels (positive: kept more).
        latency, base_latency: ``Latency.as_dict()`` of the pruned and the unpruned network (latency targets).
        evaluations: candidate networks built and measured.
    """

    target: str
    target_value: float
    pruning_ratio: float | dict[str, float] | None
    factor: float
    base_macs: int
    macs: int
    counts: dict[str, int] = field(default_factory=dict)
    adjusted: dict[str, int] = field(default_factory=dict)
    latency: dict[str, Any] | None = None
    base_latency: dict[str, Any] | None = None
    evaluations: int = 0

    @property
    def macs_fraction(self) -> float:
        """``macs / base_macs``."""
        return self.macs / self.base_macs if self.base_macs else 1.0

    @property
    def reached(self) -> float:
        """The measured value the target is compared with: MACs, or the median latency in ms."""
        return float(self.macs) if self.target == "macs" else float((self.latency or {}).get("median_ms", math.nan))

    @property
    def error(self) -> float:
        """``(reached - target) / target``: 0 is exact, -0.008 is 0.8% under the target."""
        return (self.reached - self.target_value) / self.target_value

    def as_dict(self) -> dict[str, Any]:
        """Every field plus ``macs_fraction``, ``reached`` and ``error``."""
        return {**asdict(self), "macs_fraction": self.macs_fraction, "reached": self.reached, "error": self.error}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Budget:
        """Inverse of :meth:`as_dict` (derived keys are ignored)."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})

    def summary(self) -> str:
        """One line for logs."""
        if self.target == "macs":
            line = f"target {self.target_value:,.0f} MACs, reached {self.macs:,} ({100 * self.error:+.2f}%)"
        else:
            lat = self.latency or {}
            line = (f"target {self.target_value:.3f} ms, reached median {lat.get('median_ms', math.nan):.3f} ms "
                    f"(IQR {lat.get('q1_ms', math.nan):.3f}-{lat.get('q3_ms', math.nan):.3f}), {self.macs:,} MACs")
        ratio = self.pruning_ratio
        shown = f"{ratio:g}" if isinstance(ratio, float) else ratio
        line += f"; pruning_ratio {shown}"
        if self.adjusted:
            line += f"; {len(self.adjusted)} group(s) off the uniform rate by a few channels"
        return line


class BudgetFit(NamedTuple):
    """The plan of a budget search and what it reached."""

    plan: PruningPlan
    budget: Budget


def check_amount(pruning_ratio: Any, target_macs: Any = None, target_latency_ms: Any = None,
                 latency_batch_size: Any = 1) -> str | None:
    """Validate how much to prune; return ``"macs"``, ``"latency_ms"`` or ``None`` (a fixed ``pruning_ratio``).

    Exactly one amount: ``pruning_ratio`` (a float in [0, 1) or a ``{glob: ratio}`` dict), ``target_macs`` (a
    fraction <= 1 of the unpruned MACs, or an absolute count > 1) or ``target_latency_ms`` (> 0, timed at
    ``latency_batch_size``). With a target, ``pruning_ratio`` may still be a dict: the *shape* whose rates are scaled.
    """
    given = [name for name, value in (("target_macs", target_macs), ("target_latency_ms", target_latency_ms))
             if value is not None]
    if len(given) > 1:
        raise ValueError(f"give one of `target_macs` and `target_latency_ms`, got both ({target_macs!r}, "
                         f"{target_latency_ms!r}).")
    if not given:
        if pruning_ratio is None:
            raise TypeError("`pruning_ratio` must be a float in [0, 1) or a dict {glob: ratio}, or give "
                            "`target_macs` / `target_latency_ms` instead; got none of them.")
        check_ratio(pruning_ratio)
        return None
    name = given[0]
    if pruning_ratio is not None:
        if not isinstance(pruning_ratio, Mapping):
            raise ValueError(f"`pruning_ratio`={pruning_ratio!r} and `{name}` both fix how much is pruned: give one. "
                             f"With `{name}` the ratio is searched; `pruning_ratio` may then only be a dict "
                             "{glob: ratio} whose rates are scaled together (or null).")
        if not any(check_ratio(pruning_ratio).values()):
            raise ValueError(f"`pruning_ratio` {pruning_ratio!r} has no rate above 0 for `{name}` to scale.")
    value = target_macs if name == "target_macs" else target_latency_ms
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number > 0, got {value!r}.")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a number > 0 (target_macs: a fraction <= 1 of the unpruned MACs or an "
                         f"absolute count), got {value!r}.")
    if name == "target_latency_ms":
        check_positive_int("latency_batch_size", latency_batch_size)
    return "macs" if name == "target_macs" else "latency_ms"


def fit_budget(graph: ChannelGraph, model: nn.Module, example_inputs: Any, pruning_ratio: Any = None,
               target_macs: float | None = None, target_latency_ms: float | None = None,
               latency_batch_size: int = 1, importance: Any = "l1", ignored_layers: Any = (),
               global_pruning: bool = False, min_channels: int = 1, round_to: int = 1, rounding: str = "keep",
               strategy: str = "independent", threshold: str = "count",
               device: torch.device | str | None = None, max_pruning_ratio: float = 1.0) -> BudgetFit:
    """The plan of the method (``select_on_graph``'s arguments) scaled to meet ``target_macs`` or
    ``target_latency_ms`` (see the module docstring); changes nothing.

    Args:
        example_inputs: one input (batch 1) for MACs; latency is timed on ``latency_batch_size`` copies of it.
        pruning_ratio: ``None`` (one rate searched) or a ``{glob: ratio}`` dict (its rates scaled by one factor).
        device: where candidates are timed (``None``: the model's device).

    Raises:
        ValueError: a target below the smallest network the method reaches (that network's MACs / latency named).
    """
    kind = check_amount(pruning_ratio, target_macs, target_latency_ms, latency_batch_size)
    if kind is None:
        raise ValueError("`fit_budget` needs `target_macs` or `target_latency_ms`; for a fixed `pruning_ratio` use "
                         "`select_on_graph`.")
    check_selection_args(min_channels, round_to, rounding, strategy, threshold, global_pruning, max_pruning_ratio)
    shape = dict(pruning_ratio) if pruning_ratio is not None else None
    group_ratios(graph, model, shape or 0.5, ignored_layers)  # globs checked before anything is measured
    graph.check(model)
    method = {"importance": resolve_importance(importance), "ignored_layers": ignored_layers,
              "global_pruning": global_pruning, "min_channels": min_channels, "round_to": round_to,
              "rounding": rounding, "strategy": strategy, "threshold": threshold,
              "max_pruning_ratio": max_pruning_ratio}
    if kind == "latency_ms" and not isinstance(example_inputs, torch.Tensor):
        raise TypeError("`target_latency_ms` times copies of one input tensor: `example_inputs` must be a tensor, "
                        f"got {type(example_inputs).__name__}.")
    batch = latency_batch_size if kind == "latency_ms" else 0
    search = _fit_macs if kind == "macs" else _fit_latency
    value = float(target_macs if kind == "macs" else target_latency_ms)
    space = Candidates(graph, model, example_inputs, shape, method, batch, device)
    fit = search(space, value)
    if fit.plan.groups and space.counted(fit.plan) != fit.budget.macs:
        # a layer whose positions change with the widths: search again, counting every candidate's forward pass
        fit = search(Candidates(graph, model, example_inputs, shape, method, batch, device, forward=True), value)
    return fit


def _fit_macs(space: Candidates, target_macs: float) -> BudgetFit:
    base = space.macs(space.empty)
    target = target_macs * base if target_macs <= 1 else target_macs
    if base <= target:
        return _fit(space, space.empty, None, "macs", target)
    top = space.plan(space.top)
    if space.macs(top) > target:
        raise ValueError(f"`target_macs`={target_macs!r} ({target:,.0f} MACs) is below the smallest network this "
                         f"method reaches: {space.macs(top):,} MACs ({100 * space.macs(top) / base:.1f}% of "
                         f"{base:,}) with every group at its floor (min_channels, ignored_layers and the ratio's globs "
                         "limit it).")
    _, hi = space.bisect(lambda plan: space.macs(plan) <= target)
    return _fit(space, space.refine(space.plan(hi), target), space.simplest(hi), "macs", target)


def _fit_latency(space: Candidates, target_ms: float) -> BudgetFit:
    if space.latency(space.empty).median_ms <= target_ms:
        return _fit(space, space.empty, None, "latency_ms", target_ms)
    top = space.plan(space.top)
    if space.latency(top).median_ms > target_ms:
        raise ValueError(f"`target_latency_ms`={target_ms!r} is below the smallest network this method reaches: "
                         f"median {space.latency(top).median_ms:.4g} ms at batch {space.batch} on {space.device} with "
                         "every group at its floor (min_channels, ignored_layers and the ratio's globs limit it).")
    lo, hi = space.bisect(lambda plan: space.latency(plan).median_ms <= target_ms)
    plan, slower = space.plan(hi), space.plan(lo)
    fast, slow = space.latency(plan), space.latency(slower)
    if target_ms - fast.median_ms > fast.iqr_ms and slow.median_ms > fast.median_ms:
        # more than the spread below: latency taken as linear in MACs between the two, refine towards that MACs
        share = (target_ms - fast.median_ms) / (slow.median_ms - fast.median_ms)
        refined = space.refine(plan, space.macs(plan) + share * (space.macs(slower) - space.macs(plan)))
        if refined is not plan and fast.median_ms < space.latency(refined).median_ms <= target_ms:
            plan = refined
    return _fit(space, plan, space.simplest(hi), "latency_ms", target_ms)


def _fit(space: Candidates, plan: PruningPlan, k: int | None, target: str, value: float) -> BudgetFit:
    """The record of ``plan``; ``k``: the grid point of its uniform ratio (``None``: nothing pruned)."""
    counts = {g.id: len(g.removed) for g in plan.groups}
    uniform = {g.id: len(g.removed) for g in space.plan(k).groups} if k is not None else {}
    adjusted = {gid: n - counts.get(gid, 0) for gid, n in uniform.items() if n != counts.get(gid, 0)}
    adjusted.update({gid: -n for gid, n in counts.items() if gid not in uniform})
    latency = base_latency = None
    if target == "latency_ms":
        latency, base_latency = space.latency(plan).as_dict(), space.latency(space.empty).as_dict()
    budget = Budget(target, value, space.ratio(k) if k is not None else None, k / GRID if k is not None else 0.0,
                    space.macs(space.empty), space.macs(plan), counts, adjusted, latency, base_latency,
                    space.evaluations)
    return BudgetFit(plan, budget)
