"""Exact fingerprints of the engine's output (graph, plan, pruned model's output) on torchvision and project models.

Run before and after an engine change, then compare: any difference in a group, member index, plan or pruned output
shows as a changed hash. Needs torchvision (e.g. /work/venv-zoo):

    python -m benchmarks.graph_signatures before.json
    python -m benchmarks.graph_signatures after.json --compare before.json
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import warnings
from collections.abc import Callable

import torch
from torch import nn

from lightning_compress.models import resnet56, vgg16
from lightning_compress.pruning import build_channel_graph, prune
from lightning_compress.pruning.selection import select_on_graph

TORCHVISION = ("resnet50", "mobilenet_v2", "regnet_y_1_6gf", "efficientnet_b0", "convnext_tiny", "densenet121",
               "shufflenet_v2_x1_0", "googlenet", "squeezenet1_1", "mnasnet1_0", "inception_v3")


def zoo() -> dict[str, tuple[Callable[[], nn.Module], int]]:
    from torchvision import models

    def tv(name: str) -> Callable[[], nn.Module]:
        extra = {"init_weights": False, "aux_logits": True} if name in ("googlenet", "inception_v3") else {}
        return lambda: models.get_model(name, weights=None, **extra)

    out = {"resnet56": (lambda: resnet56(num_classes=10), 32),
           "resnet56b": (lambda: resnet56(num_classes=10, shortcut="B"), 32),
           "vgg16": (lambda: vgg16(num_classes=10), 32)}
    out.update({name: (tv(name), 299 if name == "inception_v3" else 224) for name in TORCHVISION})
    return out


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, default=str).encode()).hexdigest()[:16]


def signature(build: Callable[[], nn.Module], size: int, residual: str) -> dict[str, object]:
    torch.manual_seed(0)
    model, x = build().eval(), torch.randn(1, 3, size, size)
    graph = build_channel_graph(model, x, residual=residual)
    plan = select_on_graph(graph, model, 0.3, importance="l1")
    pruned = prune(copy.deepcopy(model), plan)
    with torch.no_grad():
        out = pruned(x)
    groups = [(g.id, g.size, g.prunable, g.frozen_reasons, g.writers, g.readers,
               [(m.module, m.slot, m.size, m.indices.tolist(), m.positions.tolist()) for m in g.members])
              for g in graph.groups]
    return {"graph": _digest(groups), "plan": _digest(plan.to_dict()), "output": float(out.double().abs().sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--compare", default=None, help="an earlier output: print what differs, exit 1 if anything")
    parser.add_argument("--models", nargs="*", default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    models = zoo()
    result = {}
    for name in args.models or list(models):
        build, size = models[name]
        result[name] = {mode: signature(build, size, mode) for mode in ("couple", "select")}
        print(name, result[name], flush=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    if args.compare:
        with open(args.compare) as f:
            before = json.load(f)
        changed = [(n, m) for n in result for m in result[n] if before.get(n, {}).get(m) != result[n][m]]
        print("identical" if not changed else f"changed: {changed}")
        raise SystemExit(1 if changed else 0)


if __name__ == "__main__":
    main()
