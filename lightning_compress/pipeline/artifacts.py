"""Saving and loading stage models: weights + the pruning plan + the model config, never a pickled module.

A file holds ``{"format", "model" (the conf/model entry), "plan" (PruningPlan.to_dict() or None), "input_shape"
(one input without the batch dimension; files written before it was recorded lack it), "state_dict"}``. It is read
by :func:`lightning_compress.loading.load_file` (``weights_only=True``) and rebuilt by pruning a fresh network with
the plan, then loading the weights. Every error names the file and the config key it came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor, nn

from lightning_compress.loading import LoadError, load_file
from lightning_compress.pipeline.builders import build_net

FORMAT = "lightning_compress.stage_model/1"


@dataclass
class SavedModel:
    """A network rebuilt from a file: ``plan`` (None: unpruned), ``model_cfg`` (the architecture it was built
    from) and ``input_shape`` (one input without batch; None when the file does not record it)."""

    net: nn.Module
    plan: Any
    model_cfg: DictConfig
    input_shape: tuple[int, ...] | None


def save_stage_model(path: Path, net: nn.Module, model_cfg: DictConfig, plan: Any = None,
                     input_shape: Sequence[int] | None = None) -> Path:
    """Write ``net``'s weights (on CPU), its architecture config, its pruning plan (if pruned) and the shape of one
    input (without batch) to ``path``. Under DDP only rank 0 writes (every rank holds the same network)."""
    if rank_zero_only.rank != 0:
        return path
    payload = {
        "format": FORMAT,
        "model": OmegaConf.to_container(model_cfg, resolve=True),
        "plan": plan.to_dict() if plan is not None else None,
        "input_shape": [int(s) for s in input_shape] if input_shape is not None else None,
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
    }
    torch.save(payload, path)
    return path


def read_stage_model(path: str | Path, key: str, model_cfg: DictConfig | None = None,
                     same_model: bool = False) -> SavedModel:
    """Rebuild the network saved at ``path`` (named by the config key ``key``, e.g. ``"method.pretrained"``).

    Accepts a stage model (``stages/<stage>/model.pt``: carries its own architecture and plan), a Lightning
    checkpoint of an ``ImageClassifier`` (``net.*`` keys; built from ``model_cfg``, its plan re-applied) or a bare
    ``state_dict`` of ``model_cfg``'s network.

    Args:
        same_model: the file's architecture must be ``model_cfg`` (a stage model of another network is an error
            instead of silently replacing the configured one).

    Raises:
        LoadError: (a ``ValueError``; ``MissingFileError`` for a missing file) the file is unreadable, of none of the
            kinds above, of another architecture (``same_model``), or its plan or weights do not fit.
    """
    payload = load_file(path, key)
    where = f"`{key}`={str(path)!r}"
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        saved_cfg = OmegaConf.create(payload["model"])
        if same_model and model_cfg is not None:
            _check_same_model(saved_cfg, model_cfg, where, path, key)
        shape = payload.get("input_shape")
        return _rebuild(saved_cfg, payload.get("plan"), payload["state_dict"], where, path, key,
                        tuple(shape) if shape else None)
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        cfg = _require_cfg(model_cfg, "a Lightning checkpoint", where, path, key)
        state = {k[len("net."):]: v for k, v in payload["state_dict"].items() if k.startswith("net.")}
        if not state:
            raise LoadError(f"{where} has no `net.*` weights: expected a checkpoint of an ImageClassifier.", path, key)
        plan = (payload.get("lightning_compress") or {}).get("plan")
        return _rebuild(cfg, plan, state, where, path, key, None)
    if _is_bare_state_dict(payload):
        cfg = _require_cfg(model_cfg, "a bare state_dict", where, path, key)
        return _rebuild(cfg, None, payload, where, path, key, None)
    found = sorted(payload)[:8] if isinstance(payload, dict) else type(payload).__name__
    raise LoadError(f"{where} is not a model saved by lightning_compress (no {FORMAT!r} format key), a Lightning "
                    f"checkpoint or a state_dict; found {found}.", path, key)


def load_stage_model(path: str | Path, model_cfg: DictConfig | None = None, key: str = "model file",
                     same_model: bool = False) -> tuple[nn.Module, Any]:
    """``(net, plan)`` of :func:`read_stage_model` (same arguments and errors)."""
    saved = read_stage_model(path, key, model_cfg, same_model=same_model)
    return saved.net, saved.plan


def _rebuild(model_cfg: DictConfig, plan_dict: dict | None, state_dict: dict, where: str, path: str | Path,
             key: str, input_shape: tuple[int, ...] | None) -> SavedModel:
    try:
        net = build_net(model_cfg)
    except Exception as err:  # noqa: BLE001 - any build error means the stored architecture is unusable
        raise LoadError(f"{where}: its model config does not build a network: {err}", path, key) from err
    plan = None
    if plan_dict:
        from lightning_compress.pruning import PruningPlan, prune

        try:
            plan = PruningPlan.from_dict(plan_dict)
            prune(net, plan)  # a fresh network: a plan that fails half-way changes nothing the caller holds
        except Exception as err:  # noqa: BLE001 - the engine's errors name the layer; we add the file and key
            raise LoadError(f"{where}: its pruning plan does not fit the {_model_name(model_cfg)} network: {err}",
                            path, key) from err
    try:
        net.load_state_dict(state_dict)
    except RuntimeError as err:
        raise LoadError(f"{where}: its weights do not fit the {_model_name(model_cfg)} network: {err}",
                        path, key) from None
    return SavedModel(net, plan, model_cfg, input_shape)


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


def _is_bare_state_dict(payload: Any) -> bool:
    return isinstance(payload, dict) and bool(payload) and all(isinstance(v, Tensor) for v in payload.values())
