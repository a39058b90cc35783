"""Saved networks of the app: stage models (``stages/<stage>/model.pt``), Lightning checkpoints, bare state dicts.

A stage model is the format of :mod:`lightning_compress.pruning.saving` (weights + plan, never a pickled module) with
the network's model config (the ``conf/model`` entry) and the shape of one input without batch (``input_shape``, for
export and ``profile weights=``) in its payload, so it rebuilds itself: build the network from the config, prune it
with the plan, load the weights. Every file goes through :func:`lightning_compress.loading.load_file`
(``weights_only=True``); every error names the file and the config key it came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only
from torch import nn

from lightning_compress.loading import LoadError, load_file
from lightning_compress.pipeline.builders import build_net
from lightning_compress.pruning import PruningPlan
from lightning_compress.pruning.saving import (
    KEY,
    network_state,
    plan_of,
    pruned_payload,
    read_payload,
    restore,
    save_pruned,
)

LEGACY_FORMAT = "lightning_compress.stage_model/1"  # read only: the stage models of earlier versions


@dataclass
class SavedModel:
    """A network rebuilt from a file: the (pruned) ``net``, its ``plan`` (None: unpruned), the ``model_cfg`` it was
    built from and ``input_shape`` (one input without batch; None when the file does not record it)."""

    net: nn.Module
    plan: PruningPlan | None
    model_cfg: DictConfig
    input_shape: tuple[int, ...] | None = None


def save_stage_model(path: Path, net: nn.Module, model_cfg: DictConfig, plan: PruningPlan | None = None,
                     input_shape: Sequence[int] | None = None) -> Path:
    """Write ``net``'s weights (on CPU), its model config, its pruning plan (if pruned) and the shape of one input
    without batch to ``path``. Under DDP only rank 0 writes (every rank holds the same network)."""
    if rank_zero_only.rank == 0:
        save_pruned(path, net, plan, model=OmegaConf.to_container(model_cfg, resolve=True),
                    input_shape=[int(d) for d in input_shape] if input_shape is not None else None)
    return path


def read_stage_model(path: str | Path, key: str, model_cfg: DictConfig | None = None,
                     same_model: bool = False) -> SavedModel:
    """Rebuild the network saved at ``path`` (named by the config key ``key``, e.g. ``"method.pretrained"``).

    Accepts a stage model (carries its own architecture and plan), a Lightning checkpoint of a module holding the
    network as ``net`` (an ``ImageClassifier``, a distillation module; built from ``model_cfg``, its plan re-applied)
    or a bare ``state_dict`` of ``model_cfg``'s network.

    Args:
        same_model: the file's architecture must be ``model_cfg`` (a stage model of another network is an error
            instead of silently replacing the configured one).

    Raises:
        LoadError: (a ``ValueError``; ``MissingFileError`` for a missing file) the file is unreadable, of none of the
            kinds above, of another architecture (``same_model``), or its plan or weights do not fit.
    """
    data = load_file(path, key)
    where = f"`{key}`={str(path)!r}"
    if not isinstance(data, dict):
        raise LoadError(f"{where} holds a {type(data).__name__}; expected a saved model (a dict).", path, key)
    if data.get("format") == LEGACY_FORMAT:  # a stage model written before the pruned-network format
        data = {KEY: pruned_payload(None, "", model=data["model"], input_shape=data.get("input_shape")),
                "state_dict": data["state_dict"], "legacy_plan": data.get("plan")}
        data[KEY]["plan"] = data.pop("legacy_plan")
    try:
        entry = read_payload(data, where)
    except ValueError as err:
        raise LoadError(str(err), path, key) from None
    if entry is not None and entry.get("model") is not None:
        cfg = OmegaConf.create(entry["model"])
        if same_model and model_cfg is not None:
            _check_same_model(cfg, model_cfg, where, path, key)
        net_path = entry.get("net_path") or ""
    elif isinstance(data.get("state_dict"), dict):  # a Lightning checkpoint of a module holding the network as `net`
        cfg, net_path = _require_cfg(model_cfg, "a Lightning checkpoint", where, path, key), "net"
    elif data and all(isinstance(v, torch.Tensor) for v in data.values()):
        cfg, net_path = _require_cfg(model_cfg, "a bare state_dict", where, path, key), ""
        data = {"state_dict": data}
    else:
        raise LoadError(f"{where} is not a model saved by lightning_compress, a Lightning checkpoint or a state_dict; "
                        f"found keys {sorted(data)[:8]}.", path, key)
    try:
        net = build_net(cfg)
    except Exception as err:  # noqa: BLE001 - any build error means the stored architecture is unusable
        raise LoadError(f"{where}: its model config does not build a network: {err}", path, key) from err
    try:
        plan = plan_of(entry, where)
        restore(net, plan, network_state(data, net_path, where), f"{where} ({_model_name(cfg)} network)")
    except ValueError as err:
        raise LoadError(str(err), path, key) from None
    shape = (entry or {}).get("input_shape")
    return SavedModel(net, plan, cfg, tuple(int(d) for d in shape) if shape else None)


def load_stage_model(path: str | Path, model_cfg: DictConfig | None = None, key: str = "model file",
                     same_model: bool = False) -> tuple[nn.Module, Any]:
    """``(net, plan)`` of :func:`read_stage_model` (same arguments and errors)."""
    saved = read_stage_model(path, key, model_cfg, same_model=same_model)
    return saved.net, saved.plan


def _check_same_model(saved: DictConfig, expected: DictConfig, where: str, path: str | Path, key: str) -> None:
    saved_c = OmegaConf.to_container(saved, resolve=True)
    expected_c = OmegaConf.to_container(expected, resolve=True)
    if saved_c != expected_c:
        diff = {k: (saved_c.get(k), expected_c.get(k)) for k in sorted(set(saved_c) | set(expected_c))
                if saved_c.get(k) != expected_c.get(k)}
        raise LoadError(f"{where} holds a {_model_name(saved)} network but the run's `model` is "
                        f"{_model_name(expected)} (differences, file vs config: {diff}); pass the matching "
                        "model=<name> or another file.", path, key)


def _require_cfg(model_cfg: DictConfig | None, kind: str, where: str, path: str | Path, key: str) -> DictConfig:
    if model_cfg is None:
        raise LoadError(f"{where} is {kind}; loading it needs the `model` config of its network.", path, key)
    return model_cfg


def _model_name(model_cfg: DictConfig) -> str:
    return str(model_cfg.get("_target_", "?")).rsplit(".", 1)[-1]
