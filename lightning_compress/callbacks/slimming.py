"""Network Slimming (Liu et al., ICCV 2017) as a Lightning callback.

During the fit (the "sparsity training") the callback adds ``sparsity_lambda * sign(gamma)`` to the gradient of every
prunable BatchNorm scale in ``on_before_optimizer_step``, where Lightning hands over gradients that are fully
accumulated and *unscaled* under AMP, once per optimizer step (``on_after_backward`` would see GradScaler-scaled
gradients, and the penalty would silently vanish). At the end of the fit (``on_train_end``, after the last checkpoint
of the sparsity fit) it draws ONE global threshold over ``|gamma|`` of all prunable channels, removes
``pruning_ratio`` of them (each group keeps ``min_channels``) and prunes the network physically. Fine-tune afterwards.

Prunable BatchNorms are those whose channels the engine can prune (its channel groups). Channels coupled across
several BNs (e.g. both sides of a residual add) form one group and are scored together: ``group_score="sum"``
(default) adds the member BNs' ``|gamma|``, ``"mean"`` averages them, ``"max"`` takes the largest; a group with one BN
(a plain VGG conv) is scored by its ``|gamma|``, exactly as in the paper.

The gamma distribution is logged every training epoch: ``slimming/gamma_mean``, ``slimming/gamma_median`` and
``slimming/gamma_frac_below`` (fraction of ``|gamma| < small_gamma``) through ``pl_module.log``, a histogram to every
TensorBoard logger, and at the end a PNG (``gamma.png``: final histogram + the fraction-below curve per epoch).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from lightning_compress.callbacks.base import BasePruningCallback
from lightning_compress.callbacks.engine_adapter import ChannelGroup, bn_groups, channel_groups, gather, plan_from_keep
from lightning_compress.functional import add_l1_subgradient, gamma_summary, global_threshold_keep

log = logging.getLogger(__name__)

_GROUP_SCORES = ("max", "mean", "sum")
_HALF_PRECISIONS = ("16-true", "bf16-true", "16", "bf16", 16)


class NetworkSlimming(BasePruningCallback):
    """L1 sparsity on BN scales during the fit, then global-threshold channel pruning at its end.

    Args:
        sparsity_lambda: the paper's ``s``: 1e-4 for VGG, 1e-5 for ResNet/DenseNet (0 = no penalty, prune only).
        pruning_ratio: fraction in ``[0, 1)`` of all prunable channels removed by the global threshold.
        init_gamma: set every prunable BN scale to this value in ``setup`` of the first fit (paper: 0.5; only
            sensible when the sparsity fit starts from scratch). ``None`` keeps the weights.
        min_channels: channels every group keeps at least, so no layer is emptied.
        group_score: how coupled BNs' ``|gamma|`` are combined into one channel score: ``sum``, ``mean`` or ``max``.
        prune: prune at the end of the fit; ``False`` only trains for sparsity (``plan`` stays ``None``).
        small_gamma: the ``|gamma|`` below which a channel counts as "sparse" in the logged fraction.
        plot_dir: folder of ``gamma.png``; ``None`` = the trainer's ``log_dir`` (or ``default_root_dir``), ``""`` =
            no plot.
        submodule, ignored_layers, input_shape, verbose: see :class:`BasePruningCallback`.

    Raises:
        TypeError: for arguments of the wrong type (bool is not accepted as a number).
        ValueError: ``sparsity_lambda < 0``, ``pruning_ratio`` outside ``[0, 1)``, ``init_gamma`` not finite,
            ``min_channels < 1``, unknown ``group_score``, ``small_gamma <= 0``; in ``setup``: no prunable
            BatchNorm, or a pure half-precision Trainer (``16-true``/``bf16-true``: the push is below its
            resolution).
    """

    def __init__(self, sparsity_lambda: float = 1e-4, pruning_ratio: float = 0.5, init_gamma: float | None = None,
                 min_channels: int = 1, group_score: str = "sum", prune: bool = True, small_gamma: float = 1e-2,
                 plot_dir: str | None = None, submodule: str | None = None, ignored_layers: Sequence[str] = (),
                 input_shape: Sequence[int] | None = None, verbose: bool = True) -> None:
        _check_number("sparsity_lambda", sparsity_lambda)
        if not sparsity_lambda >= 0:
            raise ValueError(f"`sparsity_lambda` must be >= 0, got {sparsity_lambda!r}.")
        _check_number("pruning_ratio", pruning_ratio)
        if not 0.0 <= pruning_ratio < 1.0:
            raise ValueError(f"`pruning_ratio` must be in [0, 1), got {pruning_ratio!r}.")
        if init_gamma is not None:
            _check_number("init_gamma", init_gamma)
            if not math.isfinite(init_gamma):
                raise ValueError(f"`init_gamma` must be a finite number or None, got {init_gamma!r}.")
        if isinstance(min_channels, bool) or not isinstance(min_channels, int):
            raise TypeError(f"`min_channels` must be an int, got {min_channels!r}.")
        if min_channels < 1:
            raise ValueError(f"`min_channels` must be >= 1, got {min_channels!r}.")
        if group_score not in _GROUP_SCORES:
            raise ValueError(f"`group_score` must be one of {_GROUP_SCORES}, got {group_score!r}.")
        if not isinstance(prune, bool):
            raise TypeError(f"`prune` must be a bool, got {prune!r}.")
        _check_number("small_gamma", small_gamma)
        if not small_gamma > 0:
            raise ValueError(f"`small_gamma` must be > 0, got {small_gamma!r}.")
        if plot_dir is not None and not isinstance(plot_dir, str):
            raise TypeError(f"`plot_dir` must be a str or None, got {plot_dir!r}.")
        super().__init__(submodule=submodule, ignored_layers=ignored_layers, input_shape=input_shape,
                         verbose=verbose)
        self.sparsity_lambda = float(sparsity_lambda)
        self.pruning_ratio = float(pruning_ratio)
        self.init_gamma = None if init_gamma is None else float(init_gamma)
        self.min_channels = min_channels
        self.group_score = group_score
        self.prune = prune
        self.small_gamma = float(small_gamma)
        self.plot_dir = plot_dir
        self.groups: dict[str, list[str]] = {}
        self._groups: dict[str, ChannelGroup] = {}
        self.penalty_steps = 0
        self.gamma_initialised = False
        self.history: list[dict[str, float]] = []
        self._gammas: list[nn.Parameter] = []

    # ------------------------------------------------------------------ state
    def extra_state(self) -> dict[str, Any]:
        return {"penalty_steps": self.penalty_steps, "gamma_initialised": self.gamma_initialised,
                "history": [dict(h) for h in self.history]}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.penalty_steps = int(state.get("penalty_steps", self.penalty_steps))
        self.gamma_initialised = bool(state.get("gamma_initialised", self.gamma_initialised))
        self.history = [dict(h) for h in state.get("history", self.history)]

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit" or self.finished:
            return
        if trainer.precision in _HALF_PRECISIONS and self.sparsity_lambda > 0:
            raise ValueError(f"NetworkSlimming needs fp32 master weights, got Trainer(precision={trainer.precision!r})."
                             " HINT: use '32-true', 'bf16-mixed' or '16-mixed'.")
        self._groups = bn_groups(channel_groups(self._require_net(), self.example_inputs), self.ignored_layers)
        self.groups = {key: list(group.bns) for key, group in self._groups.items()}
        if not self.groups:
            raise ValueError("NetworkSlimming found no prunable BatchNorm in the network (after `ignored_layers`).")
        self._gammas = self._bn_scales()
        if self.init_gamma is not None and not self.gamma_initialised:
            with torch.no_grad():
                for gamma in self._gammas:
                    gamma.fill_(self.init_gamma)
            self.gamma_initialised = True

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        if self.finished or self.sparsity_lambda == 0:
            return
        if add_l1_subgradient(self._gammas, self.sparsity_lambda):
            self.penalty_steps += 1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.finished or not self._gammas:
            return
        values = torch.cat([g.detach().abs().flatten() for g in self._gammas])
        stats = gamma_summary(values, self.small_gamma)
        self.history.append({"epoch": float(trainer.current_epoch), **stats})
        pl_module.log_dict({f"slimming/gamma_{k}": v for k, v in stats.items()}, on_step=False, on_epoch=True)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                add_histogram = getattr(getattr(logger, "experiment", None), "add_histogram", None)
                if callable(add_histogram):
                    add_histogram("slimming/gamma", values.float().cpu(), trainer.current_epoch)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.finished or not self.prune or trainer.sanity_checking or not self.groups:
            return
        keep = self.select(trainer)
        plan = plan_from_keep(list(self._groups.values()), keep)
        removed = sum(int((~k).sum()) for k in keep.values())
        total = sum(k.numel() for k in keep.values())
        rank_zero_info(f"[NetworkSlimming] global threshold: removing {removed}/{total} prunable channels "
                       f"({100.0 * removed / max(total, 1):.1f}%, target {100 * self.pruning_ratio:.0f}%)")
        self._write_plot(trainer)
        self.apply_plan(trainer, plan)
        self._gammas = []

    # ------------------------------------------------------------------ decisions
    def channel_scores(self) -> dict[str, torch.Tensor]:
        """Group name -> per-channel score (``group_score`` of the member BNs' ``|gamma|``)."""
        net = self._require_net()
        scores = {}
        for key, group in self._groups.items():
            values, present = zip(*(gather(group, n, net.get_submodule(n).weight.detach().abs().float())
                                    for n in group.bns))
            stacked, mask = torch.stack(values), torch.stack(present)
            if self.group_score == "sum":
                scores[key] = stacked.sum(0)
            elif self.group_score == "mean":
                scores[key] = stacked.sum(0) / mask.sum(0).clamp(min=1)
            else:
                scores[key] = stacked.masked_fill(~mask, float("-inf")).max(0).values.clamp(min=0)
        return scores

    def select(self, trainer: pl.Trainer) -> dict[str, torch.Tensor]:
        """Rank 0's keep-masks (group -> bool tensor) from one global threshold."""
        keep = global_threshold_keep(self.channel_scores(), self.pruning_ratio, self.min_channels)
        keep = {k: v.cpu() for k, v in keep.items()}
        return self.broadcast(trainer, keep)

    # ------------------------------------------------------------------ internals
    def _bn_scales(self) -> list[nn.Parameter]:
        net = self._require_net()
        seen: dict[int, nn.Parameter] = {}
        for group in self._groups.values():
            for name in group.bns:
                weight = net.get_submodule(name).weight
                seen.setdefault(id(weight), weight)
        return list(seen.values())

    def _write_plot(self, trainer: pl.Trainer) -> None:
        if self.plot_dir == "" or not trainer.is_global_zero:
            return
        folder = Path(self.plot_dir or trainer.log_dir or trainer.default_root_dir)
        try:
            path = plot_gamma(torch.cat([g.detach().abs().flatten().cpu() for g in self._gammas]), self.history,
                              folder / "gamma.png", self.small_gamma)
        except Exception as err:  # noqa: BLE001 - a plot must never break training
            rank_zero_warn(f"NetworkSlimming could not write its gamma plot: {err}")
            return
        rank_zero_info(f"[NetworkSlimming] gamma distribution plot: {path}")


def plot_gamma(values: torch.Tensor, history: list[dict[str, float]], path: Path, small: float = 1e-2) -> Path:
    """Write a PNG: histogram of ``|gamma|`` (log scale) and the fraction of ``|gamma| < small`` per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.hist(values.float().numpy(), bins=50)
    left.set_yscale("log")
    left.set_xlabel("|gamma|")
    left.set_ylabel("channels")
    left.set_title("BN scales at the end of sparsity training")
    if history:
        right.plot([h["epoch"] for h in history], [h["frac_below"] for h in history], marker="o")
    right.set_xlabel("epoch")
    right.set_ylabel(f"fraction |gamma| < {small:g}")
    right.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _check_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number, got {value!r}.")
