"""L1-norm filter pruning (Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017) as a Lightning callback.

One-shot: in ``setup`` of the fit (before the optimizers exist and before DDP wraps the model) the filters of every
selected conv are scored by the L1 norm of their own weights (``sum |W[j]|``, the paper's criterion), the smallest are
removed physically, and the fit that follows *is* the retraining of the smaller network. Give it a trained model.

The choice is the engine's ``select_channels(importance=Magnitude(1), rounding="keep", strategy=...)``: a layer keeps
``int(n * (1 - ratio))`` filters as in the reference code (``n=16, ratio=0.1`` keeps 14), at least ``min_channels``,
rounded up to ``round_to``. ``pruning_ratio`` is one float for every prunable layer or ``{module-name glob: ratio}``
(the first glob matching one of a channel group's convs wins; groups matched by none are kept whole). Channels coupled
across layers (a conv's BN, the next conv's input; both sides of a residual add with ``residual="couple"``) form one
group, scored by the summed norms of its convs' filters. For the paper's CIFAR ResNets, prune only the first conv of
each block (``{"layer1.*.conv1": p1, ...}``): those channels are private to the block in either residual mode.

``strategy``: ``independent`` (each layer scored on its own weights) or ``greedy`` (paper 3.3: a layer is scored
without the kernels of feature maps already removed upstream). Criteria (the paper's ablations): ``l1`` (paper),
``l2``, ``random`` (seeded by ``seed``: the same on every rank and on resume) and ``largest`` (remove the LARGEST).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lightning_compress.callbacks.base import MAX_PRUNING_RATIO, OneShotPruning, check_int
from lightning_compress.pruning import Magnitude, PruningPlan, Random
from lightning_compress.pruning.selection import STRATEGIES, select_on_graph

CRITERIA = ("l1", "l2", "random", "largest")


class L1FilterPruning(OneShotPruning):
    """Prune the smallest-norm filters once, in ``setup`` of the fit; the fit retrains the pruned network.

    Args:
        pruning_ratio: fraction in ``[0, 1)`` of filters removed from every prunable layer, or a mapping of
            module-name globs to such fractions (e.g. ``{"features.conv1": 0.5, "layer1.*.conv1": 0.6}``); ``None``:
            0.4 without a target, the one searched rate with one. With a target a mapping is the *shape*: its rates
            are multiplied by one common factor.
        criterion: ``l1`` | ``l2`` | ``random`` | ``largest``.
        strategy: ``independent`` | ``greedy`` (paper 3.3).
        seed: seed of the ``random`` criterion.
        submodule, ignored_layers, input_shape, residual, min_channels, max_pruning_ratio, round_to,
            bn_recalibration, verbose: see
            :class:`BasePruningCallback`.
        target_macs: instead of a float ratio: MACs per image of the pruned network, a fraction (<= 1) of the unpruned
            MACs or an absolute count; met within 1% below (see docs/engine.md, "Budgets").
        target_latency_ms: instead of a float ratio: median latency (ms) of the pruned network's forward pass at
            ``latency_batch_size`` on the trainer's device.

    Raises:
        TypeError: ``pruning_ratio`` not a number or a mapping of str to numbers; other arguments of the wrong type.
        ValueError: a float ``pruning_ratio`` together with a target, both targets, a target <= 0; in ``setup``: a
            target below the smallest network the method reaches.
        ValueError: a ratio outside ``[0, 1)``, an unknown ``criterion``/``strategy``/``residual``, ``min_channels``
            or ``round_to`` < 1; in ``setup``: a glob of ``pruning_ratio`` or ``ignored_layers`` matching no layer.
    """

    def __init__(self, pruning_ratio: float | Mapping[str, float] | None = None, criterion: str = "l1",
                 strategy: str = "independent", seed: int = 0, submodule: str | None = None,
                 ignored_layers: Sequence[str] = (), input_shape: Sequence[int] | None = None,
                 residual: str = "couple", min_channels: int = 1, round_to: int | str = 1, verbose: bool = True,
                 target_macs: float | None = None, target_latency_ms: float | None = None,
                 latency_batch_size: int = 1,
                 max_pruning_ratio: float = MAX_PRUNING_RATIO, bn_recalibration: int = 0) -> None:
        if criterion not in CRITERIA:
            raise ValueError(f"`criterion` must be one of {CRITERIA}, got {criterion!r}.")
        if strategy not in STRATEGIES:
            raise ValueError(f"`strategy` must be one of {STRATEGIES}, got {strategy!r}.")
        check_int("seed", seed)
        super().__init__(submodule=submodule, ignored_layers=ignored_layers, input_shape=input_shape,
                         residual=residual, min_channels=min_channels, round_to=round_to, verbose=verbose,
                         max_pruning_ratio=max_pruning_ratio, bn_recalibration=bn_recalibration)
        self.pruning_ratio = self.init_amount(pruning_ratio, 0.4, target_macs, target_latency_ms, latency_batch_size)
        self.criterion = criterion
        self.strategy = strategy
        self.seed = seed

    def importance(self) -> Magnitude | Random:
        """The engine importance of ``criterion``."""
        if self.criterion == "random":
            return Random(self.seed)
        return Magnitude(p=2 if self.criterion == "l2" else 1, largest=self.criterion == "largest")

    def select(self) -> PruningPlan:
        """The plan of the current weights (changes nothing): ``select_channels`` with this callback's arguments (with
        a target: the ratio, or the dict's common factor, that meets it)."""
        graph = self.build_graph()
        if self.has_target:
            return self.aligned(lambda: self.fit_to_budget(graph, self.pruning_ratio, self.importance(),
                                                           rounding="keep", strategy=self.strategy))
        return self.aligned(lambda: select_on_graph(graph, self.require_net(), self.pruning_ratio, self.importance(),
                                                    rounding="keep", strategy=self.strategy,
                                                    **self.selection_args()))

    def extra_state(self) -> dict[str, Any]:
        return {"criterion": self.criterion}
