"""How often a MACs budget lands in its window (``0.99 * target <= MACs <= target``) on very narrow networks.

A tiny VGG (widths 8, 8, 16, 16 on 1x8x8 inputs: one channel is 1-9% of the MACs) with random BN scales in [0.01, 1),
pruned to each target by a global BN-scale threshold (Network Slimming's) and by per-layer L1; every (seed, target)
is one ``fit_budget`` call. Counts, not timings: the result does not depend on how busy the machine is::

    PYTHONPATH=. .venv/bin/python -m benchmarks.budget_window --seeds 30
"""

from __future__ import annotations

import argparse

import torch

from lightning_compress.models.vgg import VGG
from lightning_compress.pruning import build_channel_graph, fit_budget

TINY_VGG = [8, 8, "M", 16, 16]
METHODS = {"global BN scale": {"importance": "bn_scale", "global_pruning": True}, "L1 per layer": {"importance": "l1"}}
TARGETS = (0.3, 0.4, 0.5, 0.6, 0.7)


def window_misses(seeds: int, method: dict) -> tuple[int, int, float]:
    """(misses, targets tried, worst relative error) of ``method`` over ``seeds`` random networks."""
    misses, worst, x = 0, 0.0, torch.randn(1, 1, 8, 8)
    for seed in range(seeds):
        torch.manual_seed(seed)
        model = VGG(TINY_VGG, num_classes=4, in_channels=1).eval()
        with torch.no_grad():
            for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
                bn.weight.uniform_(0.01, 1.0)
        graph = build_channel_graph(model, x)
        for target in TARGETS:
            error = fit_budget(graph, model, x, target_macs=target, **method).budget.error
            if not -0.01 <= error <= 0:
                misses, worst = misses + 1, min(worst, error)
    return misses, seeds * len(TARGETS), worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    args = parser.parse_args()
    print("| method | targets missed | worst error |\n|---|---|---|")
    for name, method in METHODS.items():
        misses, total, worst = window_misses(args.seeds, method)
        print(f"| {name} | {misses} / {total} | {100 * worst:+.2f}% |")


if __name__ == "__main__":
    main()
