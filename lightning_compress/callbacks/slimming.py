"""Network Slimming (Liu et al., ICCV 2017) as a Lightning callback.

During the fit (the "sparsity training") the callback adds ``sparsity_lambda * sign(gamma)`` to the gradient of every
prunable BatchNorm scale in ``on_before_optimizer_step``, where Lightning hands over gradients that are fully
accumulated and *unscaled* under AMP, once per optimizer step (``on_after_backward`` would see GradScaler-scaled
gradients, and the penalty would silently vanish). At the end of the fit (``on_train_end``, after the last checkpoint
of the sparsity fit) ONE global threshold over ``|gamma|`` removes ``pruning_ratio`` of the prunable channels (each
group keeps ``min_channels``) and the network is pruned physically; the pruned network, its plan and the sliced
optimizer state are saved as ``pruned.ckpt`` in every ``ModelCheckpoint``'s folder (``last.ckpt`` is rewritten), and
the checkpoints of the sparsity fit are marked as written before the cut. Fine-tune afterwards.

The choice is the engine's ``select_channels(importance=BNScale(group_score), global_pruning=True,
threshold=threshold)``; the ratio counts channel-group positions. ``threshold="count"`` removes exactly
``floor(N * ratio)`` (the paper's "prune ratio of the channels"); ``"authors_code"`` is the authors' ``<= thre`` rule
(one more, plus ties). On residual and dense networks the paper prunes every BN on its own, with a *channel selection*
where a BN reads a shared tensor: ``residual="select"``. With ``residual="couple"`` the BNs of one stream are one
group, scored by ``group_score`` (sum|mean|max of their ``|gamma|``).

The sparsity has to fit the budget: every step shrinks a scale by at most ``lr * s``, so the whole fit's *L1 push*
is ``s * sum(lr)`` over its steps (logged as ``l1_push``). The authors' CIFAR schedule (160 epochs, batch 64, lr
0.1/0.01/0.001) sums to about 6,600, so their push is 0.066 (ResNet, s = 1e-5) and 0.66 (VGG, s = 1e-4); a 20-epoch
one-cycle fit sums to about 356, so the same push needs an 18x larger ``s`` (the CPU recipes in ``conf/experiment``
give ``s`` per budget on this rule). Weight decay on the BN scales and shifts is its own setting
(``bn_weight_decay``, the authors' 1e-4): a larger decay shrinks every scale in proportion, which is not sparsity. At
the end of the fit the callback compares the fraction of scales below ``small_gamma`` with the fraction the cut removes
(``sparsity_report``) and warns when more than a tenth of the removed channels must have had scales that did not
become small.

On post-activation residual networks with ``residual="select"`` the BNs that write a residual stream (each block's
last BN, the stem's) are left out of the threshold (``prune_stream_writers=False``), as in the paper's pre-activation
ResNet-164 whose stream writers carry no BN: the threshold prunes the BNs inside the blocks and selects channels where
a block reads the stream.

The gamma distribution is logged every training epoch (``slimming/gamma_mean``, ``_median``, ``_frac_below``: the
fraction of ``|gamma| < small_gamma``), as a histogram to every TensorBoard logger, and at the end as ``gamma.png``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from lightning_compress.callbacks.base import MAX_PRUNING_RATIO, BasePruningCallback, check_bool, check_number
from lightning_compress.functional import add_l1_subgradient, add_weight_decay_difference, gamma_summary
from lightning_compress.functional.pruning import THRESHOLD_RULES
from lightning_compress.pruning import BNScale, ChannelGraph, PruningPlan
from lightning_compress.pruning.errors import check_fraction
from lightning_compress.pruning.importance import BN_REDUCTIONS, bn_scales
from lightning_compress.pruning.selection import eligible_groups, select_on_graph

_HALF_PRECISIONS = ("16-true", "bf16-true", "16", "bf16", 16)
# The sparsity warning tolerates a cut whose removed channels are at most this fraction above ``small_gamma`` (a cut
# at 39.9% on 39.0% small scales cost nothing measurable: experiments/results/converged/slim40_s3e3_s0).
LARGE_REMOVED_TOLERANCE = 0.1


class NetworkSlimming(BasePruningCallback):
    """L1 sparsity on BN scales during the fit, then global-threshold channel pruning at its end.

    Args:
        sparsity_lambda: the paper's ``s``: 1e-4 for VGG, 1e-5 for ResNet/DenseNet (0 = no penalty, prune only).
        pruning_ratio: fraction in ``[0, 1)`` of all prunable channels removed by the global threshold; ``None``: 0.4
            without a target, searched with one.
        init_gamma: set every prunable BN scale to this value in ``setup`` of the first fit (paper: 0.5; only
            sensible when the sparsity fit starts from scratch). ``None`` keeps the weights.
        group_score: how coupled BNs' ``|gamma|`` combine into one channel score: ``sum``, ``mean`` or ``max``.
        threshold: ``count`` (exactly ``floor(N * ratio)`` removed) | ``authors_code`` (``|gamma| <= thre`` removed).
        prune: prune at the end of the fit; ``False`` only trains for sparsity (``plan`` stays ``None``).
        small_gamma: the ``|gamma|`` below which a channel counts as "sparse" in the logged fraction.
        plot_dir: folder of ``gamma.png``; ``None`` = the trainer's ``log_dir`` (or ``default_root_dir``), ``""`` =
            no plot.
        submodule, ignored_layers, input_shape, residual, min_channels, max_pruning_ratio, round_to,
            bn_recalibration, verbose: see
            :class:`BasePruningCallback`.
        bn_weight_decay: weight decay of the prunable BNs' scales and shifts during this fit, instead of the
            optimizer's (``None`` keeps the optimizer's; the authors' 1e-4; 0 allowed). Needs an optimizer with
            coupled weight decay (SGD, Adam, RMSprop); AdamW is refused.
        prune_stream_writers: with ``residual="select"``, also threshold the BNs that write a residual stream (not the
            paper's structure; see the module docstring).
        target_macs, target_latency_ms, latency_batch_size: a budget instead of ``pruning_ratio`` (see
            :class:`~lightning_compress.callbacks.L1FilterPruning`): the one global ratio (so the threshold) is
            searched in ``on_train_end`` on the trained scales.

    Raises:
        TypeError: for arguments of the wrong type (bool is not accepted as a number).
        ValueError: ``sparsity_lambda < 0``, ``pruning_ratio`` outside ``[0, 1)``, ``init_gamma`` not finite, unknown
            ``group_score``/``threshold``/``residual``, ``small_gamma <= 0``; in ``setup``: no prunable BatchNorm, or a
            pure half-precision Trainer (``16-true``/``bf16-true``: the push is below its resolution).
    """

    def __init__(self, sparsity_lambda: float = 1e-4, pruning_ratio: float | None = None,
                 init_gamma: float | None = None, group_score: str = "sum", threshold: str = "count",
                 prune: bool = True, small_gamma: float = 1e-2, plot_dir: str | None = None,
                 submodule: str | None = None, ignored_layers: Sequence[str] = (),
                 input_shape: Sequence[int] | None = None, residual: str = "couple", min_channels: int = 1,
                 round_to: int | str = 1, verbose: bool = True, target_macs: float | None = None,
                 target_latency_ms: float | None = None, latency_batch_size: int = 1,
                 max_pruning_ratio: float = MAX_PRUNING_RATIO, bn_recalibration: int = 0,
                 bn_weight_decay: float | None = None, prune_stream_writers: bool = False) -> None:
        if not check_number("sparsity_lambda", sparsity_lambda) >= 0:
            raise ValueError(f"`sparsity_lambda` must be >= 0, got {sparsity_lambda!r}.")
        if pruning_ratio is not None:
            check_fraction("pruning_ratio", pruning_ratio)  # one global ratio: no dict
        if init_gamma is not None and not math.isfinite(check_number("init_gamma", init_gamma)):
            raise ValueError(f"`init_gamma` must be a finite number or None, got {init_gamma!r}.")
        if group_score not in BN_REDUCTIONS:
            raise ValueError(f"`group_score` must be one of {BN_REDUCTIONS}, got {group_score!r}.")
        if threshold not in THRESHOLD_RULES:
            raise ValueError(f"`threshold` must be one of {THRESHOLD_RULES}, got {threshold!r}.")
        check_bool("prune", prune)
        if not check_number("small_gamma", small_gamma) > 0:
            raise ValueError(f"`small_gamma` must be > 0, got {small_gamma!r}.")
        if bn_weight_decay is not None and not check_number("bn_weight_decay", bn_weight_decay) >= 0:
            raise ValueError(f"`bn_weight_decay` must be >= 0 or None, got {bn_weight_decay!r}.")
        check_bool("prune_stream_writers", prune_stream_writers)
        if plot_dir is not None and not isinstance(plot_dir, str):
            raise TypeError(f"`plot_dir` must be a str or None, got {plot_dir!r}.")
        super().__init__(submodule=submodule, ignored_layers=ignored_layers, input_shape=input_shape,
                         residual=residual, min_channels=min_channels, round_to=round_to, verbose=verbose,
                         max_pruning_ratio=max_pruning_ratio, bn_recalibration=bn_recalibration)
        self.sparsity_lambda = float(sparsity_lambda)
        ratio = self.init_amount(pruning_ratio, 0.4, target_macs, target_latency_ms, latency_batch_size)
        self.pruning_ratio = None if ratio is None else float(ratio)
        self.init_gamma = None if init_gamma is None else float(init_gamma)
        self.group_score = group_score
        self.threshold = threshold
        self.prune = prune
        self.small_gamma = float(small_gamma)
        self.plot_dir = plot_dir
        self.bn_weight_decay = None if bn_weight_decay is None else float(bn_weight_decay)
        self.prune_stream_writers = prune_stream_writers
        self.l1_push = 0.0
        self.sparsity_report: dict[str, float] = {}
        self._stream_writers: list[str] = []
        self._shifts: list[nn.Parameter] = []
        self.groups: dict[str, list[str]] = {}  # prunable group id -> its BatchNorms
        self.penalty_steps = 0
        self.gamma_initialised = False
        self.history: list[dict[str, float]] = []
        self._graph: ChannelGraph | None = None
        self._gammas: list[nn.Parameter] = []

    # ------------------------------------------------------------------ state
    def extra_state(self) -> dict[str, Any]:
        return {"penalty_steps": self.penalty_steps, "gamma_initialised": self.gamma_initialised,
                "history": [dict(h) for h in self.history], "l1_push": self.l1_push,
                "sparsity_report": dict(self.sparsity_report)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.penalty_steps = int(state.get("penalty_steps", self.penalty_steps))
        self.gamma_initialised = bool(state.get("gamma_initialised", self.gamma_initialised))
        self.history = [dict(h) for h in state.get("history", self.history)]
        self.l1_push = float(state.get("l1_push", self.l1_push))
        self.sparsity_report = dict(state.get("sparsity_report", self.sparsity_report))

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit" or self.finished:
            return
        if trainer.precision in _HALF_PRECISIONS and self.sparsity_lambda > 0:
            raise ValueError(f"NetworkSlimming needs fp32 master weights, got Trainer(precision={trainer.precision!r})."
                             " HINT: use '32-true', 'bf16-mixed' or '16-mixed'.")
        self._graph = self.build_graph()
        net = self.require_net()
        self._stream_writers = [] if self.prune_stream_writers else _stream_writer_norms(self._graph, net)
        eligible = eligible_groups(self._graph, net, self.selection_args()["ignored_layers"])
        self.groups = {gid: bns for gid in eligible if (bns := _batchnorms(self._graph, gid, net))}
        if not self.groups:
            raise ValueError("NetworkSlimming found no prunable BatchNorm in the network (after `ignored_layers`): "
                             "it scores and penalises `_BatchNorm` modules (any subclass) and F.batch_norm with a "
                             "module's own weight.")
        unscored = [gid for gid in self.groups if self.importance().scores(self._graph.group(gid), net) is None]
        if len(unscored) == len(self.groups):
            raise ValueError(f"NetworkSlimming cannot score any of its {len(unscored)} groups: some channels of each "
                             "have no batch norm scale, so the cut would remove nothing.")
        if unscored:
            rank_zero_warn(f"NetworkSlimming leaves {len(unscored)} of {len(self.groups)} groups whole: some of their "
                           f"channels have no batch norm scale ({', '.join(unscored[:5])}).")
        norms = [net.get_submodule(n) for bns in self.groups.values() for n in bns]
        self._gammas = list({id(m.weight): m.weight for m in norms if m.weight is not None}.values())
        self._shifts = list({id(m.bias): m.bias for m in norms if getattr(m, "bias", None) is not None}.values())
        if not self._gammas:
            raise ValueError("NetworkSlimming found prunable BatchNorms without scales (affine=False): there is no "
                             "gamma to make sparse.")
        if self.init_gamma is not None and not self.gamma_initialised:
            with torch.no_grad():
                for gamma in self._gammas:
                    gamma.fill_(self.init_gamma)
            self.gamma_initialised = True

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        if self.finished:
            return
        if self.bn_weight_decay is not None:
            self._set_bn_weight_decay(optimizer)
        if self.sparsity_lambda and add_l1_subgradient(self._gammas, self.sparsity_lambda):
            self.penalty_steps += 1
            self.l1_push += self.sparsity_lambda * _lr_of(optimizer, self._gammas[0])

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
        plan = self.select()
        ratio = self.budget.pruning_ratio if self.budget is not None else self.pruning_ratio
        total = sum(self._graph.group(g).size for g in self.groups)
        rank_zero_info(f"[NetworkSlimming] global threshold: removing {plan.num_removed}/{total} prunable channels "
                       f"(ratio {100 * (ratio or 0):.1f}%)")
        if plan.num_removed == 0 and (ratio or 0) > 0:
            rank_zero_warn(f"NetworkSlimming removes 0 channels at ratio {ratio:g}: no scale fell below the global "
                           "threshold (min_channels / round_to keep every group whole?).")
        self._report_sparsity(plan.num_removed, total)
        self._write_plot(trainer)
        self.apply_plan(trainer, plan, end_of_fit=True)
        self._gammas, self._graph = [], None

    # ------------------------------------------------------------------ decisions
    def importance(self) -> BNScale:
        return BNScale(self.group_score)

    def select(self) -> PruningPlan:
        """The global-threshold plan of the current scales (changes nothing): ``select_channels`` with this callback's
        arguments (with a target: the global ratio that meets it, searched on these scales; sets ``budget``)."""
        graph = self._graph if self._graph is not None else self.build_graph()
        if self.has_target:
            return self.aligned(lambda: self.fit_to_budget(graph, None, self.importance(), global_pruning=True,
                                                           threshold=self.threshold))
        return self.aligned(lambda: select_on_graph(graph, self.require_net(), self.pruning_ratio, self.importance(),
                                                    global_pruning=True, threshold=self.threshold,
                                                    **self.selection_args()))

    def selection_args(self) -> dict[str, Any]:
        args = super().selection_args()
        return {**args, "ignored_layers": [*args["ignored_layers"], *self._stream_writers]}

    # ------------------------------------------------------------------ internals
    def _set_bn_weight_decay(self, optimizer: torch.optim.Optimizer) -> None:
        """Make the optimizer decay the prunable BN scales and shifts by ``bn_weight_decay`` (via their gradients)."""
        raw = getattr(optimizer, "optimizer", optimizer)  # LightningOptimizer wraps the torch optimizer
        decay = {id(p): float(g.get("weight_decay", 0.0)) for g in raw.param_groups for p in g["params"]}
        if isinstance(raw, torch.optim.AdamW) or any(g.get("decoupled_weight_decay") for g in raw.param_groups):
            raise ValueError("NetworkSlimming `bn_weight_decay` changes coupled weight decay through the gradients; "
                             f"{type(raw).__name__} decouples it. HINT: set `bn_weight_decay=None` and give the BN "
                             "parameters their own parameter group in `configure_optimizers`.")
        for param in (*self._gammas, *self._shifts):
            if id(param) in decay:
                add_weight_decay_difference([param], decay[id(param)], self.bn_weight_decay)

    def _report_sparsity(self, removed: int, total: int) -> None:
        """Compare the scales below ``small_gamma`` with the cut; warn when more than ``LARGE_REMOVED_TOLERANCE`` of
        the removed channels must have had scales still large (the cut removes the smallest scales first)."""
        values = torch.cat([g.detach().abs().flatten().float().cpu() for g in self._gammas])
        small = float((values < self.small_gamma).float().mean())
        cut = removed / max(total, 1)
        self.sparsity_report = {"frac_below_small_gamma": small, "cut_fraction": cut, "small_gamma": self.small_gamma,
                                "l1_push": self.l1_push, "penalty_steps": float(self.penalty_steps)}
        rank_zero_info(f"[NetworkSlimming] end of sparsity training: {100 * small:.1f}% of the scales are below "
                       f"{self.small_gamma:g}, the cut removes {100 * cut:.1f}% (L1 push s x sum(lr) = "
                       f"{self.l1_push:.3g})")
        if cut - small > LARGE_REMOVED_TOLERANCE * cut:
            rank_zero_warn(f"NetworkSlimming cuts {100 * cut:.1f}% of the channels but only {100 * small:.1f}% of "
                           f"the scales fell below small_gamma={self.small_gamma:g}: at least "
                           f"{100 * (cut - small) / cut:.0f}% of the removed channels had scales that did not become "
                           f"small, so the accuracy right after the cut drops. HINT: raise `sparsity_lambda` "
                           f"for this budget (its L1 push s x sum(lr) was {self.l1_push:.3g}; the authors' CIFAR "
                           "schedules give 0.066 for ResNet and 0.66 for VGG), or lower `bn_weight_decay`.")

    def _write_plot(self, trainer: pl.Trainer) -> None:
        if self.plot_dir == "":
            return
        # trainer.log_dir is a broadcast under DDP: every rank asks for it, or rank 0's call meets another collective
        folder = Path(self.plot_dir or trainer.log_dir or trainer.default_root_dir)
        if not trainer.is_global_zero:
            return
        try:
            path = plot_gamma(torch.cat([g.detach().abs().flatten().cpu() for g in self._gammas]), self.history,
                              folder / "gamma.png", self.small_gamma)
        except Exception as err:  # noqa: BLE001 - a plot must never break training
            rank_zero_warn(f"NetworkSlimming could not write its gamma plot: {err}")
            return
        rank_zero_info(f"[NetworkSlimming] gamma distribution plot: {path}")


def _lr_of(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> float:
    """The learning rate of ``param``'s parameter group (0 if the optimizer does not hold it)."""
    raw = getattr(optimizer, "optimizer", optimizer)
    return next((float(g["lr"]) for g in raw.param_groups if any(p is param for p in g["params"])), 0.0)


def _stream_writer_norms(graph: ChannelGraph, net: nn.Module) -> list[str]:
    """The BatchNorms of groups that write a residual stream (``residual="select"`` graphs only)."""
    names = {m.module for g in graph.prunable_groups if g.writers for m in g.members if m.slot == "channels"}
    return sorted(n for n in names if isinstance(net.get_submodule(n), nn.modules.batchnorm._BatchNorm))


def _batchnorms(graph: ChannelGraph, group_id: str, net: nn.Module) -> list[str]:
    """The batch norms normalising a group's channels (the scales Network Slimming pushes towards zero): every
    ``_BatchNorm`` subclass and functional batch norm with module parameters (:func:`~.importance.bn_scales`)."""
    return [name for _, name, _ in bn_scales(graph.group(group_id), net)]


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
