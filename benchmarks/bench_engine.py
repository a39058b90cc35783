"""Time the pruning engine (graph build, selection, physical pruning) on ResNet-56, VGG-16 and ResNet-50.

Usage:  .venv/bin/python -m benchmarks.bench_engine [--repeats 5] [--ratio 0.3]
Compares with Torch-Pruning when ``torch_pruning`` is importable (optional; never a runtime dependency).
Everything runs with ``torch.set_num_threads(1)`` so numbers are stable on a shared CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from lightning_compress.pruning import build_channel_graph, prune
from lightning_compress.pruning.selection import select_on_graph

from .resnet50 import ResNet50


def _models() -> list[tuple[str, Callable[[], nn.Module], tuple[int, ...]]]:
    from lightning_compress.models import resnet56, vgg16

    return [
        ("ResNet-56 (CIFAR, 32x32)", lambda: resnet56(num_classes=10), (1, 3, 32, 32)),
        ("VGG-16 (CIFAR, 32x32)", lambda: vgg16(num_classes=10), (1, 3, 32, 32)),
        ("ResNet-50 (224x224)", ResNet50, (1, 3, 224, 224)),
    ]


def _time(fn: Callable[[], object]) -> tuple[float, object]:
    """Process CPU time (robust to other jobs on a shared CPU; the work is single-threaded) and the result."""
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def _wall(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_ours(build: Callable[[], nn.Module], shape: tuple[int, ...], ratio: float, repeats: int) -> dict:
    x = torch.randn(shape)
    rows: dict[str, list[float]] = {"graph": [], "select": [], "prune": [], "total": [], "wall": []}
    info = {}
    for _ in range(repeats):
        model = build().eval()
        t_graph, graph = _time(lambda m=model: build_channel_graph(m, x))
        t_select, plan = _time(lambda m=model, g=graph: select_on_graph(g, m, ratio, importance="l1"))
        t_prune, _ = _time(lambda m=model, p=plan: prune(m, p))
        for key, value in (("graph", t_graph), ("select", t_select), ("prune", t_prune),
                           ("total", t_graph + t_select + t_prune)):
            rows[key].append(value)
        fresh = build().eval()
        rows["wall"].append(_wall(lambda m=fresh: prune(m, select_on_graph(build_channel_graph(m, x), m, ratio))))
        info = {"groups": len(graph.groups), "prunable": len(graph.prunable_groups), "model": model}
    return {k: statistics.median(v) for k, v in rows.items()} | info


def bench_torch_pruning(build: Callable[[], nn.Module], shape: tuple[int, ...], ratio: float,
                        repeats: int) -> tuple[float, float] | None:
    """Torch-Pruning's BasePruner (graph build in the constructor, then step) with group L1 importance."""
    try:
        import torch_pruning as tp
    except ImportError:
        return None
    x = torch.randn(shape)

    def run(model: nn.Module) -> None:
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        pruner = tp.pruner.BasePruner(model, x, importance=tp.importance.GroupMagnitudeImportance(p=1),
                                      pruning_ratio=ratio, ignored_layers=[last])
        pruner.step()

    cpu, wall = [], []
    for _ in range(repeats):
        model = build().eval()
        cpu.append(_time(lambda m=model: run(m))[0])
        model = build().eval()
        wall.append(_wall(lambda m=model: run(m)))
    return statistics.median(cpu), statistics.median(wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ratio", type=float, default=0.3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        from lightning_compress.profiling import count_macs, count_params
    except ImportError:  # profiling is the foundation's module; the timings do not need it
        count_macs = count_params = None
    print(f"torch {torch.__version__}, python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}, threads=1, ratio={args.ratio}, median of {args.repeats}")
    with contextlib.suppress(OSError):
        print(f"load average: {os.getloadavg()}")
    header = ("| model | groups (prunable) | graph | select | prune | total CPU s | total wall s | Torch-Pruning CPU s"
              " | Torch-Pruning wall s | params | MACs |")
    print(header)
    print("|" + "---|" * 11)
    for name, build, shape in _models():
        ours = bench_ours(build, shape, args.ratio, args.repeats)
        tp_time = bench_torch_pruning(build, shape, args.ratio, args.repeats)
        base = build().eval()
        params = macs = "n/a"
        if count_params is not None:
            x = torch.randn(shape)
            params = f"{count_params(base) / 1e6:.2f}M -> {count_params(ours['model']) / 1e6:.2f}M"
            macs = f"{count_macs(base, x) / 1e6:.0f}M -> {count_macs(ours['model'], x) / 1e6:.0f}M"
        tp_text = f"{tp_time[0]:.3f} | {tp_time[1]:.3f}" if tp_time is not None else "not installed | -"
        print(f"| {name} | {ours['groups']} ({ours['prunable']}) | {ours['graph']:.3f} | {ours['select']:.3f} | "
              f"{ours['prune']:.3f} | {ours['total']:.3f} | {ours['wall']:.3f} | {tp_text} | {params} | {macs} |")


if __name__ == "__main__":
    main()
