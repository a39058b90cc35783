"""Shared base of every pruning callback: network resolution, layer globs, plans in checkpoints, logging, DDP.

Public API (subclasses: ``L1FilterPruning``, ``NetworkSlimming``, ``FPGMPruning``)
---------------------------------------------------------------------------------
``BasePruningCallback(submodule=None, ignored_layers=(), input_shape=None, verbose=True)``

Attributes (read them, do not assign):
    ``plan``: the cumulative :class:`~lightning_compress.pruning.PruningPlan` relative to the *unpruned* network once
        the callback has pruned it physically, else ``None``. CONTRACT with the pipeline: after ``fit``, ``plan`` is
        set and the network is physically smaller.
    ``finished``: True once the callback has done its one structural change (later fits leave the net alone but still
        write the plan into every checkpoint).
    ``net``: the resolved network (``submodule``, else ``pl_module.net``, ``pl_module.model``, ``pl_module``).
    ``net_path``: its attribute path inside the LightningModule (``""`` = the module itself).
    ``example_inputs``: a batch of one input on the net's device (for graph tracing and MACs).
    ``profile``: ``{"before": {"params", "macs"}, "after": {...}}`` of the last structural change.

Hooks the base implements (call ``super()`` when overriding): ``setup`` (resolves ``net``/``example_inputs``, arms
checkpoint re-pruning), ``on_fit_start`` (drops the unpruned copy), ``teardown``, ``on_save_checkpoint``,
``state_dict``/``load_state_dict``.

Helpers for subclasses:
    ``select_layers(patterns, types)`` -> module names matching globs minus ``ignored_layers`` (ValueError listing
        the available names when a glob matches nothing); ``is_ignored(name)``.
    ``apply_plan(trainer, plan, optimizer=None, keep_unpruned=False)`` -> broadcasts ``plan`` from rank 0, prunes
        ``net`` physically, sets ``plan``/``finished``/``profile`` and logs before/after + kept channels on rank 0.
    ``broadcast(trainer, obj)`` -> rank 0's ``obj`` on every rank.
    ``extra_state()`` / ``load_extra_state(state)`` -> subclass counters saved beside the base state.

Checkpoints: after pruning, ``checkpoint["lightning_compress"] = {"plan": plan.to_dict(), "method": <class name>,
"net_path": ...}``. On ``trainer.fit(ckpt_path=...)`` Lightning restores the model weights *before* callback states
(``_restore_modules_and_callbacks``: ``restore_model`` -> ``restore_callbacks``) and only after every ``setup`` hook,
so ``trainer.ckpt_path`` is not yet known in ``setup``. The base therefore wraps ``pl_module.on_load_checkpoint`` (an
instance attribute set in ``setup``, removed in ``teardown``): it prunes the network to the checkpoint's plan just
before Lightning loads the pruned ``state_dict``. See ``callbacks.checkpoint.load_pruned_checkpoint`` for loading a
pruned checkpoint into a fresh module outside a Trainer.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import nn

from lightning_compress.profiling import count_macs, count_params

if TYPE_CHECKING:
    from lightning_compress.pruning import PruningPlan

log = logging.getLogger(__name__)

CHECKPOINT_KEY = "lightning_compress"
_NET_ATTRIBUTES = ("net", "model")
_WIDTH_ATTRIBUTES = ("out_channels", "num_features", "out_features")


class BasePruningCallback(pl.Callback):
    """Common ground of the pruning callbacks (see the module docstring for the full API).

    Args:
        submodule: attribute path of the network inside the LightningModule (``"net"``, ``"backbone.body"``);
            ``None`` = ``pl_module.net``, else ``pl_module.model``, else the LightningModule itself.
        ignored_layers: module-name globs (relative to the network) never pruned, e.g. ``["fc", "layer3.*"]``.
        input_shape: shape of one input *without* the batch dimension, e.g. ``[3, 32, 32]``; only needed when neither
            ``trainer.datamodule.example_input`` nor ``pl_module.example_input_array`` nor a train batch is available.
        verbose: log the before/after profile and the per-layer table of kept channels (rank 0).

    Raises:
        TypeError: if ``submodule`` is not a str/None, ``ignored_layers`` not a sequence of str, ``input_shape`` not a
            sequence of positive ints or ``verbose`` not a bool.
        ValueError: (in ``setup``) if ``submodule`` names no attribute of the LightningModule, or it is not an
            ``nn.Module``, or a glob of ``ignored_layers`` matches no layer.
    """

    def __init__(self, submodule: str | None = None, ignored_layers: Sequence[str] = (),
                 input_shape: Sequence[int] | None = None, verbose: bool = True) -> None:
        if submodule is not None and not isinstance(submodule, str):
            raise TypeError(f"`submodule` must be a str or None, got {submodule!r}.")
        if isinstance(ignored_layers, str) or not all(isinstance(p, str) for p in _as_list(ignored_layers)):
            raise TypeError(f"`ignored_layers` must be a list of module-name globs (str), got {ignored_layers!r}.")
        if input_shape is not None and (isinstance(input_shape, str) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in _as_list(input_shape))):
            raise TypeError(f"`input_shape` must be a list of positive ints or None, got {input_shape!r}.")
        if not isinstance(verbose, bool):
            raise TypeError(f"`verbose` must be a bool, got {verbose!r}.")
        self.submodule = submodule
        self.ignored_layers = tuple(_as_list(ignored_layers))
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.verbose = verbose
        self.plan: PruningPlan | None = None
        self.finished = False
        self.net: nn.Module | None = None
        self.net_path = ""
        self.example_inputs: torch.Tensor | None = None
        self.profile: dict[str, dict[str, int]] = {}
        self._unpruned: nn.Module | None = None
        self._wrapped: tuple[pl.LightningModule, Callable[[dict], None], Callable[[dict], None] | None] | None = None

    # ------------------------------------------------------------------ identity and state
    @property
    def state_key(self) -> str:
        return self._generate_state_key(submodule=self.submodule)

    def state_dict(self) -> dict[str, Any]:
        return {"plan": self.plan.to_dict() if self.plan is not None else None, "finished": self.finished,
                "profile": copy.deepcopy(self.profile), **self.extra_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        plan = state_dict.get("plan")
        if plan is not None and self.plan is None:
            from lightning_compress.pruning import PruningPlan

            self.plan = PruningPlan.from_dict(plan)
        self.finished = bool(state_dict.get("finished", self.finished))
        self.profile = dict(state_dict.get("profile", self.profile))
        self.load_extra_state(state_dict)

    def extra_state(self) -> dict[str, Any]:
        """Subclass state saved beside ``plan``/``finished`` (plain Python values or CPU tensors)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` saved; use ``state.get(key, default)`` for old checkpoints."""

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.net, self.net_path = resolve_net(pl_module, self.submodule)
        if self.ignored_layers:
            self.select_layers(self.ignored_layers, check_ignored=False, argument="ignored_layers")
        if stage == "fit":
            self.example_inputs = self._example_inputs(trainer, pl_module)
        self._arm_checkpoint_loading(pl_module)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._unpruned = None  # checkpoint restore is over: the unpruned copy is no longer needed

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._unpruned = None
        if stage == "fit" and self.plan is not None and _spawned(trainer):
            _hand_back_unpruned_shapes_only(self, trainer, pl_module)
        if self._wrapped is not None:
            module, wrapper, own_original = self._wrapped
            if module.__dict__.get("on_load_checkpoint") is wrapper:
                if own_original is None:
                    del module.__dict__["on_load_checkpoint"]
                else:
                    module.on_load_checkpoint = own_original
            self._wrapped = None

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if self.plan is not None:
            checkpoint[CHECKPOINT_KEY] = {"plan": self.plan.to_dict(), "method": type(self).__name__,
                                          "net_path": self.net_path}

    # ------------------------------------------------------------------ helpers for subclasses
    def select_layers(self, patterns: Iterable[str], types: tuple[type[nn.Module], ...] = (nn.Module,),
                      check_ignored: bool = True, argument: str = "pruning_ratio") -> list[str]:
        """Names of ``net`` modules of ``types`` matching any glob in ``patterns`` (minus ignored layers).

        Raises:
            ValueError: if a glob matches no module of ``types``; the message lists the available names.
        """
        names = [name for name, module in self._require_net().named_modules() if name and isinstance(module, types)]
        selected: list[str] = []
        for pattern in patterns:
            matched = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
            if not matched:
                raise ValueError(f"`{argument}` glob {pattern!r} matches no layer of the network. Available: "
                                 f"{_short_list(names)}.")
            selected.extend(n for n in matched if n not in selected)
        return [n for n in selected if not (check_ignored and self.is_ignored(n))]

    def is_ignored(self, name: str) -> bool:
        """Whether ``name`` matches a glob of ``ignored_layers``."""
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.ignored_layers)

    def broadcast(self, trainer: pl.Trainer, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (identity on a single process)."""
        if trainer.world_size <= 1:
            return obj
        return trainer.strategy.broadcast(obj, src=0)

    def apply_plan(self, trainer: pl.Trainer, plan: PruningPlan, optimizer: torch.optim.Optimizer | None = None,
                   keep_unpruned: bool = False) -> None:
        """Prune ``net`` physically by rank 0's ``plan`` and record/log it.

        ``keep_unpruned`` keeps a CPU copy of the unpruned net until ``on_fit_start`` (use it when pruning in
        ``setup``, so a resumed checkpoint with a different plan can still be applied).
        """
        from lightning_compress.pruning import PruningPlan, prune

        plan = PruningPlan.from_dict(self.broadcast(trainer, plan.to_dict()))
        net = self._require_net()
        if keep_unpruned:
            self._unpruned = copy.deepcopy(net).cpu()
        widths_before = layer_widths(net)
        before = self._measure(net)
        prune(net, plan, optimizer=optimizer)
        after = self._measure(net)
        self.plan, self.finished = plan, True
        self.profile = {"before": before, "after": after}
        if self.verbose:
            self._log_change(trainer, widths_before, layer_widths(net))

    # ------------------------------------------------------------------ internals
    def _require_net(self) -> nn.Module:
        if self.net is None:
            raise RuntimeError(f"{type(self).__name__} has no network yet: it is resolved in `setup`.")
        return self.net

    def _measure(self, net: nn.Module) -> dict[str, int]:
        out = {"params": count_params(net)}
        if self.example_inputs is not None:
            out["macs"] = count_macs(net, self.example_inputs)
        return out

    def _example_inputs(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> torch.Tensor | None:
        device = _device_of(self._require_net())
        if self.input_shape is not None:
            return torch.zeros(1, *self.input_shape, device=device)
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None and callable(getattr(datamodule, "example_input", None)):
            return datamodule.example_input(1).to(device)
        example = getattr(pl_module, "example_input_array", None)
        if isinstance(example, torch.Tensor):
            return example[:1].to(device)
        batch = _first_train_batch(trainer)
        if batch is not None:
            return batch[:1].to(device)
        return None

    def _arm_checkpoint_loading(self, pl_module: pl.LightningModule) -> None:
        """Wrap ``pl_module.on_load_checkpoint`` so a checkpoint's plan is applied before its weights are loaded."""
        if self._wrapped is not None and self._wrapped[0] is pl_module:
            return
        original = pl_module.on_load_checkpoint
        own_original = pl_module.__dict__.get("on_load_checkpoint")  # an instance-level override (another wrapper)

        def on_load_checkpoint(checkpoint: dict) -> None:
            self._restore_plan(checkpoint)
            original(checkpoint)

        pl_module.on_load_checkpoint = on_load_checkpoint  # type: ignore[method-assign]
        self._wrapped = (pl_module, on_load_checkpoint, own_original)

    def _restore_plan(self, checkpoint: dict) -> None:
        entry = checkpoint.get(CHECKPOINT_KEY)
        if not entry or entry.get("plan") is None or entry.get("net_path", self.net_path) != self.net_path:
            return
        from lightning_compress.pruning import PruningPlan, prune

        target = PruningPlan.from_dict(entry["plan"])
        if self.plan is not None and self.plan.to_dict() == target.to_dict():
            return
        net = self._require_net()
        if self.plan is not None:
            if self._unpruned is None:
                raise RuntimeError(
                    f"{type(self).__name__}: the checkpoint was pruned by a different plan than the one applied in "
                    "this run, and the unpruned network is no longer available to re-prune it. HINT: resume with the "
                    "same pretrained weights and arguments, or load it with `load_pruned_checkpoint`.")
            _restore_modules(net, self._unpruned)
        rank_zero_info(f"[{type(self).__name__}] re-applying the checkpoint's pruning plan before loading its weights")
        prune(net, target)
        self.plan, self.finished = target, True

    def _log_change(self, trainer: pl.Trainer, before: dict[str, int], after: dict[str, int]) -> None:
        name = type(self).__name__
        lines = [f"[{name}] params {self.profile['before']['params']:,} -> {self.profile['after']['params']:,}"]
        if "macs" in self.profile["before"]:
            b, a = self.profile["before"]["macs"], self.profile["after"]["macs"]
            lines[0] += f", MACs {b:,} -> {a:,} ({100.0 * (1 - a / max(b, 1)):.1f}% fewer)"
        lines.append(format_width_table(before, after))
        rank_zero_info("\n".join(lines))
        if trainer.is_global_zero:
            metrics = {f"compress/{k}_{when}": float(v) for when, d in self.profile.items() for k, v in d.items()}
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)


# ---------------------------------------------------------------------- module-level helpers
def resolve_net(pl_module: pl.LightningModule, submodule: str | None) -> tuple[nn.Module, str]:
    """The network inside ``pl_module`` and its attribute path (``""`` = ``pl_module`` itself).

    Raises:
        ValueError: if ``submodule`` does not name an ``nn.Module`` attribute of ``pl_module``.
    """
    if submodule is None:
        for attribute in _NET_ATTRIBUTES:
            candidate = getattr(pl_module, attribute, None)
            if isinstance(candidate, nn.Module):
                return candidate, attribute
        return pl_module, ""
    if submodule == "":
        return pl_module, ""
    try:
        candidate = pl_module.get_submodule(submodule)
    except AttributeError:
        children = [n for n, _ in pl_module.named_children()]
        raise ValueError(f"`submodule` must name a submodule of {type(pl_module).__name__}, got {submodule!r}. "
                         f"Available: {children}.") from None
    return candidate, submodule


def layer_widths(net: nn.Module) -> dict[str, int]:
    """Output width (``out_channels``/``num_features``/``out_features``) of every conv, BN and linear layer."""
    widths = {}
    for name, module in net.named_modules():
        for attribute in _WIDTH_ATTRIBUTES:
            value = getattr(module, attribute, None)
            if isinstance(value, int) and name:
                widths[name] = value
                break
    return widths


def format_width_table(before: dict[str, int], after: dict[str, int]) -> str:
    """A text table of the layers whose width changed: ``layer  kept/total  (pct)``."""
    rows = [(name, after.get(name, 0), total) for name, total in before.items() if after.get(name, total) != total]
    if not rows:
        return "  (no layer changed width)"
    width = max(len(r[0]) for r in rows)
    out = [f"  {'layer'.ljust(width)}  kept/total"]
    out += [f"  {name.ljust(width)}  {kept}/{total} ({100.0 * kept / total:.0f}%)" for name, kept, total in rows]
    return "\n".join(out)


def _spawned(trainer: pl.Trainer) -> bool:
    """True in the worker of a spawn-based launcher (``ddp_spawn``): its results are copied into another process."""
    from pytorch_lightning.strategies.launchers.multiprocessing import _MultiProcessingLauncher

    return trainer.world_size > 1 and isinstance(getattr(trainer.strategy, "launcher", None), _MultiProcessingLauncher)


def _hand_back_unpruned_shapes_only(callback: BasePruningCallback, trainer: pl.Trainer,
                                    pl_module: pl.LightningModule) -> None:
    """ddp_spawn: after ``fit`` Lightning loads rank 0's ``state_dict`` into the *main* process's module, which was
    never pruned (pruning happened in the workers), so every pruned tensor would be a size mismatch. Leave the pruned
    modules' tensors out of what is sent back (Lightning loads it with ``strict=False``) and say how to get the
    pruned model: every checkpoint saved by the workers carries the plan."""
    plan = callback.plan
    assert plan is not None
    base = f"{callback.net_path}." if callback.net_path else ""
    prefixes = tuple(f"{base}{name}." for name in plan.layers)

    def drop_pruned(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
        if prefix:
            return
        for key in [k for k in state_dict if k.startswith(prefixes)]:
            del state_dict[key]

    pl_module._register_state_dict_hook(drop_pruned)
    from pytorch_lightning.utilities import rank_zero_warn

    rank_zero_warn(
        f"{type(callback).__name__} pruned the network inside `ddp_spawn` workers; the main process's module is NOT "
        "pruned and only its unpruned layers receive the trained weights. Load the pruned result with "
        "`load_pruned_checkpoint(module, trainer.checkpoint_callback.best_model_path)`, or use strategy='ddp'.")


def _restore_modules(net: nn.Module, unpruned: nn.Module) -> None:
    """Put back every leaf module of ``unpruned`` whose parameter shapes differ in ``net`` (on ``net``'s device)."""
    device = _device_of(net)
    for name, original in unpruned.named_modules():
        if not name or list(original.children()):
            continue
        current = net.get_submodule(name)
        shapes = {k: v.shape for k, v in current.state_dict().items()}
        if shapes != {k: v.shape for k, v in original.state_dict().items()}:
            parent_name, _, child = name.rpartition(".")
            setattr(net.get_submodule(parent_name) if parent_name else net, child,
                    copy.deepcopy(original).to(device))


def _first_train_batch(trainer: pl.Trainer) -> torch.Tensor | None:
    """The input tensor of the first training batch, if a train dataloader can be built without side effects."""
    loader = None
    datamodule = getattr(trainer, "datamodule", None)
    try:
        if datamodule is not None:
            loader = datamodule.train_dataloader()
        else:
            source = trainer.fit_loop._data_source  # Lightning keeps fit(train_dataloaders=...) here
            if source.is_defined():
                loader = source.dataloader()
        batch = next(iter(loader)) if loader is not None else None
    except Exception as err:  # noqa: BLE001 - any data error just means "no example input"
        log.debug("no example input from the train dataloader: %s", err)
        return None
    while isinstance(batch, (list, tuple)) and batch:
        batch = batch[0]
    if isinstance(batch, dict):
        batch = next((v for v in batch.values() if isinstance(v, torch.Tensor)), None)
    return batch if isinstance(batch, torch.Tensor) else None


def _device_of(net: nn.Module) -> torch.device:
    tensor = next(iter(net.parameters()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _as_list(value: Any) -> list:
    if isinstance(value, (list, tuple)):
        return list(value)
    try:
        return list(value)
    except TypeError:
        return [value]


def _short_list(names: list[str], limit: int = 30) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
