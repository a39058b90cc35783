"""One format for a pruned network's weights and plan, used by Lightning checkpoints and by saved stage models.

A file (or a Lightning checkpoint dict) holds ``state_dict`` and, under :data:`KEY`, the payload
``{"format", "version", "plan" (PruningPlan.to_dict() or None), "net_path", ...}``: ``net_path`` is the attribute path
of the pruned network inside the saved module (``""``: the state dict is the network's own), and extra keys carry
metadata (the method, the model config of a stage model). Everything is plain data: the file loads with
``torch.load(weights_only=True)`` and the network is rebuilt by pruning a fresh, unpruned one with the plan, then
loading the weights. No module is ever pickled.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from os import PathLike
from typing import Any

import torch
from torch import nn

from lightning_compress.loading import load_file, skipped_objects

from .plan import PruningPlan
from .surgery import prune

KEY = "lightning_compress"
BEFORE_CUT_KEY = "before_cut"  # a checkpoint written by a pruning callback before its cut (the full-width network)
FORMAT = "lightning_compress.pruned"
VERSION = 1


def pruned_payload(plan: PruningPlan | None, net_path: str = "", **meta: Any) -> dict[str, Any]:
    """The :data:`KEY` entry for a network pruned by ``plan`` (``None``: not pruned) at ``net_path``."""
    return {"format": FORMAT, "version": VERSION, "plan": plan.to_dict() if plan is not None else None,
            "net_path": net_path, **meta}


def read_payload(data: Mapping[str, Any], source: str) -> dict[str, Any] | None:
    """The checked :data:`KEY` entry of a loaded file (``None`` when it has none); ``source`` names the file."""
    entry = data.get(KEY) if isinstance(data, Mapping) else None
    if entry is None:
        return None
    if not isinstance(entry, Mapping) or entry.get("format") != FORMAT or entry.get("version") != VERSION:
        found = (entry.get("format"), entry.get("version")) if isinstance(entry, Mapping) else type(entry).__name__
        raise ValueError(f"{source}: `{KEY}` must be a {FORMAT!r} version {VERSION} entry, got {found!r}.")
    return dict(entry)


def plan_of(entry: Mapping[str, Any] | None, source: str) -> PruningPlan | None:
    """The plan of a payload (``None`` if not pruned), with errors naming ``source``."""
    if entry is None or entry.get("plan") is None:
        return None
    try:
        return PruningPlan.from_dict(entry["plan"])
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(f"{source}: the pruning plan is malformed: {err}") from err


def network_state(data: Mapping[str, Any], net_path: str, source: str) -> dict[str, torch.Tensor]:
    """The network's own state dict from a file's ``state_dict`` (the keys below ``net_path``)."""
    state = data.get("state_dict") if isinstance(data, Mapping) else None
    if not isinstance(state, Mapping):
        found = sorted(data) if isinstance(data, Mapping) else type(data).__name__
        raise ValueError(f"{source}: expected a 'state_dict' entry, got {found}.")
    if not net_path:
        return dict(state)
    prefix = net_path + "."
    own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not own:
        raise ValueError(f"{source}: no weights under {net_path!r} (keys start with "
                         f"{sorted({k.split('.')[0] for k in state})}).")
    return own


def restore(net: nn.Module, plan: PruningPlan | None, state_dict: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    """Prune the unpruned ``net`` by ``plan`` and load ``state_dict``; on any error ``net`` is left exactly as it was
    (the work happens on a copy, which ``net`` then becomes)."""
    work = copy.deepcopy(net)
    if plan is not None:
        try:
            prune(work, plan)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: the pruning plan does not fit the model: {err}") from err
    try:
        work.load_state_dict(dict(state_dict))
    except RuntimeError as err:
        raise ValueError(f"{source}: the weights do not fit the model: {err}") from err
    net.__dict__.update(work.__dict__)  # same object for the caller, the copy's (pruned, loaded) modules and tensors
    net.__class__ = type(work)  # a network whose forward prune rewrote (residual="select": pruning.fusion)
    return net


def save_pruned(path: str | PathLike, net: nn.Module, plan: PruningPlan | None, **meta: Any) -> None:
    """Write ``net``'s weights (on CPU) and ``plan`` in the format above."""
    torch.save({KEY: pruned_payload(plan, "", **meta),
                "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}}, path)


def load_pruned(path: str | PathLike, net: nn.Module, submodule: str = "") -> nn.Module:
    """``net`` (unpruned, built as when the file was saved) pruned by the file's plan, with the file's weights: the
    pair of :func:`save_pruned`; also reads a Lightning checkpoint written with a pruning callback (the network's
    weights are the keys under the payload's ``net_path``) and a plain ``torch.save(net.state_dict())``.

    Nothing is unpickled except tensors and plain values: Python objects in the file (e.g. a Lightning checkpoint's
    hyper-parameters holding a Hydra-instantiated optimizer) are skipped with a warning, and only the weights and the
    plan are read. On any error ``net`` is unchanged.

    Args:
        path: the file.
        net: the unpruned network.
        submodule: for a Lightning checkpoint without a pruning payload: the attribute path of the network in the
            saved module (``"net"``: keys ``net.*``); ``""``: the keys are the network's own.

    Raises:
        ValueError: the file cannot be read (see :func:`lightning_compress.loading.load_file`), was written before
            a callback's cut (full width), or its plan or weights do not fit ``net``.
    """
    data = load_file(path, "path", skip_objects=True)
    source = f"`path`={str(path)!r}"
    skipped = skipped_objects(data)
    if skipped:
        warnings.warn(f"{source} holds Python objects that were not unpickled ({', '.join(skipped)}); only the "
                      "weights and the pruning plan were read.", stacklevel=2)
    if isinstance(data, Mapping) and "state_dict" not in data and data and all(
            isinstance(v, torch.Tensor) for v in data.values()):
        data = {"state_dict": data}  # a plain state dict
    entry = read_payload(data, source)
    if entry is not None and entry.get(BEFORE_CUT_KEY):
        raise ValueError(f"{source} was written by {entry.get('method') or 'a pruning callback'} before it pruned the "
                         "network: it holds the full-width network, not the pruned one. HINT: use the checkpoint "
                         f"written after the cut ({entry.get('pruned_checkpoint') or 'pruned.ckpt'}).")
    net_path = entry.get("net_path", "") if entry is not None else submodule
    return restore(net, plan_of(entry, source), network_state(data, net_path or "", source), source)
