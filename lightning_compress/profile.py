"""Print a network's parameters, MACs, FLOPs (= 2 x MACs) and latency.

    python -m lightning_compress.profile model=resnet56
    python -m lightning_compress.profile model=vgg16 data=cifar10 latency.batch_size=32
    python -m lightning_compress.profile model=resnet56 prune.ratio=0.4 prune.importance=fpgm   # before/after pruning
    python -m lightning_compress.profile weights=logs/.../stages/final/model.pt  # a saved model

A saved stage model carries its architecture and input shape; a Lightning ``.ckpt`` is built from ``model=`` and
profiled on ``data=``'s shape.

With ``prune.ratio`` the unpruned and pruned networks are timed in one interleaved comparison (median and IQR of
``latency.repeats`` runs each; "faster"/"slower" only when the IQRs separate). The last line of standard output is one
JSON object (``params``, ``macs``, ``flops``, ``latency_ms``, ...), for scripts.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import hydra
import torch
from omegaconf import DictConfig
from torch import nn

from lightning_compress.config import CONFIG_DIR, register_resolvers
from lightning_compress.profiling import batch_of, compare_latency, latency_change, profile_model

register_resolvers()


def profile_from_config(cfg: DictConfig) -> dict[str, Any]:
    """Profile ``cfg.model`` (or the saved model ``cfg.weights``), optionally before and after pruning.

    With ``prune.ratio`` the unpruned and pruned networks are timed in one interleaved comparison.
    """
    from lightning_compress.pipeline.artifacts import read_stage_model
    from lightning_compress.pipeline.builders import build_net

    shape = (1, int(cfg.data.in_channels), int(cfg.data.image_size), int(cfg.data.image_size))
    model_cfg = cfg.model
    if cfg.get("weights"):  # a stage model carries its architecture and input shape; a .ckpt uses model= / data=
        saved = read_stage_model(cfg.weights, "weights", cfg.model)
        net, model_cfg = saved.net, saved.model_cfg
        shape = (1, *saved.input_shape) if saved.input_shape else shape
    else:
        net = build_net(cfg.model)
    example = torch.randn(shape)
    latency_cfg = cfg.get("latency") or {}
    batch = int(latency_cfg.get("batch_size", 0))
    if batch < 0:
        raise ValueError(f"`latency.batch_size` must be >= 0 (0 skips timing), got {batch!r}.")
    models = {"model": net}
    prune_cfg = cfg.get("prune") or {}
    if prune_cfg.get("ratio"):
        models["pruned"] = _prune(copy.deepcopy(net), example, prune_cfg)
    result: dict[str, Any] = {"model": model_cfg._target_.rsplit(".", 1)[-1], "input": list(shape),
                              **profile_model(net, example).as_dict()}
    if "pruned" in models:
        result["pruned"] = profile_model(models["pruned"], example).as_dict()
    if batch:
        timed = compare_latency(models, batch_of(example, batch), warmup=int(latency_cfg.get("warmup", 5)),
                                repeats=int(latency_cfg.get("repeats", 20)), threads=latency_cfg.get("threads"))
        result.update(timed["model"].as_fields())
        if "pruned" in models:
            result["pruned"].update(timed["pruned"].as_fields())
            result["latency_change"] = latency_change(timed["model"], timed["pruned"]).as_dict()
    return result


def _prune(net: nn.Module, example: torch.Tensor, prune_cfg: DictConfig) -> nn.Module:
    from lightning_compress.pruning import prune, select_channels

    plan = select_channels(net, example, float(prune_cfg.ratio), importance=str(prune_cfg.get("importance", "l1")),
                           global_pruning=bool(prune_cfg.get("global_pruning", False)),
                           round_to=int(prune_cfg.get("round_to", 1)))
    prune(net, plan)
    return net


def format_table(result: dict[str, Any]) -> str:
    """Rows: params, MACs, FLOPs, latency median and IQR; a column for the pruned model when there is one."""
    columns = [("model", result)] + ([("pruned", result["pruned"])] if "pruned" in result else [])
    rows = [("params", "params", 1e6, "M"), ("MACs", "macs", 1e6, "M"), ("FLOPs (=2xMACs)", "flops", 1e6, "M"),
            ("latency (median)", "latency_ms", 1, " ms"), ("latency IQR", "latency_iqr_ms", 1, " ms")]
    lines = [f"{result['model']}  input {tuple(result['input'])}",
             f"{'':18}" + "".join(f"{c:>14}" for c, _ in columns)]
    for title, key, scale, unit in rows:
        cells = "".join(f"{_cell(data.get(key), scale, unit):>14}" for _, data in columns)
        lines.append(f"{title:18}{cells}")
    if "latency_batch_size" in result:
        mode = "interleaved, " if "pruned" in result else ""
        lines.append(f"latency: batch {result['latency_batch_size']}, {result['latency_device']}, "
                     f"{result['latency_threads']} threads, {mode}median of {result['latency_repeats']} "
                     f"after {result['latency_warmup']} warm-up")
    if "latency_change" in result:
        change = result["latency_change"]
        lines.append(f"pruned: {change['verdict']} (x{change['speedup']:.2f} of medians; faster/slower only when "
                     f"the inter-quartile ranges separate)")
    return "\n".join(lines)


def _cell(value: Any, scale: float, unit: str) -> str:
    return "-" if value is None else f"{value / scale:.3f}{unit}" if scale != 1 else f"{value:.2f}{unit}"


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="profile")
def main(cfg: DictConfig) -> None:
    """Print the table, then the JSON line."""
    result = profile_from_config(cfg)
    print(format_table(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
