"""The search behind :func:`.budget.fit_budget` (internal; :mod:`.budget` states the rules).

1. **Bisection** on the method's ratio (the float, the factor of a ``{glob: ratio}`` dict, or the global ratio) over
   multiples of ``1 / GRID``: the least-pruned plan of the method itself that meets the target.
2. **Single-channel moves**, when that plan's MACs lie more than :data:`MACS_TOLERANCE` below the target: groups get
   their best-scored removed channel back while the MACs stay under the target; when none fits, a swap: one group
   gets one or two channels back and another loses its lowest-scored kept channels until the MACs are under the
   target again. The method's own scores choose the channels and the order (:meth:`Candidates.refine`).

Every candidate is measured on a pruned copy, never on the caller's model, once per plan.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from lightning_compress.cost import Latency, batch_of, count_macs, layer_positions, macs_at, measure_latency
from lightning_compress.functional.pruning import min_kept

from .graph import ChannelGraph
from .importance import BNScale, group_scores, remove_lowest
from .plan import PruningPlan
from .selection import group_ratios, removal_counts, select_counts, select_on_graph
from .surgery import prune

GRID = 10**6  # the factor is a multiple of 1 / GRID: every candidate ratio is a decimal a user can type
MACS_TOLERANCE = 0.01  # a MACs target is met when target * (1 - MACS_TOLERANCE) <= MACs <= target
SWAPS = 6  # a swap tries the first SWAPS groups to widen times the first SWAPS to narrow


class Candidates:
    """Plans of ``select_on_graph`` with ``method``'s arguments at ratio ``shape * k / GRID`` (``shape=None``: the
    ratio is ``k / GRID``), their single-channel variations, and their measurements (cached per plan). ``forward``:
    count MACs with a forward pass of every candidate (for layers whose positions change with the widths)."""

    def __init__(self, graph: ChannelGraph, model: nn.Module, example_inputs: Any, shape: dict[str, float] | None,
                 method: dict[str, Any], latency_batch_size: int = 0, device: torch.device | str | None = None,
                 forward: bool = False) -> None:
        self.graph, self.model, self.example_inputs = graph, model, example_inputs
        self.shape, self.method, self.forward = shape, method, forward
        self.batch = latency_batch_size
        self.device = torch.device(device) if device is not None else _device_of(model)
        self.top = math.floor((1.0 - 1e-9) / (max(shape.values()) if shape else 1.0) * GRID)
        self.empty = graph.plan({})
        self.eligible = list(group_ratios(graph, model, self.ratio(self.top), method["ignored_layers"]))
        if method["global_pruning"] and shape is None and self.eligible:  # the caps bound the one global ratio
            sizes = [graph.group(g).size for g in self.eligible]
            most = sum(n - min_kept(n, method["min_channels"], method["max_pruning_ratio"]) for n in sizes)
            self.top = min(self.top, math.floor(most / sum(sizes) * GRID + 1e-9))
        self.evaluations = 0
        self._keys: dict[int, tuple] = {}
        self._plans: dict[tuple, PruningPlan] = {}
        self._macs: dict[tuple, int] = {}
        self._latency: dict[tuple, Latency] = {}
        self._scores: dict[str, torch.Tensor | None] = {}
        self._positions = layer_positions(model, example_inputs)  # channel pruning keeps them: no forward per plan
        self._meta: nn.Module | None = None
        self._meta_failed = False

    # ---------------------------------------------------------------- the method's plans
    def ratio(self, k: int) -> float | dict[str, float]:
        """The ratio at grid point ``k``: ``k / GRID``, or every rate of the dict times it."""
        if self.shape is None:
            return k / GRID
        return {glob: round(rate * k / GRID, 12) for glob, rate in self.shape.items()}

    def key(self, k: int) -> tuple:
        """Identifies the plan at ``k``: the per-group counts (pure arithmetic) or, for a global threshold, the plan."""
        if k not in self._keys:
            if self.method["global_pruning"]:
                plan = select_on_graph(self.graph, self.model, self.ratio(k), **self.method)
                self._keys[k] = _key(plan)
                self._plans.setdefault(self._keys[k], plan)
            else:
                ratios = group_ratios(self.graph, self.model, self.ratio(k), self.method["ignored_layers"])
                counts = removal_counts(self.graph, ratios, self.method["min_channels"], self.method["round_to"],
                                        self.method["rounding"], self.method["max_pruning_ratio"])
                self._keys[k] = tuple(sorted(counts.items()))
        return self._keys[k]

    def plan(self, k: int) -> PruningPlan:
        key = self.key(k)
        if key not in self._plans:
            self._plans[key] = select_on_graph(self.graph, self.model, self.ratio(k), **self.method)
        return self._plans[key]

    def bisect(self, meets: Callable[[PruningPlan], bool]) -> tuple[int, int]:
        """``(lo, hi)``: grid points of the least-pruned plan meeting the target (``hi``) and of the next less pruned
        plan (``lo``); grid points with a plan already measured are not measured again. Needs ``meets(plan(top))``
        and not ``meets(plan(0))``."""
        lo, hi = 0, self.top
        while hi - lo > 1:
            mid = (lo + hi) // 2
            key = self.key(mid)
            if key != self.key(lo) and (key == self.key(hi) or meets(self.plan(mid))):
                hi = mid
            else:
                lo = mid
        return lo, hi

    def simplest(self, k: int) -> int:
        """The grid point with the fewest decimals at or above ``k`` whose plan is ``k``'s (the ratio reported)."""
        for decimals in range(1, 7):
            step = GRID // 10**decimals
            rounded = -(-k // step) * step
            if rounded <= self.top and self.key(rounded) == self.key(k):
                return rounded
        return k

    # ---------------------------------------------------------------- single-channel moves
    def refine(self, plan: PruningPlan, target: float) -> PruningPlan:
        """Come within :data:`MACS_TOLERANCE` below ``target`` (never above it) from ``plan`` by single-channel moves;
        the closest plan under the target that they reach.

        A move changes one group's width by one channel (to the next multiple of ``round_to``), within its floor
        (``min_channels``, ``max_pruning_ratio``), and the method re-chooses that group's channels at the new count.
        Give-backs go first, the group whose best removed channel scores highest (relative to its group's mean) first,
        each kept while the MACs stay under the target; when none fits, the best swap (:meth:`_swap`) that raises the
        MACs; then give-backs again. Each round raises the MACs or gives a channel back, so it ends; on networks so
        narrow that one channel is several percent of the MACs it can end short of the window (the closest plan under
        the target it reached).
        """
        low = target * (1 - MACS_TOLERANCE)
        while self.macs(plan) < low:
            better = self._give_back(plan, target, low)
            better = better if better is not None else self._swap(plan, target)
            if better is None:
                break
            plan = better
        return plan

    def _give_back(self, plan: PruningPlan, target: float, low: float) -> PruningPlan | None:
        """``plan`` after one pass of give-backs in score order (``None``: none fits under ``target``)."""
        found = None
        for gid in self._by_best_removed(plan):
            wider = self.step(_counts(plan), gid, +1)
            candidate = self.with_counts(plan, wider) if wider is not None else None
            if candidate is not None and self.macs(candidate) <= target:
                plan = found = candidate
                if self.macs(plan) >= low:
                    break
        return found

    def _swap(self, plan: PruningPlan, target: float) -> PruningPlan | None:
        """The closest plan under ``target`` above ``plan``'s MACs with one of the first :data:`SWAPS` groups in
        give-back order one or two steps wider and one of the :data:`SWAPS` groups with the lowest-scored kept
        channels as many steps narrower as it takes to come back under ``target`` (``None``: no such plan)."""
        counts, best, most = _counts(plan), None, self.macs(plan)
        wider = [gid for gid in self._by_best_removed(plan) if self.step(counts, gid, +1) is not None][:SWAPS]
        scored = [gid for gid in self.eligible if self.scores(gid) is not None]
        narrower = [gid for gid in sorted(scored, key=lambda gid: self._worst_kept(plan, gid))
                    if self.step(counts, gid, -1) is not None][:SWAPS]
        for up in wider:
            raised = counts
            for _ in range(2):  # one or two steps wider
                if (raised := self.step(raised, up, +1)) is None:
                    break
                for down in (gid for gid in narrower if gid != up):
                    candidate = self._narrowed(plan, raised, down, target)
                    if candidate is not None and self.macs(candidate) > most:
                        best, most = candidate, self.macs(candidate)
        return best

    def _narrowed(self, plan: PruningPlan, counts: dict[str, int], gid: str, target: float) -> PruningPlan | None:
        """``plan`` at ``counts`` with ``gid`` narrowed a step at a time until its MACs are under ``target``."""
        while (counts := self.step(counts, gid, -1)) is not None:
            candidate = self.with_counts(plan, counts)
            if self.macs(candidate) <= target:
                return candidate
        return None

    def _by_best_removed(self, plan: PruningPlan) -> list[str]:
        """The eligible groups that lost channels, the one whose best removed channel scores highest first."""
        removed = {g.id: list(g.removed) for g in plan.groups}
        gids = [gid for gid in self.eligible if gid in removed and self.scores(gid) is not None]
        return sorted(gids, key=lambda gid: -float(self.scores(gid)[removed[gid]].max()))

    def _worst_kept(self, plan: PruningPlan, gid: str) -> float:
        """The relative score of the lowest-scored channel ``gid`` keeps in ``plan``."""
        kept = torch.ones(self.graph.group(gid).size, dtype=torch.bool)
        kept[list(next((g.removed for g in plan.groups if g.id == gid), ()))] = False
        return float(self.scores(gid)[kept].min())

    def step(self, counts: Mapping[str, int], gid: str, direction: int) -> dict[str, int] | None:
        """``counts`` with group ``gid`` keeping one step more (``+1``) or less (``-1``): one channel, or to the next
        multiple of ``round_to``; ``None`` past the group's width or floor."""
        size, round_to = self.graph.group(gid).size, self.method["round_to"]
        kept = size - counts.get(gid, 0)
        kept = min(size, (kept // round_to + 1) * round_to) if direction > 0 else ((kept - 1) // round_to) * round_to
        if kept < min_kept(size, self.method["min_channels"], self.method["max_pruning_ratio"]) or \
                kept == size - counts.get(gid, 0):
            return None
        trial = {**counts, gid: size - kept}
        return {g: n for g, n in trial.items() if n}

    def with_counts(self, base: PruningPlan, counts: Mapping[str, int]) -> PruningPlan:
        """``base`` with the groups whose count changed re-chosen by the method at the new count (its lowest scores;
        a global threshold's removed channels of a group are its lowest-scored ones too)."""
        if self.method["strategy"] == "greedy":
            return select_counts(self.graph, self.model, counts, self.method["importance"], "greedy")
        removed = {g.id: list(g.removed) for g in base.groups}
        for gid in {*removed, *counts}:
            n = counts.get(gid, 0)
            if n != len(removed.get(gid, ())):
                picks = remove_lowest(self.method["importance"], self.graph.group(gid), self.model, n) if n else []
                removed[gid] = sorted(int(p) for p in picks or [])
        return self.graph.plan({gid: pos for gid, pos in removed.items() if pos})

    def scores(self, gid: str) -> torch.Tensor | None:
        """The method's scores of a group, relative to their mean (BN scales raw, as Slimming compares them)."""
        if gid not in self._scores:
            scores = group_scores(self.method["importance"], self.graph.group(gid), self.model)
            if scores is not None and not isinstance(self.method["importance"], BNScale) and float(scores.mean()) > 0:
                scores = scores / scores.mean()
            self._scores[gid] = scores
        return self._scores[gid]

    # ---------------------------------------------------------------- measurements
    def macs(self, plan: PruningPlan) -> int:
        """MACs per image of the pruned network: its layers' widths (a pruned meta-device copy, shapes only; a real
        copy if that fails) at the positions of the unpruned forward pass; with ``forward``: :meth:`counted`."""
        key = _key(plan)
        if key not in self._macs:
            self.evaluations += 1
            self._macs[key] = (self.counted(plan) if self.forward
                               else macs_at(self._pruned_shapes(plan), self._positions))
        return self._macs[key]

    def counted(self, plan: PruningPlan) -> int:
        """:func:`count_macs` of a really pruned copy (a forward pass): what :meth:`macs` must agree with."""
        return count_macs(_pruned(copy.deepcopy(self.model), plan), self.example_inputs)

    def latency(self, plan: PruningPlan) -> Latency:
        """Median and quartiles of one forward pass of the pruned network on ``device``."""
        key = _key(plan)
        if key not in self._latency:
            self.evaluations += 1
            net = _pruned(copy.deepcopy(self.model), plan, fuse=True).to(self.device)
            self._latency[key] = measure_latency(net, batch_of(self.example_inputs, self.batch).to(self.device))
        return self._latency[key]

    def _pruned_shapes(self, plan: PruningPlan) -> nn.Module:
        if not self._meta_failed:
            try:
                if self._meta is None:
                    self._meta = copy.deepcopy(self.model).to("meta")
                return _pruned(copy.deepcopy(self._meta), plan)
            except Exception:  # noqa: BLE001 - a rule that needs real tensors: prune real copies instead
                self._meta, self._meta_failed = None, True
        return _pruned(copy.deepcopy(self.model), plan)


def _key(plan: PruningPlan) -> tuple:
    return tuple((g.id, g.removed) for g in plan.groups)


def _counts(plan: PruningPlan) -> dict[str, int]:
    return {g.id: len(g.removed) for g in plan.groups}


def _pruned(net: nn.Module, plan: PruningPlan, fuse: bool = False) -> nn.Module:
    """``net`` pruned by ``plan``; ``fuse``: the deployed form of residual="select" writers (for timing; widths and MACs
    are the same in both forms)."""
    return prune(net, plan, fuse=fuse) if plan.groups else net


def _device_of(model: nn.Module) -> torch.device:
    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")
