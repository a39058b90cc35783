"""Controls for a pruning result: the same per-layer widths with other channels, or the same architecture from scratch.

:class:`WidthPruning` reads the plan of a saved, pruned model (a stage model of a method's run) or a plan JSON
(``PruningPlan.to_dict()``, e.g. ``python -m lightning_compress.pruning ... --plan-out plan.json``) and prunes the
network in ``setup`` of the fit to exactly the same width in every channel group:

* ``choice="random"``: a seeded random choice of the channels (the control a criterion must beat: if L1, BN-scale or
  the geometric median choose no better than chance at these widths, the table says so);
* ``choice="same"``: the very channels of the plan. On fresh weights (``method.compress.from_scratch: true``) this is
  "Rethinking the Value of Network Pruning"'s Scratch-E: the pruned architecture trained from scratch.

The groups are matched by id, so give the same ``residual`` mode as the method's run (ids are stable per mode).
"""

from __future__ import annotations

from collections.abc import Sequence

from lightning_compress.callbacks.base import OneShotPruning, check_int
from lightning_compress.functional.pruning import random_scores
from lightning_compress.loading import load_file
from lightning_compress.pruning import PruningPlan
from lightning_compress.pruning.plan import FORMAT as PLAN_FORMAT
from lightning_compress.pruning.saving import plan_of, read_payload

CHOICES = ("random", "same")


class WidthPruning(OneShotPruning):
    """Prune once, in ``setup`` of the fit, to the per-group widths of a reference plan (see the module docstring).

    Args:
        reference: a saved pruned model (``<run>/stages/compressed/model.pt`` or ``final/model.pt``), a checkpoint,
            or a plan JSON (``PruningPlan.to_dict()``) whose plan gives the widths.
        choice: ``random`` (seeded) or ``same`` (the reference's channels).
        seed: seed of the random choice (the same on every rank and every resume).
        submodule, ignored_layers, input_shape, residual, verbose: see :class:`BasePruningCallback` (``residual``
            must be the reference run's; the widths are the reference's, so there is no floor or rounding).

    Raises:
        TypeError: ``reference`` not a str, ``seed`` not an int.
        ValueError: unknown ``choice``; the reference file holds no pruning plan; in ``setup``: a reference group
            that this network does not have (another architecture or residual mode).
    """

    def __init__(self, reference: str, choice: str = "random", seed: int = 0, submodule: str | None = None,
                 ignored_layers: Sequence[str] = (), input_shape: Sequence[int] | None = None,
                 residual: str = "couple", verbose: bool = True) -> None:
        if not isinstance(reference, str) or not reference:
            raise TypeError(f"`reference` must be the path of a saved pruned model or plan JSON, got {reference!r}.")
        if choice not in CHOICES:
            raise ValueError(f"`choice` must be one of {CHOICES}, got {choice!r}.")
        check_int("seed", seed)
        super().__init__(submodule=submodule, ignored_layers=ignored_layers, input_shape=input_shape,
                         residual=residual, verbose=verbose)
        self.reference_plan = reference_plan(reference)
        self.reference = reference
        self.choice = choice
        self.seed = seed

    def select(self) -> PruningPlan:
        """The reference's widths on this network: its channels (``same``) or a seeded random choice."""
        graph = self.build_graph()
        known = {g.id: g for g in graph.groups}
        removed: dict[str, list[int]] = {}
        for group in self.reference_plan.groups:
            mine = known.get(group.id)
            if mine is None or mine.size != group.size or tuple(mine.producers) != tuple(group.producers):
                raise ValueError(f"`reference` {self.reference!r} prunes group {group.id!r} ({group.size} channels of "
                                 f"{list(group.producers)}), which this network does not have in "
                                 f"residual={self.residual!r} mode.")
            if self.choice == "same":
                removed[group.id] = list(group.removed)
            else:
                order = random_scores(group.size, self.seed, group.id).argsort(stable=True)
                removed[group.id] = sorted(order[: len(group.removed)].tolist())
        return graph.plan(removed)


def reference_plan(path: str) -> PruningPlan:
    """The plan of a saved pruned model or checkpoint, or a plan JSON (``reference`` of :class:`WidthPruning`)."""
    data = load_file(path, "reference")
    source = f"`reference`={path!r}"
    if isinstance(data, dict) and data.get("format") == PLAN_FORMAT:  # a plan on its own
        plan = plan_of({"plan": data}, source)
    else:
        plan = plan_of(read_payload(data, source) if isinstance(data, dict) else None, source)
    if plan is None or not plan.groups:
        raise ValueError(f"`reference`={path!r} holds no pruning plan with channel groups (an unpruned model?).")
    return plan
