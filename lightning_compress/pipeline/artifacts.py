"""Saved networks of the app: stage models (``stages/<stage>/model.pt``), Lightning checkpoints, bare state dicts.

A stage model is the format of :mod:`lightning_compress.pruning.saving` with the network's model config (the
``conf/model`` entry) and the shape of one input without batch (``input_shape``, for export) in its payload, so it
rebuilds itself: build the network from the config, prune it with the plan, load the weights. Every file goes through
:func:`lightning_compress.loading.load_file` (``weights_only=True``; errors name the file and the config key it came
from).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from lightning_compress.loading import LoadError, load_file
from lightning_compress.pipeline.builders import build_net
from lightning_compress.pruning import PruningPlan
from lightning_compress.pruning.saving import network_state, plan_of, read_payload, restore, save_pruned


@dataclass
class SavedNetwork:
    """A network rebuilt from a file: the (pruned) ``net``, its ``plan``, the model config it was built from and the
    shape of one input (``None`` when the file does not record it)."""

    net: nn.Module
    plan: PruningPlan | None
    model_cfg: DictConfig
    input_shape: list[int] | None = None


def save_stage_model(path: Path, net: nn.Module, model_cfg: DictConfig, plan: PruningPlan | None = None,
                     input_shape: Sequence[int] | None = None) -> Path:
    """Write ``net``'s weights (on CPU), its model config, its pruning plan (if pruned) and the shape of one input
    without batch (for export) to ``path``."""
    save_pruned(path, net, plan, model=OmegaConf.to_container(model_cfg, resolve=True),
                input_shape=[int(d) for d in input_shape] if input_shape is not None else None)
    return path


def load_network(path: str | Path, model_cfg: DictConfig | None = None, key: str = "method.pretrained"
                 ) -> SavedNetwork:
    """Rebuild the network saved at ``path``: a stage model, a Lightning checkpoint of an ``ImageClassifier`` or a
    distillation module (``net.*`` keys, needs ``model_cfg``), or a bare state dict (needs ``model_cfg``).

    Args:
        path: the file; ``key``: the config key it came from (named in every error).
        model_cfg: the architecture for files that do not carry one (a stage model's own config wins).

    Raises:
        FileNotFoundError: ``path`` does not exist (a :class:`~lightning_compress.loading.LoadError`).
        ValueError: the file is none of the above, or its plan or weights do not fit the architecture; the network
            passed in is never left half-loaded.
    """
    data = load_file(path, key)
    source = f"`{key}`={str(path)!r}"
    if not isinstance(data, dict):
        raise LoadError(f"{source} holds a {type(data).__name__}; expected a saved model (a dict).", path, key)
    entry = read_payload(data, source)
    if entry is not None and entry.get("model") is not None:
        cfg = OmegaConf.create(entry["model"])
        net_path = entry.get("net_path") or ""
    elif "state_dict" in data:  # a Lightning checkpoint of a module holding the network as `net`
        cfg, net_path = _need_cfg(model_cfg, source, path, key), "net"
    elif data and all(isinstance(v, torch.Tensor) for v in data.values()):
        cfg, net_path = _need_cfg(model_cfg, source, path, key), ""
        data = {"state_dict": data}
    else:
        raise LoadError(f"{source} is not a model saved by lightning_compress (keys {sorted(data)[:8]}).", path, key)
    plan = plan_of(entry, source)
    net = restore(build_net(cfg), plan, network_state(data, net_path, source), source)
    return SavedNetwork(net, plan, cfg, (entry or {}).get("input_shape"))


def load_stage_model(path: str | Path, model_cfg: DictConfig | None = None,
                     key: str = "method.pretrained") -> tuple[nn.Module, Any]:
    """``(net, plan)`` of :func:`load_network`."""
    saved = load_network(path, model_cfg, key)
    return saved.net, saved.plan


def _need_cfg(model_cfg: DictConfig | None, source: str, path: Any, key: str) -> DictConfig:
    if model_cfg is None:
        raise LoadError(f"{source} carries no model config; loading it needs one (the run's `model`).", path, key)
    return model_cfg
