"""Run the engine over every torchvision classification model: trace, select 30 % (l1), prune, forward.

Usage:  .venv/bin/python -m benchmarks.torchvision_sweep [--skip vit_h_14 regnet_y_128gf] [--stub-ops] [names...]
``--stub-ops`` skips registering torchvision's C++ op schemas (needed only when the installed torchvision wheel
was built for another torch; classification models do not use those ops).
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

import torch

from lightning_compress.pruning.selection import select_on_graph


def _stub_torchvision_ops() -> None:
    import torch.library as library

    original = library.register_fake

    def register_fake(name, *args, **kwargs):
        if isinstance(name, str) and name.startswith("torchvision::"):
            return lambda fn: fn
        return original(name, *args, **kwargs)

    library.register_fake = register_fake


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*")
    parser.add_argument("--skip", nargs="*", default=["vit_h_14", "regnet_y_128gf"])
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--stub-ops", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.stub_ops:
        _stub_torchvision_ops()
    from torchvision import models

    from lightning_compress.pruning import build_channel_graph, prune

    names = args.names or [n for n in models.list_models(module=models) if n not in args.skip]
    ok = 0
    for name in names:
        start = time.time()
        try:
            size = 299 if "inception" in name else 224
            model = models.get_model(name, weights=None).eval()
            x = torch.randn(1, 3, size, size)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                graph = build_channel_graph(model, x)
            frozen_ops = [str(w.message) for w in caught if "pruning rule" in str(w.message)]
            pruned = prune(copy.deepcopy(model), select_on_graph(graph, model, args.ratio))
            with torch.no_grad():
                same = pruned(x).shape == model(x).shape
            before = sum(p.numel() for p in model.parameters())
            after = sum(p.numel() for p in pruned.parameters())
            good = same and after < before
            ok += good
            print(f"{name:24s} {'OK ' if good else 'BAD'} groups {len(graph.groups):4d} "
                  f"prunable {len(graph.prunable_groups):4d} params {before / 1e6:7.2f}M -> {after / 1e6:7.2f}M "
                  f"({after / before:.0%}) {time.time() - start:5.1f}s {frozen_ops[0][:160] if frozen_ops else ''}",
                  flush=True)
        except Exception as exc:  # report and continue: this is a survey
            print(f"{name:24s} FAIL {type(exc).__name__}: {exc}", flush=True)
    print(f"{ok}/{len(names)} pruned to a valid, smaller model")


if __name__ == "__main__":
    main()
