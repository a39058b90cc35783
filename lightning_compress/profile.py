"""Print a network's parameters, MACs, FLOPs (= 2 x MACs) and latency.

    python -m lightning_compress.profile model=resnet56
    python -m lightning_compress.profile model=vgg16 data=cifar10 latency.batch_size=32
    python -m lightning_compress.profile model=resnet56 prune.ratio=0.4 prune.importance=fpgm   # before/after pruning
    python -m lightning_compress.profile weights=logs/.../stages/final/model.pt  # a saved model

A saved stage model carries its architecture and input shape; a Lightning ``.ckpt`` is built from ``model=`` and
profiled on ``data=``'s shape.

With ``prune.ratio`` the unpruned and pruned networks are timed in one interleaved comparison (median and IQR of
``latency.repeats`` runs each; "faster"/"slower" only when the IQRs separate). The last line of standard output is one
JSON object (``params``, ``macs``, ``flops``, ``latency_ms``, ...), for scripts. The same before/after with
command-line flags, a per-layer table and the plan as JSON is ``python -m lightning_compress.pruning``
(:func:`prune_main`).
"""

from __future__ import annotations

import argparse
import copy
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig
from torch import nn

from lightning_compress.config import CONFIG_DIR, register_resolvers
from lightning_compress.cost import batch_of, compare_latency, latency_change, page_fault_note, profile_model
from lightning_compress.pruning import PruningPlan, prune, select_channels

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
    name = model_cfg._target_.rsplit(".", 1)[-1]
    return profile_network(net, torch.randn(shape), name, cfg.get("prune"), cfg.get("latency"))[0]


def profile_network(net: nn.Module, example: torch.Tensor, name: str, prune_cfg: Mapping[str, Any] | None = None,
                    latency_cfg: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], PruningPlan | None]:
    """Params, MACs and FLOPs of ``net`` on ``example``; with ``prune_cfg["ratio"]`` also of a pruned copy (the plan
    is returned, else ``None``); with ``latency_cfg["batch_size"]`` > 0 the networks are timed interleaved."""
    latency_cfg, prune_cfg = latency_cfg or {}, prune_cfg or {}
    batch = int(latency_cfg.get("batch_size", 0))
    if batch < 0:
        raise ValueError(f"`latency.batch_size` must be >= 0 (0 skips timing), got {batch!r}.")
    models, plan = {"model": net}, None
    if prune_cfg.get("ratio"):
        models["pruned"], plan = _prune(copy.deepcopy(net), example, prune_cfg)
    result: dict[str, Any] = {"model": name, "input": list(example.shape), **profile_model(net, example).as_dict()}
    if plan is not None:
        result["pruned"] = {**profile_model(models["pruned"], example).as_dict(), "channels_removed": plan.num_removed}
    if batch:
        timed = compare_latency(models, batch_of(example, batch), warmup=int(latency_cfg.get("warmup", 5)),
                                repeats=int(latency_cfg.get("repeats", 20)), threads=latency_cfg.get("threads"),
                                channels_last=bool(latency_cfg.get("channels_last", False)))
        result.update(timed["model"].as_fields())
        note = page_fault_note(timed)
        if note:
            warnings.warn(note, stacklevel=2)
        if plan is not None:
            result["pruned"].update(timed["pruned"].as_fields())
            result["latency_change"] = latency_change(timed["model"], timed["pruned"]).as_dict()
    return result, plan


def _prune(net: nn.Module, example: torch.Tensor, prune_cfg: Mapping[str, Any]) -> tuple[nn.Module, PruningPlan]:
    plan = select_channels(net, example, float(prune_cfg["ratio"]), importance=str(prune_cfg.get("importance", "l1")),
                           global_pruning=bool(prune_cfg.get("global_pruning", False)),
                           round_to=int(prune_cfg.get("round_to", 1)))
    prune(net, plan)
    return net, plan


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
    if "pruned" in result:
        pruned = result["pruned"]
        lines.append(f"pruned: {pruned['channels_removed']:,} channels removed")
        lines += [f"{title:7}{result[key]:,} -> {pruned[key]:,} ({_fewer(result[key], pruned[key])})"
                  for title, key in (("params", "params"), ("MACs", "macs"))]
    if "latency_change" in result:
        change = result["latency_change"]
        lines.append(f"pruned: {change['verdict']} (x{change['speedup']:.2f} of medians; faster/slower only when "
                     f"the inter-quartile ranges separate)")
    return "\n".join(lines)


def _fewer(before: int, after: int) -> str:
    return f"{100 * (1 - after / before):.1f}% fewer" if before else "-"


def _cell(value: Any, scale: float, unit: str) -> str:
    return "-" if value is None else f"{value / scale:.3f}{unit}" if scale != 1 else f"{value:.2f}{unit}"


def prune_main(argv: Sequence[str] | None = None) -> int:
    """``python -m lightning_compress.pruning --model resnet56 --ratio 0.3 [--table] [--plan-out p.json]``: the
    before/after of ``prune.ratio=`` above with command-line flags, the per-layer plan table and the plan as JSON."""
    from lightning_compress import models
    from lightning_compress.pruning.importance import IMPORTANCES

    parser = argparse.ArgumentParser(prog="python -m lightning_compress.pruning",
                                     description="Prune a project model and print params/MACs before and after.")
    parser.add_argument("--model", default="resnet56", help="factory in lightning_compress.models (resnet56, vgg16)")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--input-shape", type=int, nargs="+", default=[1, 3, 32, 32])
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--importance", default="l1", choices=sorted(IMPORTANCES))
    parser.add_argument("--global", dest="global_pruning", action="store_true")
    parser.add_argument("--plan-out", default=None, help="write the plan as JSON here")
    parser.add_argument("--table", action="store_true", help="print the per-layer table")
    args = parser.parse_args(argv)
    if not callable(getattr(models, args.model, None)):
        parser.error(f"--model must be a factory in lightning_compress.models, got {args.model!r}")
    net = getattr(models, args.model)(num_classes=args.num_classes).eval()
    prune_cfg = {"ratio": args.ratio, "importance": args.importance, "global_pruning": args.global_pruning}
    result, plan = profile_network(net, torch.randn(*args.input_shape), args.model, prune_cfg)
    print(format_table(result))
    if plan is not None and args.table:
        print(plan.summary())
    if plan is not None and args.plan_out:
        Path(args.plan_out).write_text(json.dumps(plan.to_dict()))
        print(f"plan written to {args.plan_out}")
    return 0


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="profile")
def main(cfg: DictConfig) -> None:
    """Print the table, then the JSON line."""
    result = profile_from_config(cfg)
    print(format_table(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
