"""What the three pruning callbacks share: arguments, the network they prune, its plan, state and logging.

Each callback (``L1FilterPruning``, ``NetworkSlimming``, ``FPGMPruning``) decides *when* to prune and with which of the
engine's criteria; the choice of channels is always ``lightning_compress.pruning.select_on_graph`` (the same as
``select_channels`` with the same arguments) and the removal ``prune``. The roles around it live in their own modules:
:mod:`.network` (which network, an example input), :mod:`.checkpointing` (plans in checkpoints, re-pruning on resume),
:mod:`.distributed` (rank 0 decides; ``ddp_spawn`` hand-back) and :mod:`._compat` (private Lightning APIs).

The pipeline's contract with a compression callback is :class:`CompressionCallback`: after the fit, ``plan`` is the
cumulative plan relative to the unpruned network and the network is physically smaller; ``finalize`` completes a
removal the fit could not do in this process (FPGM under ``ddp_spawn``).
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from lightning_compress._namespaces import CallbackBase
from lightning_compress.callbacks._compat import is_spawn_worker
from lightning_compress.callbacks.checkpointing import (
    PlanRestorer,
    attach_plan,
    attached_plan,
    pruned_checkpoint_paths,
    save_after_cut,
    write_plan,
)
from lightning_compress.callbacks.distributed import broadcast_plan, hand_back_unpruned_only
from lightning_compress.callbacks.network import (
    device_of,
    example_input,
    format_width_table,
    layer_widths,
    resolve_net,
    training_inputs,
)
from lightning_compress.cost import count_macs, count_params
from lightning_compress.pruning import Budget, ChannelGraph, PruningPlan, build_channel_graph, fit_budget, prune
from lightning_compress.pruning.alignment import AUTO, check_round_to, choose_round_to
from lightning_compress.pruning.budget import check_amount
from lightning_compress.pruning.calibration import (
    batchnorm_buffers,
    dead_channels,
    describe_dead,
    recalibrate_batchnorm,
)
from lightning_compress.pruning.errors import check_positive_int
from lightning_compress.pruning.selection import check_max_pruning_ratio, ignored_names
from lightning_compress.pruning.streams import check_residual

# The per-group cap of every pruning callback and method YAML: no layer loses more than 90% of its channels (chosen
# on digits Slimming at 60/70%: experiments/results/digits_max_pruning_ratio/).
MAX_PRUNING_RATIO = 0.9


@runtime_checkable
class CompressionCallback(Protocol):
    """What the pipeline needs from a compression callback (see the module docstring)."""

    plan: PruningPlan | None
    finished: bool

    def finalize(self, pl_module: pl.LightningModule, example_inputs: torch.Tensor | None = None
                 ) -> PruningPlan | None: ...


class BasePruningCallback(CallbackBase):
    """Common ground of the pruning callbacks.

    Args:
        submodule: attribute path of the network inside the LightningModule (``"net"``, ``"backbone.body"``);
            ``None`` = ``pl_module.net``, else ``pl_module.model``, else the LightningModule itself.
        ignored_layers: module-name globs (relative to the network) whose output width never changes.
        input_shape: one input's shape without the batch dimension, e.g. ``[3, 32, 32]``; only needed when neither
            ``trainer.datamodule.example_input`` nor ``pl_module.example_input_array`` nor a train batch exists.
        residual: ``"couple"`` (a residual / dense-concat stream is pruned jointly with all its writers and readers)
            or ``"select"`` (each layer on its own, the stream keeps its width; see ``pruning.streams``).
        min_channels: channels every group keeps at least.
        max_pruning_ratio: no group loses more than this fraction of its channels (Torch-Pruning's name; 1 = no cap).
            Under a global threshold the channels a capped group keeps are taken from the next-lowest scores
            elsewhere, so the global count still goes. Default 0.9 (see ``MAX_PRUNING_RATIO``).
        round_to: kept widths are rounded up to a multiple of this (e.g. 8 for vector units), or ``"auto"``: at the
            first selection the method's plan at ``round_to`` 1, 8 and 16 is timed on the trainer's device at
            ``latency_batch_size`` and the fastest is kept when measurably faster than 1
            (:func:`~lightning_compress.pruning.alignment.choose_round_to`); the choice and what was measured are
            in ``alignment`` (and the run's results.json), later selections use the chosen multiple.
        bn_recalibration: after the cut, re-estimate every BatchNorm's running statistics on this many training
            batches (no gradient; 0 = off). The statistics before it are kept in ``bn_buffers_before_recalibration``.
        verbose: log params/MACs before and after and the per-layer table of kept channels (rank 0).

    Attributes:
        plan: the cumulative plan relative to the unpruned network once pruned physically, else ``None`` (composed
            with the plan of an earlier fit or of ``load_pruned_checkpoint``, recorded on the network).
        pruned_checkpoints: the checkpoints saved right after a cut at the end of the fit (Slimming, FPGM):
            ``pruned.ckpt`` in every ``ModelCheckpoint`` folder and the rewritten ``last.ckpt``.
        finished: True once the callback has made its one structural change.
        net, net_path: the resolved network and its attribute path in the LightningModule.
        device: the trainer's root device (set in ``setup``): where a latency target is timed.
        example_inputs: a batch of one input (for tracing and MACs), made in ``setup`` on the network's device and
            dtype of that moment; Lightning moves and converts the module afterwards (GPU, ``*-true`` precisions), so
            every use moves it to the network's device and dtype.
        profile: ``{"before": {"params", "macs"}, "after": {...}}`` of the structural change.
        target_macs, target_latency_ms, latency_batch_size: the budget of a subclass that takes one (see
            :meth:`init_amount`); ``budget``: what the search found (:class:`~lightning_compress.pruning.Budget`, kept
            in the callback state), ``None`` without a target.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: ``residual`` unknown, ``min_channels``/``round_to`` < 1; in ``setup``: ``submodule`` names no
            module, or a glob of ``ignored_layers`` matches no layer.
    """

    def __init__(self, submodule: str | None = None, ignored_layers: Sequence[str] = (),
                 input_shape: Sequence[int] | None = None, residual: str = "couple", min_channels: int = 1,
                 round_to: int | str = 1, verbose: bool = True, max_pruning_ratio: float = MAX_PRUNING_RATIO,
                 bn_recalibration: int = 0) -> None:
        if submodule is not None and not isinstance(submodule, str):
            raise TypeError(f"`submodule` must be a str or None, got {submodule!r}.")
        if isinstance(ignored_layers, str) or not all(isinstance(p, str) for p in _as_list(ignored_layers)):
            raise TypeError(f"`ignored_layers` must be a list of module-name globs (str), got {ignored_layers!r}.")
        if input_shape is not None and (isinstance(input_shape, str) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in _as_list(input_shape))):
            raise TypeError(f"`input_shape` must be a list of positive ints or None, got {input_shape!r}.")
        check_residual(residual)
        check_positive_int("min_channels", min_channels)
        check_round_to(round_to)
        check_max_pruning_ratio(max_pruning_ratio)
        if check_int("bn_recalibration", bn_recalibration) < 0:
            raise ValueError(f"`bn_recalibration` must be >= 0 (training batches; 0 = off), got {bn_recalibration!r}.")
        check_bool("verbose", verbose)
        self.submodule = submodule
        self.ignored_layers = tuple(_as_list(ignored_layers))
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.residual = residual
        self.min_channels = min_channels
        self.round_to = round_to
        self.alignment: dict[str, Any] | None = None  # round_to="auto": what was timed and chosen
        self._multiple = round_to if isinstance(round_to, int) else 1  # the round_to selections use
        self.max_pruning_ratio = float(max_pruning_ratio)
        self.bn_recalibration = bn_recalibration
        self.bn_buffers_before_recalibration: dict[str, torch.Tensor] | None = None
        self.dead_after_cut: dict[str, tuple[int, int]] = {}
        self.verbose = verbose
        self.plan: PruningPlan | None = None
        self.finished = False
        self.net: nn.Module | None = None
        self.net_path = ""
        self.example_inputs: torch.Tensor | None = None
        self.profile: dict[str, dict[str, int]] = {}
        self.target_macs: float | None = None
        self.target_latency_ms: float | None = None
        self.latency_batch_size = 1
        self.budget: Budget | None = None
        self.device: torch.device | None = None
        self.pruned_checkpoints: list[str] = []  # written after a cut at the end of the fit (see apply_plan)
        self._restorer = PlanRestorer(self)

    # ------------------------------------------------------------------ identity and state
    @property
    def state_key(self) -> str:
        return self._generate_state_key(submodule=self.submodule)

    def state_dict(self) -> dict[str, Any]:
        return {"plan": self.plan.to_dict() if self.plan is not None else None, "finished": self.finished,
                "profile": copy.deepcopy(self.profile),
                "budget": self.budget.as_dict() if self.budget is not None else None,
                "alignment": copy.deepcopy(self.alignment), **self.extra_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        plan = state_dict.get("plan")
        if plan is not None and self.plan is None:
            self.plan = PruningPlan.from_dict(plan)
        self.finished = bool(state_dict.get("finished", self.finished))
        self.profile = dict(state_dict.get("profile", self.profile))
        if state_dict.get("budget") is not None:
            self.budget = Budget.from_dict(state_dict["budget"])
        if state_dict.get("alignment") is not None:
            self.alignment = dict(state_dict["alignment"])
            self._multiple = int(self.alignment["round_to"])
        self.load_extra_state(state_dict)

    def extra_state(self) -> dict[str, Any]:
        """Subclass state saved beside ``plan``/``finished`` (plain Python values or CPU tensors)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` saved; use ``state.get(key, default)`` for old checkpoints."""

    def soft_selection(self) -> PruningPlan | None:
        """A selection that is zeroed but not yet removed (FPGM during its fit); ``None`` for one-shot callbacks."""
        return None

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.net, self.net_path = resolve_net(pl_module, self.submodule)
        self.device = getattr(getattr(trainer, "strategy", None), "root_device", None)  # None: the net's device
        if self.ignored_layers:
            ignored_names(self.net, list(self.ignored_layers))  # every glob must match (lists the names)
        if stage == "fit":
            self.example_inputs = example_input(trainer, pl_module, self.net, self.input_shape)
        self._restorer.arm(pl_module)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restorer.release()  # checkpoint restore is over: the unpruned copy is no longer needed

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and self.plan is not None and is_spawn_worker(trainer):
            hand_back_unpruned_only(pl_module, self.net_path, self.plan, type(self).__name__)
        self._restorer.disarm()

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        before_cut = not self.finished and bool(getattr(self, "prune", False))  # Slimming/FPGM before their cut
        paths = pruned_checkpoint_paths(trainer) if before_cut else []
        write_plan(checkpoint, self.plan, self.net_path, type(self).__name__, self.soft_selection(),
                   before_cut=before_cut, pruned_checkpoint=paths[0] if paths else None)

    # ------------------------------------------------------------------ the contract with the pipeline
    def finalize(self, pl_module: pl.LightningModule, example_inputs: torch.Tensor | None = None
                 ) -> PruningPlan | None:
        """The plan after the fit (``None`` if the callback did not prune); subclasses complete a pending removal."""
        return self.plan

    # ------------------------------------------------------------------ helpers for subclasses
    def init_amount(self, pruning_ratio: Any, default: float, target_macs: float | None,
                    target_latency_ms: float | None, latency_batch_size: int) -> Any:
        """Validate how much to prune and keep the targets; returns the ratio to use.

        The rule: a target wins and the ratio is searched; ``pruning_ratio`` must then be ``None`` (or, where the
        method takes one, a ``{glob: ratio}`` dict whose rates are scaled together). A float ratio with a target is an
        error. Without a target ``None`` means ``default``.
        """
        check_positive_int("latency_batch_size", latency_batch_size)
        if pruning_ratio is None and target_macs is None and target_latency_ms is None:
            pruning_ratio = default
        target = "target_macs" if target_macs is not None else "target_latency_ms"
        if isinstance(pruning_ratio, (int, float)) and (target_macs is not None or target_latency_ms is not None):
            raise ValueError(f"`pruning_ratio`={pruning_ratio!r} and `{target}` both fix how much is pruned: with a "
                             f"target the ratio is searched, so set `pruning_ratio` to null (train.py: "
                             f"method.callback.pruning_ratio=null method.callback.{target}=...).")
        check_amount(pruning_ratio, target_macs, target_latency_ms, latency_batch_size)
        self.target_macs = None if target_macs is None else float(target_macs)
        self.target_latency_ms = None if target_latency_ms is None else float(target_latency_ms)
        self.latency_batch_size = latency_batch_size
        return dict(pruning_ratio) if isinstance(pruning_ratio, Mapping) else pruning_ratio

    @property
    def has_target(self) -> bool:
        """Whether a MACs or latency target replaces the fixed ratio."""
        return self.target_macs is not None or self.target_latency_ms is not None

    def fit_to_budget(self, graph: ChannelGraph, pruning_ratio: Any, importance: Any, **method: Any) -> PruningPlan:
        """:func:`~lightning_compress.pruning.fit_budget` of ``net`` for this callback's target (latency timed on
        ``device``, the trainer's); keeps ``budget``, logs its summary and returns the plan (changes nothing)."""
        net = self.require_net()
        was_training = net.training
        try:
            fit = fit_budget(graph, net, self._example_on(net), pruning_ratio, self.target_macs,
                             self.target_latency_ms, self.latency_batch_size, importance,
                             device=self.device, **method, **self.selection_args())
        finally:
            net.train(was_training)
        self.budget = fit.budget
        rank_zero_info(f"[{type(self).__name__}] budget: {fit.budget.summary()}")
        return fit.plan

    def build_graph(self) -> ChannelGraph:
        """The channel graph of ``net`` in this callback's ``residual`` mode (traced on ``example_inputs``)."""
        net = self.require_net()
        if self.example_inputs is None:
            raise ValueError(f"`input_shape` must be given: {type(self).__name__} found no example input (no "
                             "datamodule with `example_input`, no `example_input_array`, no train batch).")
        was_training = net.training
        try:
            return build_channel_graph(net, self._example_on(net), residual=self.residual)
        finally:
            net.train(was_training)

    def selection_args(self) -> dict[str, Any]:
        """The ``select_on_graph`` arguments every callback passes through unchanged."""
        return {"ignored_layers": list(self.ignored_layers), "min_channels": self.min_channels,
                "round_to": self._multiple, "max_pruning_ratio": self.max_pruning_ratio}

    def aligned(self, select: Callable[[], PruningPlan]) -> PruningPlan:
        """``select()`` (a selection built from :meth:`selection_args`) at this callback's ``round_to``. With
        ``"auto"`` the first call times the plan at each candidate multiple and keeps the choice for later calls."""
        if self.round_to != AUTO or self.alignment is not None:
            return select()
        net = self.require_net()

        def at(multiple: int) -> PruningPlan:
            self._multiple = multiple
            return select()

        was_training = net.training
        try:
            choice = choose_round_to(net, self._example_on(net), at, batch_size=self.latency_batch_size,
                                     device=self.device)
        finally:
            net.train(was_training)
        self._multiple, self.alignment = choice.round_to, choice.as_dict()
        rank_zero_info(f"[{type(self).__name__}] round_to='auto': {choice.summary()}")
        return select() if self.has_target else choice.plan  # a budget search keeps the chosen multiple's result

    def apply_plan(self, trainer: pl.Trainer, plan: PruningPlan, optimizer: torch.optim.Optimizer | None = None,
                   keep_unpruned: bool = False, end_of_fit: bool = False) -> None:
        """Prune ``net`` physically by rank 0's ``plan``; record ``plan``/``finished``/``profile`` and log them.

        ``plan`` is relative to ``net`` as it is; ``self.plan`` becomes the cumulative plan relative to the unpruned
        network (composed with the plan an earlier callback or ``load_pruned_checkpoint`` recorded on ``net``).
        ``keep_unpruned`` keeps a CPU copy of the unpruned net until ``on_fit_start`` (when pruning in ``setup``, so a
        resumed checkpoint with a different plan can still be applied). ``end_of_fit`` (a cut in ``on_train_end``):
        the fit's optimizer state is sliced with the weights, and the pruned network is saved at once
        (:func:`~lightning_compress.callbacks.checkpointing.save_after_cut`).
        """
        plan = broadcast_plan(trainer, plan)
        net = self.require_net()
        if keep_unpruned:
            self._restorer.keep_unpruned(net)
        if end_of_fit and optimizer is None:
            optimizer = self._fit_optimizer(trainer, net)
        widths_before, before = layer_widths(net), self._measure(net)
        prior = attached_plan(net)
        prune(net, plan, optimizer=optimizer)
        cumulative = prior.then(plan) if prior is not None else plan
        attach_plan(net, cumulative)
        self.plan, self.finished = cumulative, True
        self.profile = {"before": before, "after": self._measure(net)}
        if self.verbose:
            self._log_change(trainer, widths_before, layer_widths(net))
        self.after_cut(trainer)
        if end_of_fit:
            self.pruned_checkpoints = save_after_cut(trainer, type(self).__name__)

    def after_cut(self, trainer: pl.Trainer) -> None:
        """On training batches: the optional BN recalibration, then the dead-channel check (a warning naming every
        layer with a kept channel whose ReLU output is zero on a whole batch)."""
        net, pl_module = self.require_net(), getattr(trainer, "lightning_module", None)
        inputs = training_inputs(trainer, pl_module, max(self.bn_recalibration, 1)) if pl_module is not None else []
        if not inputs:
            if self.bn_recalibration:
                rank_zero_warn(f"[{type(self).__name__}] no training batches could be drawn after the cut: the BN "
                               "recalibration (`bn_recalibration`) and the dead-channel check did not run.")
            return
        if self.bn_recalibration:
            self.bn_buffers_before_recalibration = batchnorm_buffers(net)
            used = recalibrate_batchnorm(net, (self._on_net(x, net) for x in inputs))
            rank_zero_info(f"[{type(self).__name__}] BN statistics re-estimated on {used} training batches")
        self.dead_after_cut = dead_channels(net, self._on_net(inputs[0], net))
        if self.dead_after_cut:
            rank_zero_warn(f"[{type(self).__name__}] dead channels after the cut: "
                           f"{describe_dead(self.dead_after_cut, int(inputs[0].shape[0]))}.")

    @staticmethod
    def _fit_optimizer(trainer: pl.Trainer, net: nn.Module) -> torch.optim.Optimizer | None:
        """The fit's one optimizer holding ``net``'s parameters (its state is sliced with them), else ``None``."""
        params = {id(p) for p in net.parameters()}
        holders = [opt for opt in trainer.optimizers
                   if any(id(p) in params for group in opt.param_groups for p in group["params"])]
        if len(holders) > 1:
            rank_zero_warn(f"{len(holders)} optimizers hold the pruned network's parameters; their state is not "
                           "sliced, so a checkpoint written after the cut does not resume training.")
        return holders[0] if len(holders) == 1 else None

    def require_net(self) -> nn.Module:
        if self.net is None:
            raise RuntimeError(f"{type(self).__name__} has no network yet: it is resolved in `setup`.")
        return self.net

    def is_ignored(self, name: str) -> bool:
        """Whether ``name`` matches a glob of ``ignored_layers``."""
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.ignored_layers)

    # ------------------------------------------------------------------ internals
    def _measure(self, net: nn.Module) -> dict[str, int]:
        out = {"params": count_params(net)}
        if self.example_inputs is not None:
            out["macs"] = count_macs(net, self._example_on(net))
        return out

    def _example_on(self, net: nn.Module) -> torch.Tensor:
        """``example_inputs`` (not None) on ``net``'s device and in its floating dtype: ``setup`` made it before
        Lightning moved the module to the accelerator and converted it (``precision="bf16-true"``), and Slimming and
        FPGM prune in ``on_train_end``, after both."""
        return self._on_net(self.example_inputs, net)

    @staticmethod
    def _on_net(inputs: torch.Tensor, net: nn.Module) -> torch.Tensor:
        """``inputs`` on ``net``'s device, and in its floating dtype when both are floating point."""
        param = next(iter(net.parameters()), None)
        if param is None or not (inputs.is_floating_point() and param.is_floating_point()):
            return inputs.to(device_of(net))
        return inputs.to(device=param.device, dtype=param.dtype)

    def _log_change(self, trainer: pl.Trainer, before: dict[str, int], after: dict[str, int]) -> None:
        name = type(self).__name__
        b, a = self.profile["before"], self.profile["after"]
        line = f"[{name}] params {b['params']:,} -> {a['params']:,} ({_fewer(b['params'], a['params'])})"
        if "macs" in b:
            line += f", MACs {b['macs']:,} -> {a['macs']:,} ({_fewer(b['macs'], a['macs'])})"
        rank_zero_info(line + "\n" + format_width_table(before, after))
        if trainer.is_global_zero:
            metrics = {f"compress/{k}_{when}": float(v) for when, d in self.profile.items() for k, v in d.items()}
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)


class OneShotPruning(BasePruningCallback):
    """A callback that prunes once, in ``setup`` of the fit (before the optimizers exist and before DDP wraps the
    model), so that the fit retrains the smaller network; subclasses implement :meth:`select`."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit" or self.finished:
            return
        self.apply_plan(trainer, self.select(), keep_unpruned=True)

    def select(self) -> PruningPlan:
        """The plan of the current weights (changes nothing)."""
        raise NotImplementedError


def check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int, got {value!r}.")
    return value


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be a bool, got {value!r}.")
    return value


def check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number, got {value!r}.")
    return float(value)


def _fewer(before: int, after: int) -> str:
    return f"{100.0 * (1 - after / max(before, 1)):.1f}% fewer"


def _as_list(value: Any) -> list:
    if isinstance(value, (list, tuple)):
        return list(value)
    try:
        return list(value)
    except TypeError:
        return [value]
