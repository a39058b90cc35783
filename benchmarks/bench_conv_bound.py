"""How much of a pruned network's MACs speedup its convolutions alone can deliver (issue 31): the conv-only bound.

For the unpruned and the pruned network of a ``bench_latency`` setting, every ``nn.Conv2d`` is timed alone on the input
it receives in the network (each distinct shape once, all of them interleaved by the project's latency routine), and
the two networks whole. Per network: the sum of its convolutions' medians and the rest (whole minus convolutions:
norms, activations, adds, the fused stream adds). The conv-only speedup (unpruned conv sum / pruned conv sum) divided
by the MACs speedup bounds what any change outside the convolutions can give: with ``residual="select"`` the streams
stay at full width, so the rest does not shrink with the MACs. Run it on a quiet machine only::

    .venv/bin/python -m benchmarks.bench_conv_bound --threads 2 --round-to 1 8 16 --channels-last
"""

from __future__ import annotations

import argparse
import copy
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from benchmarks.bench_latency import SEARCH_STEPS, SETTINGS, Setting, plan_at
from lightning_compress.cost import count_macs, interleaved_latency
from lightning_compress.pruning import build_channel_graph, prune

Signature = tuple[Any, ...]


def conv_calls(net: nn.Module, batch: torch.Tensor) -> Counter[Signature]:
    """How often each distinct convolution (input shape, weight shape, stride, padding, groups) runs in ``net``."""
    calls: Counter[Signature] = Counter()

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        calls[(tuple(args[0].shape), tuple(module.weight.shape), module.stride, module.padding, module.groups)] += 1

    handles = [m.register_forward_pre_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            net(batch)
    finally:
        for h in handles:
            h.remove()
    return calls


def conv_runner(signature: Signature, memory_format: torch.memory_format) -> Callable[[], Any]:
    """One forward of a random convolution of ``signature`` on a random input, in ``memory_format``."""
    shape, weight, stride, padding, groups = signature
    conv = nn.Conv2d(shape[1], weight[0], weight[2:], stride=stride, padding=padding, groups=groups).eval()
    conv = conv.to(memory_format=memory_format)
    x = torch.randn(shape).contiguous(memory_format=memory_format)
    return lambda: conv(x)


def bound(name: str, setting: Setting, round_to: int, threads: int, repeats: int, channels_last: bool,
          search_steps: int = SEARCH_STEPS) -> dict[str, Any]:
    """The setting's unpruned and pruned network at ``round_to``: MACs, whole and conv-only latency, the ratios."""
    torch.manual_seed(0)
    net = setting.build().eval()
    example = torch.zeros(1, 3, setting.image_size, setting.image_size)
    graph = build_channel_graph(net, example, residual=setting.residual)
    plan, _ = plan_at(net, example, setting, round_to, graph, search_steps)
    pruned = prune(copy.deepcopy(net), plan, fuse=setting.fuse).eval()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    batch = torch.randn(setting.batch_size, 3, setting.image_size, setting.image_size)
    batch = batch.contiguous(memory_format=memory_format)
    nets = {"unpruned": net.to(memory_format=memory_format), "pruned": pruned.to(memory_format=memory_format)}
    calls = {k: conv_calls(n, batch) for k, n in nets.items()}
    signatures = sorted(set(calls["unpruned"]) | set(calls["pruned"]))
    runners = {f"conv{i}": conv_runner(s, memory_format) for i, s in enumerate(signatures)}
    runners |= {k: (lambda n=n: n(batch)) for k, n in nets.items()}
    with torch.inference_mode():
        timed = interleaved_latency(runners, batch_size=setting.batch_size, repeats=repeats, threads=threads)
    whole = {k: timed[k].median_ms for k in nets}
    convs = {k: sum(timed[f"conv{i}"].median_ms * calls[k][s] for i, s in enumerate(signatures)) for k in nets}
    macs_speedup = count_macs(net, example) / count_macs(pruned, example)
    return {"model": name, "round_to": round_to, "channels_last": channels_last, "macs_speedup": macs_speedup,
            "whole_ms": whole, "conv_ms": convs, "rest_ms": {k: whole[k] - convs[k] for k in nets},
            "whole_ratio": whole["unpruned"] / whole["pruned"] / macs_speedup,
            "conv_ratio": convs["unpruned"] / convs["pruned"] / macs_speedup}


def markdown(rows: list[dict[str, Any]]) -> str:
    """One table row per network and rounding."""
    lines = ["| model | round_to | memory format | MACs speedup | conv ms before -> after | rest ms before -> after "
             "| conv-only realised / MACs | whole realised / MACs |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        conv, rest = r["conv_ms"], r["rest_ms"]
        lines.append(f"| {r['model']} | {r['round_to']} | {'channels-last' if r['channels_last'] else 'NCHW'} | "
                     f"{r['macs_speedup']:.2f} | {conv['unpruned']:.1f} -> {conv['pruned']:.1f} | "
                     f"{rest['unpruned']:.1f} -> {rest['pruned']:.1f} | {r['conv_ratio']:.2f} | "
                     f"{r['whole_ratio']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Print the table for the chosen settings and roundings; return its rows."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_conv_bound", description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(SETTINGS), default=["resnet56", "resnet56_select"])
    parser.add_argument("--round-to", nargs="+", type=int, default=[1, 8, 16])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--channels-last", action="store_true", help="time networks and convolutions channels-last")
    args = parser.parse_args(argv)
    if any(r < 1 for r in args.round_to):
        parser.error(f"--round-to values must be >= 1, got {args.round_to}.")
    rows = [bound(m, SETTINGS[m], r, args.threads, args.repeats, args.channels_last)
            for m in args.models for r in args.round_to]
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
