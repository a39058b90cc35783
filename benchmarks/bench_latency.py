"""Does pruning's MACs reduction become a latency reduction? Realised speedup / MACs speedup, with channel rounding.

Settings (issue 10, item 3; issue 31), each with ``round_to`` 1, 8 and ``auto`` by default (kept channels per group
rounded up to a multiple; ``auto``: the multiple among 1, 8, 16 that
:func:`lightning_compress.pruning.alignment.choose_round_to` measures fastest on the device at the row's batch size,
timed with the same routine):

* ``resnet56``: the project's CIFAR ResNet-56, the same ratio for every group, found by bisection so that the pruned
  network keeps 50% of the MACs (the step closest to 50% when rounding makes 50% unreachable), batch 64 at 32x32;
* ``vgg16_a``: VGG-16 with the per-layer ratios of ``conf/experiment/vgg16_cifar10_l1_a.yaml`` (Li et al.'s
  VGG-16-pruned-A: conv1 and conv8-13 at 50%), batch 64 at 32x32;
* ``resnet50``: the torchvision-layout ResNet-50 of ``benchmarks/resnet50.py``, 30% of every group, batch 8 at 224;
* ``mobilenet_v2``: the torchvision-layout MobileNetV2 of ``benchmarks/mobilenetv2.py``, 30%, batch 8 at 224;
* ``resnet56_select``: ``resnet56`` with ``residual="select"`` (every layer on its own, the streams kept at full
  width) at the same 50% of the MACs, in the fused form ``prune`` gives (a writer's output added to the shortcut by one
  ``index_add``; see ``pruning.boundaries``);
* ``resnet56_select_hooked``: the same network in the hooked form (``prune(..., fuse=False)``: re-expansion into a
  zero tensor, then the add), the form before issue 31.

Channels are chosen with ``select_channels`` (L1 norm, random weights: latency does not depend on the weights) and
removed with ``prune``. The unpruned and the pruned network are timed in one interleaved comparison by
``lightning_compress.cost.compare_latency`` (the routine results.json uses): median and inter-quartile range,
"faster" only when the ranges separate; realised / MACs speedup is ``cost.speed_ratio`` (flagged below 0.85).
With ``--onnx`` both are also exported (``portable.export_and_check``: parity checked) and timed interleaved in ONNX
Runtime. Prints one markdown table (for benchmarks/README.md). Run it on a quiet machine only::

    .venv/bin/python -m benchmarks.bench_latency --threads 2 --onnx          # CPU, the issue's settings
    .venv/bin/python -m benchmarks.bench_latency --device cuda --threads 1   # a GPU (CUDA events; no ONNX column)
    .venv/bin/python -m benchmarks.bench_latency --smoke                     # proves it runs; numbers meaningless
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from benchmarks.mobilenetv2 import MobileNetV2
from benchmarks.resnet50 import ResNet50
from lightning_compress.config import CONFIG_DIR
from lightning_compress.cost import (
    SPEED_RATIO_TARGET,
    batch_of,
    compare_latency,
    count_macs,
    hardware_summary,
    latency_change,
    speed_ratio,
)
from lightning_compress.models import resnet56, vgg16
from lightning_compress.portable import export_and_check
from lightning_compress.pruning import PruningPlan, build_channel_graph, prune, select_channels
from lightning_compress.pruning.alignment import choose_round_to

SEARCH_STEPS = 12
AUTO = "auto"


@dataclass(frozen=True)
class Setting:
    """One benchmarked network: how to build it, its input, and what to prune (a ratio, a ratio map or a MACs
    fraction to keep)."""

    build: Callable[[], nn.Module]
    image_size: int
    batch_size: int
    ratio: float | Mapping[str, float] | None = None
    keep_macs: float | None = None
    residual: str = "couple"
    fuse: bool = True  # residual="select": the fused form of prune (False: the hooked form)


def vgg16_a_ratios() -> dict[str, float]:
    """The per-layer ratio map of the VGG-16-A preset, read from its experiment YAML."""
    cfg = OmegaConf.load(CONFIG_DIR / "experiment" / "vgg16_cifar10_l1_a.yaml")
    return {str(k): float(v) for k, v in cfg.method.callback.pruning_ratio.items()}


SETTINGS: dict[str, Setting] = {
    "resnet56": Setting(lambda: resnet56(num_classes=10), 32, 64, keep_macs=0.5),
    # the same MACs with every layer pruned on its own, the residual streams kept at full width (re-expansion and
    # channel selection hooks): the latency of residual="select" against "couple" at equal MACs
    "resnet56_select": Setting(lambda: resnet56(num_classes=10), 32, 64, keep_macs=0.5, residual="select"),
    "resnet56_select_hooked": Setting(lambda: resnet56(num_classes=10), 32, 64, keep_macs=0.5, residual="select",
                                      fuse=False),
    "vgg16_a": Setting(lambda: vgg16(num_classes=10), 32, 64, ratio=vgg16_a_ratios()),
    "resnet50": Setting(lambda: ResNet50(num_classes=1000), 224, 8, ratio=0.3),
    "mobilenet_v2": Setting(lambda: MobileNetV2(num_classes=1000), 224, 8, ratio=0.3),
}


def pruned_copy(net: nn.Module, example: torch.Tensor, ratio: Any, round_to: int, graph: Any, fuse: bool = True
                ) -> tuple[nn.Module, PruningPlan]:
    """A pruned deep copy of ``net`` (``net`` itself is unchanged) and its plan."""
    plan = select_channels(net, example, ratio, importance="l1", round_to=round_to, graph=graph,
                           residual=graph.residual)
    pruned = copy.deepcopy(net)
    prune(pruned, plan, fuse=fuse)
    return pruned, plan


def ratio_for_macs(net: nn.Module, example: torch.Tensor, keep_macs: float, round_to: int, graph: Any,
                   steps: int = SEARCH_STEPS) -> float:
    """The per-group ratio whose pruned network's MACs fraction is closest to ``keep_macs`` (bisection)."""
    full = count_macs(net, example)
    low, high = 0.0, 0.95
    best, best_error = 0.0, float("inf")
    for _ in range(steps):
        mid = (low + high) / 2
        pruned, _ = pruned_copy(net, example, mid, round_to, graph, fuse=False)  # MACs only: the form is irrelevant
        fraction = count_macs(pruned, example) / full
        if abs(fraction - keep_macs) < best_error:
            best, best_error = mid, abs(fraction - keep_macs)
        low, high = (mid, high) if fraction > keep_macs else (low, mid)
    return best


def plan_at(net: nn.Module, example: torch.Tensor, setting: Setting, round_to: int, graph: Any,
            search_steps: int = SEARCH_STEPS) -> tuple[PruningPlan, Any]:
    """The setting's plan at ``round_to`` (its ratio searched for ``keep_macs`` at that rounding) and the ratio."""
    ratio = setting.ratio
    if setting.keep_macs is not None:
        ratio = ratio_for_macs(net, example, setting.keep_macs, round_to, graph, search_steps)
    return pruned_copy(net, example, ratio, round_to, graph, fuse=False)[1], ratio


def bench_one(name: str, setting: Setting, round_to: int | str, device: torch.device, repeats: int, warmup: int,
              threads: int | None, image_size: int | None = None, batch_size: int | None = None,
              search_steps: int = SEARCH_STEPS, onnx: bool = False, channels_last: bool = False) -> dict[str, Any]:
    """MACs and interleaved latency of one network before and after pruning at one ``round_to`` (an int or
    ``"auto"``), in PyTorch (``channels_last``: both networks and the input in channels-last memory format) and, with
    ``onnx``, in ONNX Runtime."""
    torch.manual_seed(0)
    size = image_size or setting.image_size
    bs = batch_size or setting.batch_size
    net = setting.build().eval()
    example = torch.zeros(1, 3, size, size)
    graph = build_channel_graph(net, example, residual=setting.residual)
    alignment = None
    if round_to == AUTO:
        ratios: dict[int, Any] = {}

        def select(m: int) -> PruningPlan:
            plan, ratios[m] = plan_at(net, example, setting, m, graph, search_steps)
            return plan

        choice = choose_round_to(net.to(device), example.to(device), select, batch_size=bs, device=device,
                                 warmup=warmup, repeats=repeats, threads=threads, channels_last=channels_last)
        plan, ratio, alignment = choice.plan, ratios[choice.round_to], choice.as_dict()
    else:
        plan, ratio = plan_at(net, example, setting, round_to, graph, search_steps)
    net = net.cpu()
    pruned = prune(copy.deepcopy(net), plan, fuse=setting.fuse)
    macs_before, macs_after = count_macs(net, example), count_macs(pruned, example)
    macs_speedup = macs_before / macs_after
    row: dict[str, Any] = {
        "model": name, "residual": setting.residual, "form": _form(setting), "input": f"{bs}x{size}x{size}",
        "round_to": round_to, "round_to_used": alignment["round_to"] if alignment else round_to,
        "channels_last": channels_last,
        "alignment": alignment, "ratio": ratio if isinstance(ratio, float) else "preset",
        "macs_before": macs_before, "macs_after": macs_after, "macs_speedup": macs_speedup,
        "widths": [(g.size - len(g.removed), g.size) for g in plan.groups],
    }
    if onnx:
        with tempfile.TemporaryDirectory() as tmp:
            report = export_and_check(pruned, (3, size, size), Path(tmp) / "pruned.onnx", "onnx", unpruned=net,
                                      latency_batch_size=bs, repeats=repeats, warmup=warmup, threads=threads)
        change, models = report["latency"]["change"], report["latency"]["models"]
        row["onnx"] = {"parity": report["parity"], "before": models["unpruned"], "after": models["exported"],
                       "latency_speedup": change["speedup"], "verdict": change["verdict"],
                       "latency_ratio": speed_ratio(macs_speedup, change["speedup"]).ratio}
    batch = batch_of(example, bs).to(device)
    timed = compare_latency({"unpruned": net.to(device), "pruned": pruned.to(device)}, batch, warmup=warmup,
                            repeats=repeats, threads=threads, channels_last=channels_last)
    before, after = timed["unpruned"], timed["pruned"]
    change = latency_change(before, after)
    return {**row, "before": before.as_dict(), "after": after.as_dict(), "latency_speedup": change.speedup,
            "verdict": change.verdict, "latency_ratio": speed_ratio(macs_speedup, change.speedup).ratio}


def _form(setting: Setting) -> str:
    return setting.residual if setting.residual == "couple" else f"select, {'fused' if setting.fuse else 'hooked'}"


def markdown(rows: list[dict[str, Any]], header: dict[str, Any]) -> str:
    """The table for benchmarks/README.md, with the machine and settings it was measured on."""
    first = rows[0]["before"] if rows else {}
    smoke = " [SMOKE: numbers meaningless]" if header["smoke"] else ""
    onnx = any("onnx" in r for r in rows)
    allocator = header["hardware"].get("allocator_env") or "the C library's defaults"
    lines = [f"Measured {header['date']} on {header['hardware']['processor']} ({header['hardware']['cpu_count']} "
             f"cores available), torch {header['hardware']['torch']}, device {first.get('device')}, "
             f"allocator {allocator}, "
             f"{first.get('threads')} threads{', channels-last' if rows and rows[0].get('channels_last') else ''}, "
             f"median of {first.get('repeats')} interleaved repeats after "
             f"{first.get('warmup')} warm-up (IQR in brackets){smoke}.",
             "",
             "| model | form | input | round_to | MACs before -> after | MACs speedup | latency before ms "
             "| latency after ms | realised speedup | verdict | realised / MACs speedup | page faults per run |"
             + (" ONNX Runtime speedup | ORT verdict | ORT realised / MACs | parity |" if onnx else ""),
             "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|---|---|" if onnx else "")]
    for r in rows:
        rounding = f"auto -> {r['round_to_used']}" if r["round_to"] == AUTO else str(r["round_to"])
        line = (f"| {r['model']} | {r['form']} | {r['input']} | {rounding} | {r['macs_before'] / 1e6:.1f}M -> "
                f"{r['macs_after'] / 1e6:.1f}M ({100 * r['macs_after'] / r['macs_before']:.1f}%) | "
                f"{r['macs_speedup']:.2f} | {_ms(r['before'])} | {_ms(r['after'])} | {r['latency_speedup']:.2f} | "
                f"{r['verdict']} | {_ratio(r['latency_ratio'])} | {_faults(r['before'])} -> {_faults(r['after'])} |")
        if onnx:
            o = r.get("onnx")
            line += (f" {o['latency_speedup']:.2f} | {o['verdict']} | {_ratio(o['latency_ratio'])} | "
                     f"{'passed' if o['parity']['passed'] else 'FAILED'} |" if o else " - | - | - | - |")
        lines.append(line)
    return "\n".join(lines)


def _ratio(value: float) -> str:
    return f"{value:.2f}" + (f" (< {SPEED_RATIO_TARGET})" if value < SPEED_RATIO_TARGET else "")


def _faults(latency: dict[str, Any]) -> str:
    return "-" if latency.get("page_faults") is None else f"{latency['page_faults']:.0f}"


def _ms(latency: dict[str, Any]) -> str:
    return f"{latency['median_ms']:.2f} [{latency['q1_ms']:.2f}-{latency['q3_ms']:.2f}]"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Benchmark the chosen models at every ``round_to``; print the markdown table; return the rows."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_latency", description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--round-to", nargs="+", type=_round_to, default=[1, 8, AUTO],
                        help="ints >= 1 and/or 'auto' (default: 1 8 auto)")
    parser.add_argument("--onnx", action="store_true", help="also export (parity checked) and time in ONNX Runtime")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch threads while timing (default: torch's)")
    parser.add_argument("--repeats", type=int, default=20, help="timed interleaved repeats per model (>= 20)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--channels-last", action="store_true",
                        help="time PyTorch in channels-last memory format (networks and input)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    parser.add_argument("--smoke", action="store_true", help="batch 2 at 32x32, 2 repeats, 1 warm-up, 1 thread, a "
                        "short ratio search: checks the script runs; its numbers mean nothing")
    args = parser.parse_args(argv)
    if any(r != AUTO and r < 1 for r in args.round_to):
        parser.error(f"--round-to values must be >= 1 or 'auto', got {args.round_to}.")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available.")
    if args.onnx and device.type != "cpu":
        parser.error("--onnx times ONNX Runtime on the CPU: use it with --device cpu.")
    smoke = {"image_size": 32, "batch_size": 2, "search_steps": 8} if args.smoke else {}
    repeats, warmup, threads = (2, 1, 1) if args.smoke else (args.repeats, args.warmup, args.threads)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)  # the ratio search and MAC counts too, not only the timing
    try:
        rows = [bench_one(name, SETTINGS[name], round_to, device, repeats, warmup, threads, onnx=args.onnx,
                          channels_last=args.channels_last, **smoke)
                for name in args.models for round_to in args.round_to]
    finally:
        torch.set_num_threads(previous_threads)
    header = {"date": datetime.date.today().isoformat(), "hardware": hardware_summary(), "smoke": args.smoke}
    print(markdown(rows, header))
    if args.json:
        args.json.write_text(json.dumps({**header, "rows": rows}, indent=2))
    return rows


def _round_to(value: str) -> int | str:
    return AUTO if value == AUTO else int(value)


if __name__ == "__main__":
    main()
