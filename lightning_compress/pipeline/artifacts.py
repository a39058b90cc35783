"""Saving and loading stage models: weights + the pruning plan + the model config, never a pickled module.

A file holds ``{"format", "model" (the conf/model entry), "plan" (PruningPlan.to_dict() or None),
"state_dict", "input_shape" (one input's shape without batch, or None)}``; it loads with
``torch.load(weights_only=True)`` and is rebuilt by pruning a fresh network with the plan, then loading the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from lightning_compress.pipeline.builders import build_net

FORMAT = "lightning_compress.stage_model/1"


def save_stage_model(path: Path, net: nn.Module, model_cfg: DictConfig, plan: Any = None,
                     input_shape: Sequence[int] | None = None) -> Path:
    """Write ``net``'s weights (on CPU), its architecture config, its pruning plan (if pruned) and the shape of one
    input without batch (for export) to ``path``."""
    payload = {
        "format": FORMAT,
        "model": OmegaConf.to_container(model_cfg, resolve=True),
        "plan": plan.to_dict() if plan is not None else None,
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "input_shape": [int(d) for d in input_shape] if input_shape is not None else None,
    }
    torch.save(payload, path)
    return path


def load_stage_model(path: str | Path, model_cfg: DictConfig | None = None) -> tuple[nn.Module, Any]:
    """Rebuild a saved network; returns ``(net, plan)``. Lightning ``.ckpt`` files (``net.*`` keys) work too.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is neither a stage model nor a Lightning checkpoint of an ``ImageClassifier``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`method.pretrained`/model file {str(path)!r} does not exist.")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        cfg = OmegaConf.create(payload["model"])
        return _rebuild(cfg, payload.get("plan"), payload["state_dict"], path)
    if isinstance(payload, dict) and "state_dict" in payload:
        if model_cfg is None:
            raise ValueError(f"{str(path)!r} is a Lightning checkpoint; loading it needs the `model` config.")
        state = {k[len("net."):]: v for k, v in payload["state_dict"].items() if k.startswith("net.")}
        if not state:
            raise ValueError(f"{str(path)!r} has no `net.*` weights: expected a checkpoint of an ImageClassifier.")
        plan = (payload.get("lightning_compress") or {}).get("plan")
        return _rebuild(model_cfg, plan, state, path)
    raise ValueError(f"{str(path)!r} is not a model saved by lightning_compress (no {FORMAT!r} format key).")


def _rebuild(model_cfg: DictConfig, plan_dict: dict | None, state_dict: dict, path: Path) -> tuple[nn.Module, Any]:
    net = build_net(model_cfg)
    plan = None
    if plan_dict:
        from lightning_compress.pruning import PruningPlan, prune

        plan = PruningPlan.from_dict(plan_dict)
        prune(net, plan)
    try:
        net.load_state_dict(state_dict)
    except RuntimeError as err:
        raise ValueError(f"weights in {str(path)!r} do not fit the model config: {err}") from err
    return net, plan
