"""FPGM: filter pruning via geometric median (He et al., CVPR 2019) as a Lightning callback.

Soft pruning during the fit, physical removal at its end:

* **Selection** (``on_train_start``, then ``on_train_epoch_end`` of epochs ``0, f, 2f, ...`` and of the last epoch,
  ``f = frequency``, as the authors' ``epoch % epoch_prune == 0``): the engine's ``select_channels(importance=
  GeometricMedian(distance, norm_ratio), rounding="remove")``: in every channel group, ``int(N * pruning_ratio)``
  filters nearest the geometric median go (the authors' count: 16 filters at 0.4 -> 6 removed, 10 kept). The paper
  prunes every conv at the same rate, each on its own: ``residual="select"`` (stem and block outputs too; the residual
  stream keeps its width). ``residual="couple"`` instead scores a residual stream's convs jointly.
* **Soft pruning**, ``soft_mode``:
  - ``"authors_code"`` (the authors' ``pruning_cifar10.py``): the selected filters (conv weight rows and bias) are
    zeroed at each selection and their gradients before every optimizer step; BN and the optimizer's momentum are left
    alone, and the filters are re-selected at every selection epoch (a filter left out of a new selection trains
    again). In practice the selection rarely moves: a zeroed filter stays at the origin, whose summed distance to
    the others is small, so the GM picks it again (the digits defaults: 0 channels changed over 6 epochs).
  - ``"paper"`` (the paper's Algorithm 1, as SFP): the filters are zeroed at each selection only; gradients flow, so
    they can regrow until the next selection.
  - ``"exact"`` (soft pruning whose removal costs nothing): the paper's Algorithm 1 until the last ``hard_epochs``
    epochs (filters zeroed at each selection, free to regrow in between, re-selected from the current weights), then
    the selection made at the end of epoch ``max_epochs - 1 - hard_epochs`` is held for the remaining epochs as whole
    channels: conv rows, BN gamma/beta and running statistics zeroed, and before every optimizer step their gradients
    and optimizer state (momentum, Adam moments), re-zeroed after it. The last epochs are a fine-tune of the masked
    network, and the removal at the end changes no output. (Holding whole channels from the start does not stay soft:
    a channel whose BN scale is zero gets no gradient, so its filter never regrows and the GM re-selects it.)
  - ``"one_shot"`` (not soft pruning): the first selection (on the weights before training) is held as whole channels
    for the whole fit: a one-shot cut followed by a masked fine-tune. Called ``"strict"`` before 2026-12.
* **Removal** (``on_train_end``): the final selection is zeroed as whole channels and removed with ``prune``. In the
  two filter-only modes this drops the constant the selected channels' BN still emitted (fine-tune afterwards:
  on CIFAR-10 ResNet-20 at 40%, 83.8% masked became 67.3% removed: experiments/RESULTS.md). The
  pruned network, its plan and the sliced optimizer state are then saved as ``pruned.ckpt`` in every
  ``ModelCheckpoint``'s folder, and its ``last.ckpt`` is rewritten; checkpoints written earlier hold the full-width
  soft-pruned network and say so, so ``load_pruned_checkpoint`` and ``trainer.test(ckpt_path=...)`` refuse them.
  Under ``ddp_spawn`` the workers' pruned weights cannot be loaded into the launching process's module: there the
  network stays masked and :meth:`FPGMPruning.finalize` (called in the launching process after ``fit``; the pipeline
  does) removes the zeroed channels.

FPGM-mix: ``norm_ratio`` of each group's ``N`` filters (part of ``pruning_ratio``) are taken first by smallest L2
norm, the rest by the GM criterion; this follows the paper's text (FPGM-mix 40% = 30% GM + 10% norm:
``pruning_ratio=0.4, norm_ratio=0.1``). The authors' script differs: ``--rate_norm 0.7 --rate_dist 0.1`` for ResNet-56
(30% norm + 10% GM) and ``--rate_norm 1 --rate_dist 0.1`` for ResNet-20/32 (10% GM only, in folders named 0.7/0.1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from lightning_compress._namespaces import is_lightning_module
from lightning_compress.callbacks._compat import is_spawning
from lightning_compress.callbacks.base import MAX_PRUNING_RATIO, BasePruningCallback, check_bool
from lightning_compress.callbacks.distributed import broadcast_plan
from lightning_compress.callbacks.network import example_input, resolve_net
from lightning_compress.functional.pruning import DISTANCES
from lightning_compress.pruning import (
    ChannelGraph,
    ChannelMask,
    GeometricMedian,
    PruningPlan,
    build_channel_graph,
    prune,
)
from lightning_compress.pruning.errors import check_fraction, check_positive_int
from lightning_compress.pruning.graph import ChannelGroup
from lightning_compress.pruning.selection import group_ratios, select_counts, select_on_graph

SOFT_MODES = ("authors_code", "paper", "exact", "one_shot")


class FPGMPruning(BasePruningCallback):
    """Soft filter pruning by geometric median during the fit; physical removal at its end (see module docstring).

    Args:
        pruning_ratio: fraction of each group's filters removed, in ``[0, 1)``: a float for every prunable group (the
            paper: the same rate for all layers) or ``{module-name glob: ratio}`` (a group takes the first glob
            matching one of its convs; groups matched by none are left whole); ``None``: 0.4 without a target, the
            searched rate with one (a mapping is then the shape whose rates are scaled together).
        distance: the GM distance: ``l2`` (paper), ``l1`` or ``cos`` (1 - cosine similarity).
        norm_ratio: FPGM-mix: fraction of each group's filters chosen first by smallest L2 norm; ``0`` = FPGM-only.
        frequency: re-select every ``frequency`` epochs (epochs ``0, f, 2f, ...`` and the last one).
        soft_mode: ``authors_code`` | ``paper`` | ``exact`` | ``one_shot`` (see the module docstring).
        hard_epochs: ``exact`` only: the last epochs during which the final selection is held as whole channels
            (at least 1; with ``hard_epochs >= max_epochs`` the selection before training is held: one-shot).
        prune: remove the zeroed channels physically in ``on_train_end``; ``False`` leaves the soft-pruned, full-width
            network (``plan`` stays ``None``; ``selection`` holds the final selection).
        submodule, ignored_layers, input_shape, residual, min_channels, max_pruning_ratio, round_to,
            bn_recalibration, verbose: see
            :class:`BasePruningCallback`.
        target_macs, target_latency_ms, latency_batch_size: a budget instead of a float ratio (see
            :class:`~lightning_compress.callbacks.L1FilterPruning`): resolved in ``setup`` on the weights of that
            moment; the per-group counts found (``budget.counts``) are used by every selection and the removal.

    Attributes:
        selection: the current soft-pruning selection (relative to the unpruned net) or ``None`` before the first one.
        selection_epochs: the epochs at whose end a selection was made (``-1`` = before training).
        changed_channels: per selection, how many selected channels differ from the previous selection.

    Raises:
        TypeError: an argument of the wrong type (bools are not numbers).
        ValueError: ``pruning_ratio``/``norm_ratio`` outside ``[0, 1)``, ``norm_ratio > pruning_ratio``, unknown
            ``distance``/``soft_mode``/``residual``, ``frequency``/``min_channels``/``round_to`` < 1; in ``setup``: a
            ``pruning_ratio`` glob matching no layer, or no prunable channel group.
    """

    def __init__(self, pruning_ratio: float | Mapping[str, float] | None = None, distance: str = "l2",
                 norm_ratio: float = 0.0, frequency: int = 1, soft_mode: str = "authors_code", prune: bool = True,
                 hard_epochs: int = 1,
                 submodule: str | None = None, ignored_layers: Sequence[str] = (),
                 input_shape: Sequence[int] | None = None, residual: str = "couple", min_channels: int = 1,
                 round_to: int | str = 1, verbose: bool = True, target_macs: float | None = None,
                 target_latency_ms: float | None = None, latency_batch_size: int = 1,
                 max_pruning_ratio: float = MAX_PRUNING_RATIO, bn_recalibration: int = 0) -> None:
        if distance not in DISTANCES:
            raise ValueError(f"`distance` must be one of {DISTANCES}, got {distance!r}.")
        check_fraction("norm_ratio", norm_ratio)
        check_positive_int("frequency", frequency)
        if soft_mode == "strict":
            raise ValueError("`soft_mode='strict'` was renamed 'one_shot' (the first selection held as whole channels: "
                             "not soft pruning); 'exact' is soft pruning whose removal costs nothing.")
        if soft_mode not in SOFT_MODES:
            raise ValueError(f"`soft_mode` must be one of {SOFT_MODES}, got {soft_mode!r}.")
        check_bool("prune", prune)
        check_positive_int("hard_epochs", hard_epochs)
        super().__init__(submodule=submodule, ignored_layers=ignored_layers, input_shape=input_shape,
                         residual=residual, min_channels=min_channels, round_to=round_to, verbose=verbose,
                         max_pruning_ratio=max_pruning_ratio, bn_recalibration=bn_recalibration)
        ratios = self.init_amount(pruning_ratio, 0.4, target_macs, target_latency_ms, latency_batch_size)
        active = [r for r in (ratios.values() if isinstance(ratios, dict) else [ratios]) if r is not None and r > 0]
        if active and norm_ratio > min(active):
            raise ValueError(f"`norm_ratio` must be <= `pruning_ratio` (it is the part removed by the norm criterion),"
                             f" got {norm_ratio!r} > {pruning_ratio!r}.")
        self.pruning_ratio = ratios
        self.distance = distance
        self.norm_ratio = float(norm_ratio)
        self.frequency = frequency
        self.soft_mode = soft_mode
        self.prune = prune
        self.selection: PruningPlan | None = None
        self.selection_epochs: list[int] = []
        self.changed_channels: list[int] = []
        self._graph: ChannelGraph | None = None
        self._mask: ChannelMask | None = None
        self._selected_at_step = -1
        self.hard_epochs = hard_epochs
        self.held = soft_mode == "one_shot"  # whole channels held (one_shot always; exact once its hard phase began)

    # ------------------------------------------------------------------ state
    def extra_state(self) -> dict[str, Any]:
        return {"selection": self.selection.to_dict() if self.selection is not None else None,
                "selection_epochs": list(self.selection_epochs), "changed_channels": list(self.changed_channels),
                "selected_at_step": self._selected_at_step, "held": self.held}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        selection = state.get("selection")
        self.selection = PruningPlan.from_dict(selection) if selection is not None else None
        self.selection_epochs = [int(e) for e in state.get("selection_epochs", [])]
        self.changed_channels = [int(c) for c in state.get("changed_channels", [])]
        self._selected_at_step = int(state.get("selected_at_step", -1))
        self.held = bool(state.get("held", self.held))
        self._mask = None  # recompiled against the live network when next needed

    def soft_selection(self) -> PruningPlan | None:
        return None if self.finished else self.selection

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit" or self.finished:
            return
        self._graph = self.build_graph()
        if self.has_target:
            if self.budget is None:  # the counts that meet the target, used by every selection and the removal
                self.aligned(lambda: self.fit_to_budget(self._graph, self.pruning_ratio, self.importance(),
                                                        rounding="remove"))
        elif not group_ratios(self._graph, self.require_net(), self.pruning_ratio, list(self.ignored_layers)):
            raise ValueError(f"FPGMPruning found no prunable channel group for `pruning_ratio`={self.pruning_ratio!r}"
                             f" (after `ignored_layers`={list(self.ignored_layers)!r}).")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.finished or self._graph is None:
            return
        if self.selection is None:
            self._select(trainer, epoch=-1, hold=self._hard_phase_begins(-1, trainer.max_epochs))
        else:  # resumed: the selection came back with the callback state, the zeroed weights with the model
            self._compiled().apply()

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        if self.finished or self.selection is None or not (self.held or self.soft_mode == "authors_code"):
            return  # paper, and exact before its hard phase: the zeroed filters are free to regrow
        mask = self._compiled()
        mask.zero_grads()
        if self.held:
            mask.zero_optimizer_state(optimizer)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.held and not self.finished and self.selection is not None:
            self._compiled().apply()  # weight decay / Adam move zero weights with zero state otherwise

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.finished or trainer.sanity_checking or self._graph is None:
            return
        if self.should_select(trainer.current_epoch, trainer.max_epochs):
            self._select(trainer, trainer.current_epoch, hold=self._hard_phase_begins(trainer.current_epoch,
                                                                                      trainer.max_epochs))
        if self.selection is not None:
            pl_module.log_dict({"fpgm/masked_channels": float(self.selection.num_removed),
                                "fpgm/changed_channels": float(self.changed_channels[-1] if self.changed_channels
                                                               else 0)}, on_step=False, on_epoch=True)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.finished or self._graph is None or self.selection is None:
            return
        if trainer.global_step != self._selected_at_step and not self.held:
            self._select(trainer, trainer.current_epoch)  # training stopped between selections: the final one
        ChannelMask(self.require_net(), self.selection).apply()  # whole channels: what the removal keeps equal
        if not self.prune:
            return
        if is_spawning(trainer):
            rank_zero_warn("FPGMPruning under a spawned strategy (ddp_spawn): the workers' pruned weights could not "
                           "be loaded back into the main process' module, so the network is left soft-pruned "
                           "(zeroed channels). Call `callback.finalize(module)` in the main process after `fit`.")
            return
        self.apply_plan(trainer, self.selection, end_of_fit=True)  # saves pruned.ckpt, rewrites last.ckpt
        self._graph, self._mask = None, None

    # ------------------------------------------------------------------ decisions
    def should_select(self, epoch: int, max_epochs: int | None) -> bool:
        """Whether to re-select at the end of ``epoch`` (0-based): every ``frequency``-th epoch and the last one;
        never while a selection is held (one_shot; exact's hard phase), and ``exact`` at the start of its hard phase."""
        if self.held:
            return False
        return (epoch % self.frequency == 0 or (max_epochs is not None and epoch == max_epochs - 1)
                or self._hard_phase_begins(epoch, max_epochs))

    def _hard_phase_begins(self, epoch: int, max_epochs: int | None) -> bool:
        """``exact``: whether the selection at the end of ``epoch`` (-1: before training) is the one held."""
        if self.soft_mode != "exact" or max_epochs is None or max_epochs < 0:
            return False
        return epoch == max(max_epochs - 1 - self.hard_epochs, -1)

    def importance(self) -> GeometricMedian:
        return GeometricMedian(self.distance, self.norm_ratio)

    def select(self) -> PruningPlan:
        """The GM selection of the current weights (rank-local; changes nothing): ``select_channels`` with this
        callback's arguments."""
        graph = self._graph if self._graph is not None else self.build_graph()
        if self.budget is not None:  # a target: the counts found in setup
            return select_counts(graph, self.require_net(), self.budget.counts, self.importance())
        return self.aligned(lambda: select_on_graph(graph, self.require_net(), self.pruning_ratio, self.importance(),
                                                    rounding="remove", **self.selection_args()))

    def finalize(self, pl_module: pl.LightningModule | nn.Module,
                 example_inputs: torch.Tensor | None = None) -> PruningPlan | None:
        """Remove the channels a spawned fit left zeroed, in *this* process (see the module docstring).

        Rebuilds the selection from the weights: in each selected group, the positions whose output-side tensors
        (conv rows, BN gamma/beta) are all exactly zero. Sets ``plan``/``finished`` and returns the plan.
        ``example_inputs`` (one batch) is only needed when neither ``input_shape``, ``example_input_array`` nor the
        trainer's datamodule gives one.
        """
        if self.finished or not self.prune:
            return self.plan
        net = self.net if self.net is not None else _network(pl_module, self.submodule)
        example = example_inputs if example_inputs is not None else self.example_inputs
        if example is None:
            example = example_input(getattr(pl_module, "_trainer", None), pl_module, net, self.input_shape)
        if example is None:
            raise ValueError("`example_inputs` must be given to `finalize`: no `input_shape`, `example_input_array` or "
                             "datamodule `example_input` was found.")
        graph = build_channel_graph(net, example.to(next(net.parameters()).device), residual=self.residual)
        groups = (self.budget.counts if self.budget is not None
                  else group_ratios(graph, net, self.pruning_ratio, list(self.ignored_layers)))
        removed = {gid: _zero_positions(graph.group(gid), net) for gid in groups}
        plan = graph.plan({gid: positions for gid, positions in removed.items() if positions})
        prune(net, plan)
        self.net, self.plan, self.finished, self.selection = net, plan, True, plan
        rank_zero_info(f"[FPGMPruning] finalize: removed {plan.num_removed} zeroed channels")
        return plan

    # ------------------------------------------------------------------ internals
    def _select(self, trainer: pl.Trainer, epoch: int, hold: bool = False) -> None:
        if self.held and self.selection is not None:
            plan = self.selection  # one_shot / exact's hard phase: the held selection stays
        else:
            plan = broadcast_plan(trainer, self.select())
        self.changed_channels.append(_changed(self.selection, plan))
        self.selection = plan
        self.selection_epochs.append(epoch)
        self._selected_at_step = trainer.global_step
        self.held = self.held or hold
        self._mask = None
        self._compiled().apply()

    def _compiled(self) -> ChannelMask:
        """The mask of ``selection`` (cached): whole channels in exact/one-shot mode, else the conv filters only."""
        if self._mask is None:
            slots = None if self.held else {"out"}
            self._mask = ChannelMask(self.require_net(), self.selection, slots=slots)
        return self._mask


def _changed(before: PruningPlan | None, after: PruningPlan) -> int:
    """Selected group positions of ``after`` that ``before`` did not select."""
    old = {g.id: set(g.removed) for g in before.groups} if before is not None else {}
    return sum(len(set(g.removed) - old.get(g.id, set())) for g in after.groups)


def _zero_positions(group: ChannelGroup, net: nn.Module) -> list[int]:
    """Group positions whose every output-side tensor (conv rows, bias, BN gamma/beta) is exactly zero."""
    modules = dict(net.named_modules())
    alive = torch.zeros(group.size, dtype=torch.bool)
    for member in group.members:
        if member.slot == "in":
            continue
        module = modules[member.module]
        for attr in ("weight", "bias"):
            tensor = getattr(module, attr, None)
            if not isinstance(tensor, torch.Tensor):
                continue
            rows = tensor.detach()[torch.as_tensor(member.indices, device=tensor.device)].cpu()
            alive[torch.as_tensor(member.positions)] |= rows.reshape(len(member.indices), -1).ne(0).any(1)
    return torch.nonzero(~alive).flatten().tolist()


def _network(pl_module: pl.LightningModule | nn.Module, submodule: str | None) -> nn.Module:
    if is_lightning_module(pl_module):
        return resolve_net(pl_module, submodule)[0]
    return pl_module
