"""L1-norm filter pruning (Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017) as a Lightning callback.

One-shot: in ``setup`` of the fit (before the optimizers exist and before DDP wraps the model) every selected conv's
filters are scored by the L1 norm of their own weights (``sum |W[j]|``, the paper's criterion), the smallest are
removed physically, and the fit that follows *is* the retraining of the smaller network. Give it a trained model.

Per-layer ratios: ``pruning_ratio`` is one float for every prunable conv, or ``{module-name glob: ratio}`` (the
first matching glob wins; convs matching none are kept whole). The engine removes coupled channels together (a
conv's BN, the next conv's input channels; both sides of a residual add): such a group is scored by the SUM of its
producing convs' filter norms and takes the ratio of its first producer that has one. ``layer`` keeps
``int(n * (1 - ratio))`` filters as in the reference code (``n=16, ratio=0.1`` keeps 14), at least ``min_channels``,
rounded up to a multiple of ``round_to``.

Criteria (the paper's ablations): ``l1`` (paper), ``l2``, ``random`` (seeded by ``seed``: the same on every rank and
on resume) and ``largest`` (remove the LARGEST-norm filters).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch

from lightning_compress.callbacks.base import BasePruningCallback
from lightning_compress.callbacks.engine_adapter import ChannelGroup, channel_groups, gather, plan_from_keep

CRITERIA = ("l1", "l2", "random", "largest")


class L1FilterPruning(BasePruningCallback):
    """Prune the smallest-norm filters once, in ``setup`` of the fit; the fit retrains the pruned network.

    Args:
        pruning_ratio: fraction in ``[0, 1)`` of filters removed from every prunable conv, or a mapping of
            module-name globs to such fractions (e.g. ``{"features.conv1": 0.5, "layer1.*.conv1": 0.6}``).
        criterion: ``l1`` | ``l2`` | ``random`` | ``largest``.
        min_channels: filters every layer keeps at least.
        round_to: kept filters are rounded up to a multiple of this.
        seed: seed of the ``random`` criterion.
        submodule, ignored_layers, input_shape, verbose: see :class:`BasePruningCallback`.

    Raises:
        TypeError: ``pruning_ratio`` not a number or a mapping of str to numbers; ``criterion`` not a str;
            ``min_channels``/``round_to``/``seed`` not ints.
        ValueError: a ratio outside ``[0, 1)``, an unknown ``criterion``, ``min_channels < 1``, ``round_to < 1``;
            in ``setup``: a glob of ``pruning_ratio`` that matches no conv of the network.
    """

    def __init__(self, pruning_ratio: float | Mapping[str, float] = 0.5, criterion: str = "l1",
                 min_channels: int = 1, round_to: int = 1, seed: int = 0, submodule: str | None = None,
                 ignored_layers: Sequence[str] = (), input_shape: Sequence[int] | None = None,
                 verbose: bool = True) -> None:
        self.pruning_ratio = _check_ratios(pruning_ratio)
        if not isinstance(criterion, str):
            raise TypeError(f"`criterion` must be a str, got {criterion!r}.")
        if criterion not in CRITERIA:
            raise ValueError(f"`criterion` must be one of {CRITERIA}, got {criterion!r}.")
        for name, value in (("min_channels", min_channels), ("round_to", round_to), ("seed", seed)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"`{name}` must be an int, got {value!r}.")
        if min_channels < 1:
            raise ValueError(f"`min_channels` must be >= 1, got {min_channels!r}.")
        if round_to < 1:
            raise ValueError(f"`round_to` must be >= 1, got {round_to!r}.")
        super().__init__(submodule=submodule, ignored_layers=ignored_layers, input_shape=input_shape,
                         verbose=verbose)
        self.criterion = criterion
        self.min_channels = min_channels
        self.round_to = round_to
        self.seed = seed

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit" or self.finished:
            return
        if isinstance(self.pruning_ratio, dict):  # every glob must name a layer (raises listing the names)
            self.select_layers(self.pruning_ratio, types=(torch.nn.modules.conv._ConvNd, torch.nn.Linear),
                               check_ignored=False)
        groups = channel_groups(self._require_net(), self.example_inputs)
        keep = self.select(groups)
        plan = plan_from_keep(groups, keep)
        self.apply_plan(trainer, plan, keep_unpruned=True)

    # ------------------------------------------------------------------ decisions
    def layer_ratio(self, name: str) -> float | None:
        """The ratio of the conv ``name`` (``None``: not pruned)."""
        if self.is_ignored(name):
            return None
        if isinstance(self.pruning_ratio, float):
            return self.pruning_ratio
        for pattern, ratio in self.pruning_ratio.items():
            if fnmatch.fnmatchcase(name, pattern):
                return ratio
        return None

    def group_ratio(self, group: ChannelGroup) -> float | None:
        """Ratio of a channel group: that of its first producer with one; ``None`` if any producer is ignored."""
        if not group.producers or any(self.is_ignored(p) for p in group.producers):
            return None
        return next((r for r in map(self.layer_ratio, group.producers) if r is not None), None)

    def scores(self, group: ChannelGroup) -> torch.Tensor:
        """Per-channel score of ``group`` (higher = kept): the summed norm of its producers' filters."""
        net = self._require_net()
        if self.criterion == "random":
            generator = torch.Generator().manual_seed(self.seed + _stable_hash(group.key))
            return torch.rand(group.size, generator=generator)
        total = torch.zeros(group.size)
        for name in group.producers:
            weight = net.get_submodule(name).weight.detach().float().cpu()
            flat = weight.reshape(weight.shape[0], -1)
            norms = flat.abs().sum(1) if self.criterion in ("l1", "largest") else flat.pow(2).sum(1).sqrt()
            total += gather(group, name, norms)[0]
        return -total if self.criterion == "largest" else total

    def n_keep(self, size: int, ratio: float) -> int:
        """Channels kept of ``size``: ``int(size * (1 - ratio))``, >= ``min_channels``, rounded up to ``round_to``."""
        kept = max(int(size * (1.0 - ratio) + 1e-9), self.min_channels)
        kept = int(math.ceil(kept / self.round_to) * self.round_to)
        return min(kept, size)

    def select(self, groups: Sequence[ChannelGroup]) -> dict[str, torch.Tensor]:
        """Group key -> keep mask (bool) for every group this callback prunes."""
        keep: dict[str, torch.Tensor] = {}
        for group in groups:
            ratio = self.group_ratio(group)
            if ratio is None or ratio == 0:
                continue
            n_keep = self.n_keep(group.size, ratio)
            if n_keep >= group.size:
                continue
            mask = torch.zeros(group.size, dtype=torch.bool)
            mask[torch.sort(self.scores(group), descending=True, stable=True).indices[:n_keep]] = True
            keep[group.key] = mask
        return keep

    def extra_state(self) -> dict[str, Any]:
        return {"criterion": self.criterion}


def _check_ratios(value: Any) -> float | dict[str, float]:
    if isinstance(value, Mapping):
        ratios: dict[str, float] = {}
        for key, ratio in value.items():
            if not isinstance(key, str):
                raise TypeError(f"`pruning_ratio` keys must be module-name globs (str), got {key!r}.")
            ratios[key] = _check_ratio(ratio, f"pruning_ratio[{key!r}]")
        if not ratios:
            raise ValueError("`pruning_ratio` must not be an empty mapping, got {}.")
        return ratios
    return _check_ratio(value, "pruning_ratio")


def _check_ratio(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a float in [0, 1) or a mapping of globs to floats, got {value!r}.")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1), got {value!r}.")
    return float(value)


def _stable_hash(text: str) -> int:
    return sum((i + 1) * ord(c) for i, c in enumerate(text)) % (2**31)
