"""The plans of one method at every scale of its ratio, their MACs and latency, the bisection and the refinement
behind :func:`.budget.fit_budget` (internal; see :mod:`.budget` for the rules)."""

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
TRIES = 8  # predicted choices measured per round (a prediction misses where a layer's MACs are not bilinear)
MOVES = 2  # each group's options: one or two channel steps wider or narrower
BEAM = 64  # choices kept per depth of the search for moves (:func:`closest_moves`)
DEPTH = 4  # the most groups moved at once
PAIRS = 256  # the most pair moves measured per round (dense nets share a layer among many groups)
ROUNDS = 16  # refinement rounds (each stops as soon as it gets no closer)


class Candidates:
    """Plans of ``select_on_graph`` with ``method``'s arguments at ratio ``shape * k / GRID`` (``shape=None``: the
    ratio is ``k / GRID``), and their measurements on pruned deep copies (cached per plan). ``forward``: count MACs
    with a forward pass of every candidate (for layers whose positions change with the widths)."""

    def __init__(self, graph: ChannelGraph, model: nn.Module, example_inputs: Any, shape: dict[str, float] | None,
                 method: dict[str, Any], latency_batch_size: int = 0, device: torch.device | str | None = None,
                 forward: bool = False) -> None:
        self.graph, self.model, self.example_inputs = graph, model, example_inputs
        self.shape, self.method, self.forward = shape, method, forward
        self.batch = latency_batch_size
        self.device = torch.device(device) if device is not None else _device_of(model)
        self.top = math.floor((1.0 - 1e-9) / (max(shape.values()) if shape else 1.0) * GRID)
        self.empty = graph.plan({})
        self.eligible = set(group_ratios(graph, model, self.ratio(self.top), method["ignored_layers"]))
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
        self._couplings_seen: dict[tuple[str, str], float] = {}
        self._positions = layer_positions(model, example_inputs)  # channel pruning keeps them: no forward per plan
        self._meta: nn.Module | None = None
        self._meta_failed = False

    # ---------------------------------------------------------------- plans
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

    # ---------------------------------------------------------------- search
    def bisect(self, meets: Callable[[PruningPlan], bool]) -> tuple[int, int]:
        """``(lo, hi)``: grid points of the least-pruned plan meeting the target (``hi``) and of the next less pruned
        plan (``lo``). Needs ``meets(plan(top))`` and not ``meets(plan(0))``."""
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
        """The grid point with the fewest decimals whose plan is ``k``'s."""
        first, below = k, -1
        while first - below > 1:  # the first grid point with k's plan
            mid = (first + below) // 2
            below, first = (below, mid) if self.key(mid) == self.key(k) else (mid, first)
        last, above = k, self.top + 1
        while above - last > 1:  # the last one
            mid = (last + above) // 2
            last, above = (mid, above) if self.key(mid) == self.key(k) else (last, mid)
        step = GRID
        while step > 1 and -(-first // step) * step > last:
            step //= 10
        return -(-first // step) * step

    def refine(self, plan: PruningPlan, target: float) -> PruningPlan:
        """Come within :data:`MACS_TOLERANCE` below ``target`` (never above it) by moving single groups' widths a few
        channel steps away from ``plan``'s in up to :data:`ROUNDS` rounds; returns the closest plan found.

        A step is one channel (up to the next multiple of ``round_to``), chosen by the method at the new count: a group
        keeping one more gets its best removed channel back, one keeping one less loses its lowest-scored kept channel.
        Each round first gives single groups a step back in the order of the method's scores (the group whose best
        removed channel scores highest relative to its group's mean first), skipping any that would exceed the target;
        if that ends short, the MACs change of every group's move by one or two steps (:data:`MOVES`) either way is
        measured, and so is one joint move of every two groups that share a layer (a conv's MACs are its input times
        its output channels, so such moves interact); :func:`closest_moves` predicts from these the fewest moves that
        reach the window; up to :data:`TRIES` predictions are measured, and the closest plan under the target starts
        the next round.
        """
        for _ in range(ROUNDS):
            if self.macs(plan) >= target * (1 - MACS_TOLERANCE):
                break
            refined = self._refine_once(plan, target)
            if refined is plan:
                break
            plan = refined
        return plan

    def _refine_once(self, plan: PruningPlan, target: float) -> PruningPlan:
        low = target * (1 - MACS_TOLERANCE)
        start = {g.id: len(g.removed) for g in plan.groups}
        groups = [g.id for g in self.graph.groups if g.id in self.eligible and self.scores(g.id) is not None]
        counts, macs, base = dict(start), self.macs(plan), plan
        for gid in sorted((gid for gid in groups if gid in start),
                          key=lambda gid: -float(self.scores(gid)[list(_removed(base, gid))].max())):
            if macs >= low:
                return plan
            trial = self.step(counts, gid, +1)
            candidate = self.with_counts(plan, trial) if trial is not None else plan
            if candidate is not plan and self.macs(candidate) <= target:
                plan, counts, macs = candidate, trial, self.macs(candidate)
        if macs >= low:
            return plan
        options: dict[str, dict[int, int]] = {}  # group -> {count it could take: MACs change}
        for gid in groups:
            for move in (+1, -1):
                trial = counts
                for _ in range(MOVES):  # one and two steps
                    trial = self.step(trial, gid, move) if trial is not None else None
                    if trial is not None:
                        options.setdefault(gid, {})[trial.get(gid, 0)] = (self.macs(self.with_counts(plan, trial))
                                                                          - macs)
        kept = {gid: {n: counts.get(gid, 0) - n for n in moves} for gid, moves in options.items()}
        coupling = self._couplings(plan, counts, options, kept, macs)
        best = plan
        for chosen in closest_moves(options, kept, coupling, low - macs, target - macs)[:TRIES]:
            candidate = self.with_counts(plan, {g: n for g, n in {**counts, **chosen}.items() if n})
            reached = self.macs(candidate)
            if low <= reached <= target:
                return candidate
            if self.macs(best) < reached <= target:
                best = candidate  # closer, still under: the next round starts there
        return best

    def _couplings(self, plan: PruningPlan, counts: Mapping[str, int], options: Mapping[str, Mapping[int, int]],
                   kept: Mapping[str, Mapping[int, int]], macs: int) -> dict[tuple[str, str], float]:
        """MACs per (channel kept in ``a``) x (channel kept in ``b``) of each pair of groups sharing a layer (a
        conv's input and output channels: MACs are bilinear in them), from one measured move of both; at most
        :data:`PAIRS` pairs, those whose single moves change the MACs most (the others are predicted additive). Kept
        for later rounds: a bilinear coupling does not depend on the widths it is measured at."""
        layers: dict[str, list[str]] = {}
        for gid in options:
            for module in {m.module for m in self.graph.group(gid).members}:
                layers.setdefault(module, []).append(gid)

        def size(pair: tuple[str, str]) -> float:
            return abs(next(iter(options[pair[0]].values())) * next(iter(options[pair[1]].values())))

        pairs = {(a, b) for gids in layers.values() for a in gids for b in gids if a < b}
        for a, b in sorted(pairs, key=lambda pair: (-size(pair), pair))[:PAIRS]:
            if (a, b) not in self._couplings_seen:
                na, nb = next(iter(options[a])), next(iter(options[b]))
                both = self.macs(self.with_counts(plan, {g: n for g, n in {**counts, a: na, b: nb}.items() if n}))
                self._couplings_seen[a, b] = (both - macs - options[a][na] - options[b][nb]) / (kept[a][na]
                                                                                                 * kept[b][nb])
        return {pair: value for pair, value in self._couplings_seen.items() if value}

    def step(self, counts: Mapping[str, int], gid: str, direction: int) -> dict[str, int] | None:
        """``counts`` with group ``gid`` keeping one step more (``+1``) or less (``-1``): one channel, or the next
        multiple of ``round_to``; ``None`` below the group's floor."""
        size, round_to = self.graph.group(gid).size, self.method["round_to"]
        kept = size - counts.get(gid, 0)
        kept = min(size, (kept // round_to + 1) * round_to) if direction > 0 else ((kept - 1) // round_to) * round_to
        if kept < min_kept(size, self.method["min_channels"], self.method["max_pruning_ratio"]) or \
                kept == size - counts.get(gid, 0):
            return None
        trial = {**counts, gid: size - kept}
        return {g: n for g, n in trial.items() if n}


def closest_moves(deltas: Mapping[str, Mapping[int, int]], kept: Mapping[str, Mapping[int, int]],
                  coupling: Mapping[tuple[str, str], float], low: float, high: float, width: int = BEAM,
                  depth: int = DEPTH) -> list[dict[str, int]]:
    """Choices of at most one option per group (``deltas[group][option]``: its MACs change alone; ``kept``: the
    channels it keeps more) whose predicted change falls in ``[low, high]``, as ``{group: option}``, best first: the
    fewest groups, then the largest change. The prediction adds the single changes and, for each pair of moved groups
    in ``coupling``, ``coupling[a, b] * kept_a * kept_b``. A beam search: up to ``depth`` groups, keeping at each depth
    the ``width`` choices predicted closest to the window's middle."""
    middle = (low + high) / 2
    moves = [(gid, n) for gid in deltas for n in deltas[gid]]
    found: dict[frozenset, tuple[int, float, dict[str, int]]] = {}
    beam: list[tuple[dict[str, int], float]] = [({}, 0.0)]
    for size in range(1, depth + 1):
        grown: dict[frozenset, tuple[dict[str, int], float]] = {}
        for choice, total in beam:
            for gid, n in moves:
                if gid in choice:
                    continue
                key = frozenset((*choice.items(), (gid, n)))
                if key in grown:  # reached from another state of this depth (found holds smaller ones only)
                    continue
                value = total + deltas[gid][n] + sum(coupling.get((min(gid, g), max(gid, g)), 0.0) * kept[gid][n]
                                                     * kept[g][m] for g, m in choice.items())
                grown[key] = ({**choice, gid: n}, value)
        for key, (choice, value) in grown.items():
            if low <= value <= high:
                found[key] = (size, -value, choice)
        beam = sorted(grown.values(), key=lambda state: abs(state[1] - middle))[:width]
    return [choice for _, _, choice in sorted(found.values(), key=lambda item: item[:2])]


def _key(plan: PruningPlan) -> tuple:
    return tuple((g.id, g.removed) for g in plan.groups)


def _removed(plan: PruningPlan, gid: str) -> tuple[int, ...]:
    return next((g.removed for g in plan.groups if g.id == gid), ())


def _pruned(net: nn.Module, plan: PruningPlan, fuse: bool = False) -> nn.Module:
    """``net`` pruned by ``plan``; ``fuse``: the deployed form of residual="select" writers (for timing; widths and MACs
    are the same in both forms)."""
    return prune(net, plan, fuse=fuse) if plan.groups else net


def _device_of(model: nn.Module) -> torch.device:
    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")
