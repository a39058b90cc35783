"""Prune a project model from the command line and print params/MACs before and after.

    python -m lightning_compress.pruning --model resnet56 --ratio 0.3 --importance l1 [--global] [--plan-out p.json]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import torch

from . import IMPORTANCES, build_channel_graph, prune, select_on_graph


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lightning_compress.pruning", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet56", help="factory in lightning_compress.models (resnet56, vgg16)")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--input-shape", type=int, nargs="+", default=[1, 3, 32, 32])
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--importance", default="l1", choices=sorted(IMPORTANCES))
    parser.add_argument("--global", dest="global_pruning", action="store_true")
    parser.add_argument("--plan-out", default=None, help="write the plan as JSON here")
    parser.add_argument("--table", action="store_true", help="print the per-layer table")
    args = parser.parse_args(argv)

    from lightning_compress import models
    from lightning_compress.profiling import count_macs, count_params

    if not hasattr(models, args.model):
        parser.error(f"--model must be a factory in lightning_compress.models, got {args.model!r}")
    model = getattr(models, args.model)(num_classes=args.num_classes).eval()
    x = torch.randn(*args.input_shape)
    before = count_params(model), count_macs(model, x)
    graph = build_channel_graph(model, x)
    plan = select_on_graph(graph, model, args.ratio, importance=args.importance, global_pruning=args.global_pruning)
    prune(model, plan)
    after = count_params(model), count_macs(model, x)
    print(f"{args.model}: {len(graph.groups)} channel groups ({len(graph.prunable_groups)} prunable), "
          f"removed {plan.num_removed} channels")
    if args.table:
        print(plan.summary())
    print(f"params {before[0]:,} -> {after[0]:,} ({100 * (1 - after[0] / before[0]):.1f}% fewer)")
    print(f"MACs   {before[1]:,} -> {after[1]:,} ({100 * (1 - after[1] / before[1]):.1f}% fewer)")
    if args.plan_out:
        with open(args.plan_out, "w") as f:
            json.dump(plan.to_dict(), f)
        print(f"plan written to {args.plan_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
