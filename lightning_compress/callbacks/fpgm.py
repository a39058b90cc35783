"""FPGM: filter pruning via geometric median (He et al., CVPR 2019) as a Lightning callback.

Soft pruning during the fit, physical removal at its end:

* **Selection** (``on_train_start``, then ``on_train_epoch_end`` of epochs ``0, f, 2f, ...`` and of the last epoch,
  ``f = frequency``, as the authors' ``epoch % epoch_prune == 0``). In every prunable channel group of the engine's
  graph (a plain conv, or all convs coupled by residual adds, scored on their concatenated filters) the
  ``int(N * pruning_ratio)`` filters nearest the geometric median are chosen: smallest summed distance (``torch.cdist``
  on the weights' device, raw flattened weights, ``distance`` = ``l2``/``l1``/``cos``) to the group's other filters.
  FPGM-mix: ``int(N * norm_ratio)`` of them are first taken by smallest L2 norm, the rest by the GM criterion.
* **Soft pruning**: ``freeze_pruned=True`` (the authors' code) zeroes whole channels (conv rows/bias, BN gamma, beta
  and running stats: they output exactly 0 in train and eval mode) and, before every optimizer step, their gradients
  and optimizer state (SGD momentum, Adam moments; otherwise momentum gathered before a selection "revives" them),
  then re-zeroes them after the step: the selection made before training never changes, and the trained network
  already computes what the compact one will. ``freeze_pruned=False`` (the paper's Algorithm 1, as SFP) zeroes only
  the conv rows/bias (and the BN running stats) and leaves BN gamma/beta alone, as the reference code does: the
  channel then emits ``ReLU(beta)``, gradient flows into the zeroed filters, they regrow during the epoch and may
  leave the selection at the next one. (Zeroing beta too would make the channel output exactly 0, and ReLU's zero
  gradient at 0 would stop any regrowth.)
* **Removal** (``on_train_end``): the final selection is zeroed completely (conv rows, BN gamma and beta) and then
  removed with the engine's ``prune``: the compact network computes exactly what the soft-pruned one does after this
  final mask. With ``freeze_pruned=False`` that final mask also drops the ``ReLU(beta)`` constants the selected
  channels still emitted, which costs some accuracy (the fine-tune recovers it); with ``freeze_pruned=True`` nothing
  changes. ``plan`` becomes the cumulative plan relative to the unpruned network (the pipeline's
  contract). Under ``ddp_spawn`` the removal happens in the worker processes, whose pruned weights the launcher cannot
  load into the main process' full-width module: there the callback only masks, and :meth:`FPGMPruning.finalize`
  (called in the main process after ``fit``) removes the zeroed channels.

``pruning_ratio`` semantics follow the reference code (``--rate_dist``): the number *removed* is ``int(N * ratio)``
(16 filters at 0.4 -> 6 removed, 10 kept). ``norm_ratio`` is the part of it taken by the norm criterion: the paper's
text for FPGM-mix 40% reads ``pruning_ratio=0.4, norm_ratio=0.1`` (30% GM + 10% norm), the authors' script
(``--rate_norm 0.7 --rate_dist 0.1``) means ``norm_ratio=0.3`` (30% norm + 10% GM).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.strategies.launchers.multiprocessing import _MultiProcessingLauncher
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from lightning_compress.callbacks.base import BasePruningCallback
from lightning_compress.pruning.errors import check_fraction, check_ratio

if TYPE_CHECKING:
    from lightning_compress.pruning import ChannelGraph, ChannelMask, PruningPlan

DISTANCES = ("l2", "l1", "cos")


# ---------------------------------------------------------------------- the criterion (pure tensor math)
def distance_sums(filters: torch.Tensor, distance: str = "l2") -> torch.Tensor:
    """Sum of distances from each row of ``filters`` (``N x D``) to every row: small = near the geometric median.

    ``l2``/``l1`` are Minkowski distances (``torch.cdist``); ``cos`` is ``1 - cosine similarity`` (scipy's
    ``cosine``). Computed in fp32 on the tensor's device.
    """
    rows = filters.detach().flatten(1).float()
    if distance == "cos":
        unit = F.normalize(rows, dim=1)
        pairwise = (1.0 - unit @ unit.T).clamp_min(0.0)
    elif distance in ("l2", "l1"):
        pairwise = torch.cdist(rows, rows, p=2.0 if distance == "l2" else 1.0)
    else:
        raise ValueError(f"`distance` must be one of {DISTANCES}, got {distance!r}.")
    return pairwise.sum(1)


def fpgm_select(filters: torch.Tensor, n_prune: int, n_norm: int = 0, distance: str = "l2") -> torch.Tensor:
    """Indices (sorted, CPU int64) of the ``n_prune`` filters to zero among the rows of ``filters``.

    First the ``n_norm`` rows of smallest L2 norm ("FPGM-mix"), then, among the others, the ``n_prune - n_norm``
    rows of smallest :func:`distance_sums` (nearest the geometric median). Ties go to the lower index.
    """
    if not 0 <= n_norm <= n_prune <= filters.shape[0]:
        raise ValueError(f"need 0 <= n_norm <= n_prune <= {filters.shape[0]}, got n_norm={n_norm}, n_prune={n_prune}.")
    rows = filters.detach().flatten(1).float()
    chosen = torch.argsort(rows.norm(dim=1), stable=True)[:n_norm]
    rest = torch.ones(rows.shape[0], dtype=torch.bool, device=rows.device)
    rest[chosen] = False
    candidates = torch.nonzero(rest).flatten()
    n_gm = n_prune - n_norm
    if n_gm:
        sums = distance_sums(rows[candidates], distance)
        chosen = torch.cat([chosen, candidates[torch.argsort(sums, stable=True)[:n_gm]]])
    return torch.sort(chosen.cpu()).values


def prune_counts(size: int, ratio: float, norm_ratio: float, min_channels: int = 1, round_to: int = 1
                 ) -> tuple[int, int]:
    """``(n_prune, n_norm)`` of a group of ``size``: ``int(size * ratio)`` removed (the reference's count), the kept
    width rounded up to ``round_to`` and at least ``min_channels``; ``int(size * norm_ratio)`` of them by norm."""
    keep = size - math.floor(size * ratio + 1e-9)
    if round_to > 1:
        keep = math.ceil(keep / round_to) * round_to
    keep = min(size, max(keep, min_channels, 1))
    n_prune = size - keep
    return n_prune, min(n_prune, math.floor(size * norm_ratio + 1e-9))


# ---------------------------------------------------------------------- the callback
class FPGMPruning(BasePruningCallback):
    """Soft filter pruning by geometric median during the fit; physical removal at its end (see module docstring).

    Args:
        pruning_ratio: fraction of each selected group's filters removed, in ``[0, 1)``: a float for every prunable
            group (the paper: the same rate for all layers), or ``{module-name glob: ratio}`` where a group takes the
            first glob matching one of its convs (groups matched by none are left whole).
        distance: the GM distance: ``l2`` (paper), ``l1`` or ``cos`` (1 - cosine similarity).
        norm_ratio: FPGM-mix: fraction of each group's filters (of all ``N``, part of ``pruning_ratio``) chosen first
            by smallest L2 norm; ``0`` = FPGM-only.
        frequency: re-select every ``frequency`` epochs (epochs ``0, f, 2f, ...`` and the last one).
        freeze_pruned: ``True``: the authors' code (whole channels incl. BN gamma/beta zeroed, and their gradients
            and optimizer state before every step: the selection never changes and the removal costs nothing).
            ``False``: the paper's Algorithm 1 (only the filters are zeroed, BN is kept, they regrow until the next
            selection; the final whole-channel mask drops the ``ReLU(beta)`` constants, so fine-tune afterwards).
        min_channels: every group keeps at least this many channels.
        round_to: the kept width of every group is rounded up to a multiple of this.
        prune: remove the zeroed channels physically in ``on_train_end``; ``False`` leaves the soft-pruned, full-width
            network (``plan`` stays ``None``; ``selection`` holds the final mask plan).
        submodule, ignored_layers, input_shape, verbose: see :class:`BasePruningCallback`.

    Attributes:
        selection: the current soft-pruning plan (relative to the unpruned net) or ``None`` before the first one.
        selection_epochs: the epochs at whose end a selection was made (``-1`` = before training).
        changed_channels: per selection, how many selected channels differ from the previous selection.

    Raises:
        TypeError: an argument of the wrong type (bools are not numbers).
        ValueError: ``pruning_ratio``/``norm_ratio`` outside ``[0, 1)``, ``norm_ratio > pruning_ratio``, unknown
            ``distance``, ``frequency``/``min_channels``/``round_to`` < 1; in ``setup``: a ``pruning_ratio`` glob
            matching no layer, or no prunable channel group.
    """

    def __init__(self, pruning_ratio: float | Mapping[str, float] = 0.4, distance: str = "l2",
                 norm_ratio: float = 0.0, frequency: int = 1, freeze_pruned: bool = False, min_channels: int = 1,
                 round_to: int = 1, prune: bool = True, submodule: str | None = None,
                 ignored_layers: Sequence[str] = (), input_shape: Sequence[int] | None = None,
                 verbose: bool = True) -> None:
        ratios = check_ratio(pruning_ratio)
        if not isinstance(distance, str) or distance not in DISTANCES:
            raise ValueError(f"`distance` must be one of {DISTANCES}, got {distance!r}.")
        check_fraction("norm_ratio", norm_ratio)
        active = [r for r in (ratios.values() if isinstance(ratios, dict) else [ratios]) if r > 0]
        if active and norm_ratio > min(active):
            raise ValueError(f"`norm_ratio` must be <= `pruning_ratio` (it is the part removed by the norm criterion),"
                             f" got {norm_ratio!r} > {pruning_ratio!r}.")
        for name, value in (("frequency", frequency), ("min_channels", min_channels), ("round_to", round_to)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"`{name}` must be an int >= 1, got {value!r}.")
            if value < 1:
                raise ValueError(f"`{name}` must be an int >= 1, got {value!r}.")
        for name, value in (("freeze_pruned", freeze_pruned), ("prune", prune)):
            if not isinstance(value, bool):
                raise TypeError(f"`{name}` must be a bool, got {value!r}.")
        super().__init__(submodule=submodule, ignored_layers=ignored_layers, input_shape=input_shape,
                         verbose=verbose)
        self.pruning_ratio = ratios
        self.distance = distance
        self.norm_ratio = float(norm_ratio)
        self.frequency = frequency
        self.freeze_pruned = freeze_pruned
        self.min_channels = min_channels
        self.round_to = round_to
        self.prune = prune
        self.selection: PruningPlan | None = None
        self.selection_epochs: list[int] = []
        self.changed_channels: list[int] = []
        self._graph: ChannelGraph | None = None
        self._group_ratios: dict[str, float] = {}
        self._mask: ChannelMask | None = None
        self._selected_at_step = -1

    # ------------------------------------------------------------------ state
    def extra_state(self) -> dict[str, Any]:
        return {"selection": self.selection.to_dict() if self.selection is not None else None,
                "selection_epochs": list(self.selection_epochs), "changed_channels": list(self.changed_channels),
                "selected_at_step": self._selected_at_step}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        from lightning_compress.pruning import PruningPlan

        selection = state.get("selection")
        self.selection = PruningPlan.from_dict(selection) if selection is not None else None
        self.selection_epochs = [int(e) for e in state.get("selection_epochs", [])]
        self.changed_channels = [int(c) for c in state.get("changed_channels", [])]
        self._selected_at_step = int(state.get("selected_at_step", -1))
        self._mask = None  # recompiled against the live network when next needed

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit" or self.finished:
            return
        from lightning_compress.pruning import build_channel_graph

        if self.example_inputs is None:
            raise ValueError("`input_shape` must be given: FPGMPruning found no example input (no datamodule with "
                             "`example_input`, no `example_input_array`, no train batch).")
        net = self._require_net()
        was_training = net.training
        try:
            self._graph = build_channel_graph(net, self.example_inputs)
        finally:
            net.train(was_training)
        self._group_ratios = self._graph.resolve_ratios(net, self.pruning_ratio, self.ignored_layers)
        if not self._group_ratios:
            raise ValueError(f"FPGMPruning found no prunable channel group for `pruning_ratio`={self.pruning_ratio!r}"
                             f" (after `ignored_layers`={list(self.ignored_layers)!r}).")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.finished or self._graph is None:
            return
        if self.selection is None:
            self._select(trainer, epoch=-1)
        else:  # resumed: the masks came back with the callback state and the (already zeroed) weights
            self._apply()

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        if self.freeze_pruned and not self.finished and self.selection is not None:
            mask = self._compiled()
            mask.zero_grads()
            mask.zero_optimizer_state(optimizer)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.freeze_pruned and not self.finished and self.selection is not None:
            self._compiled().apply()  # insurance against optimizers that move zero weights with zero state

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.finished or trainer.sanity_checking or self._graph is None:
            return
        epoch = trainer.current_epoch
        if self.should_select(epoch, trainer.max_epochs):
            self._select(trainer, epoch)
        if self.selection is not None:
            removed = self.selection.num_removed
            pl_module.log_dict({"fpgm/masked_channels": float(removed),
                                "fpgm/changed_channels": float(self.changed_channels[-1] if self.changed_channels
                                                               else 0)}, on_step=False, on_epoch=True)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.finished or self._graph is None or self.selection is None:
            return
        if trainer.global_step != self._selected_at_step and not self.freeze_pruned:
            self._select(trainer, trainer.current_epoch)  # training stopped between selections: the final one
        self._apply(final=True)
        if not self.prune:
            return
        if isinstance(getattr(trainer.strategy, "launcher", None), _MultiProcessingLauncher):
            rank_zero_warn("FPGMPruning under a spawned strategy (ddp_spawn): the workers' pruned weights could not "
                           "be loaded back into the main process' module, so the network is left soft-pruned "
                           "(zeroed channels). Call `callback.finalize(module)` in the main process after `fit`.")
            return
        self.apply_plan(trainer, self.selection)
        self._release()

    # ------------------------------------------------------------------ decisions
    def should_select(self, epoch: int, max_epochs: int | None) -> bool:
        """Whether to re-select at the end of ``epoch`` (0-based): every ``frequency``-th epoch and the last one."""
        return epoch % self.frequency == 0 or (max_epochs is not None and epoch == max_epochs - 1)

    def select(self) -> PruningPlan:
        """The GM selection of the current weights (rank-local; :meth:`_select` broadcasts rank 0's)."""
        from lightning_compress.pruning.importance import position_vectors

        graph, net = self._require_graph(), self._require_net()
        removed: dict[str, list[int]] = {}
        for gid, ratio in self._group_ratios.items():
            group = graph.group(gid)
            n_prune, n_norm = prune_counts(group.size, ratio, self.norm_ratio, self.min_channels, self.round_to)
            if n_prune:
                vectors = position_vectors(group, net)
                removed[gid] = fpgm_select(vectors, n_prune, n_norm, self.distance).tolist()
        return graph.plan(removed)

    def finalize(self, pl_module: pl.LightningModule | nn.Module,
                 example_inputs: torch.Tensor | None = None) -> PruningPlan | None:
        """Remove the channels a spawned fit left zeroed, in *this* process (see the module docstring).

        Rebuilds the selection from the weights: in each selected group, the positions whose conv rows and BN
        gamma/beta are all exactly zero. Sets ``plan``/``finished`` and returns the plan. ``example_inputs`` (one
        batch) is only needed when neither ``input_shape``, ``example_input_array`` nor the trainer's datamodule
        gives one.
        """
        from lightning_compress.pruning import build_channel_graph, prune

        if self.finished:
            return self.plan
        net = self._require_net() if self.net is not None else _resolve(pl_module, self.submodule)
        example = example_inputs if example_inputs is not None else self._finalize_input(pl_module, net)
        graph = build_channel_graph(net, example)
        ratios = graph.resolve_ratios(net, self.pruning_ratio, self.ignored_layers)
        removed = {gid: _zero_positions(graph.group(gid), net) for gid in ratios}
        plan = graph.plan({gid: pos for gid, pos in removed.items() if pos})
        prune(net, plan)
        self.net, self.plan, self.finished, self.selection = net, plan, True, plan
        rank_zero_info(f"[FPGMPruning] finalize: removed {plan.num_removed} zeroed channels")
        return plan

    # ------------------------------------------------------------------ internals
    def _select(self, trainer: pl.Trainer, epoch: int) -> None:
        from lightning_compress.pruning import PruningPlan

        if self.freeze_pruned and self.selection is not None:
            plan = self.selection  # the authors' code: the (zero) selected filters stay selected
        else:
            plan = PruningPlan.from_dict(self.broadcast(trainer, self.select().to_dict()))
        self.changed_channels.append(_changed(self.selection, plan))
        self.selection = plan
        self.selection_epochs.append(epoch)
        self._selected_at_step = trainer.global_step
        self._mask = None
        self._apply()

    def _compiled(self) -> ChannelMask:
        """The engine's mask of ``selection`` (cached); BN gamma/beta are left out unless ``freeze_pruned``."""
        if self._mask is None:
            self._mask = channel_mask(self._require_net(), self.selection, keep_affine=not self.freeze_pruned)
        return self._mask

    def _apply(self, final: bool = False) -> None:
        """Zero the selection; ``final`` zeroes whole channels (BN gamma too) before the removal."""
        net = self._require_net()
        (channel_mask(net, self.selection) if final else self._compiled()).apply()

    def _release(self) -> None:
        self._graph, self._mask = None, None

    def _require_graph(self) -> ChannelGraph:
        if self._graph is None:
            raise RuntimeError("FPGMPruning has no channel graph yet: it is built in `setup`.")
        return self._graph

    def _finalize_input(self, pl_module: Any, net: nn.Module) -> torch.Tensor:
        device = next(net.parameters()).device
        if self.example_inputs is not None:
            return self.example_inputs.to(device)
        if self.input_shape is not None:
            return torch.zeros(1, *self.input_shape, device=device)
        example = getattr(pl_module, "example_input_array", None)
        if isinstance(example, torch.Tensor):
            return example[:1].to(device)
        datamodule = getattr(getattr(pl_module, "_trainer", None), "datamodule", None)
        if callable(getattr(datamodule, "example_input", None)):
            return datamodule.example_input(1).to(device)
        raise ValueError("`example_inputs` must be given to `finalize`: no `input_shape`, `example_input_array` or "
                         "datamodule `example_input` was found.")


# ---------------------------------------------------------------------- helpers
def _changed(before: PruningPlan | None, after: PruningPlan) -> int:
    """Selected group positions of ``after`` that ``before`` did not select."""
    old = {g.id: set(g.removed) for g in before.groups} if before is not None else {}
    return sum(len(set(g.removed) - old.get(g.id, set())) for g in after.groups)


def channel_mask(net: nn.Module, plan: PruningPlan, keep_affine: bool = False) -> ChannelMask:
    """The engine's :class:`ChannelMask` of ``plan``; ``keep_affine`` leaves the norm layers' gamma/beta out of it."""
    from lightning_compress.pruning import ChannelMask

    mask = ChannelMask(net, plan)
    if keep_affine:
        keep = [i for i, (module, attr, _, _) in enumerate(mask.entries)
                if not (isinstance(module, nn.modules.batchnorm._NormBase) and attr in ("weight", "bias"))]
        mask.entries = [mask.entries[i] for i in keep]
        mask.names = [mask.names[i] for i in keep]
    return mask


def _zero_positions(group: Any, net: nn.Module) -> list[int]:
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
            nonzero = rows.reshape(len(member.indices), -1).ne(0).any(1)
            alive[torch.as_tensor(member.positions)] |= nonzero
    return torch.nonzero(~alive).flatten().tolist()


def _resolve(pl_module: Any, submodule: str | None) -> nn.Module:
    from lightning_compress.callbacks.base import resolve_net

    if isinstance(pl_module, pl.LightningModule):
        return resolve_net(pl_module, submodule)[0]
    return pl_module
