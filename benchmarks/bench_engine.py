"""Engine speed: ours vs Torch-Pruning as interleaved wall-time ratios, and where our time goes.

Usage (one command gives both README tables; needs torchvision for the 224x224 models and, for the ratios,
``torch_pruning``; e.g. in /work/venv-zoo):

    python -m benchmarks.bench_engine [--repeats 5] [--ratio 0.3] [--threads 2] [--models resnet56 densenet201]

Work timed, per model: ours = ``build_channel_graph`` + ``select_channels(model, x, ratio, "l1", graph=graph)``
+ ``prune``; Torch-Pruning = ``BasePruner(...)`` (its dependency graph) + ``step()`` (group L1 + removal), with the
classifier ignored (ours never prunes model outputs). Each repeat runs ours and then Torch-Pruning on fresh copies of
the same model, so both see the same machine state; the ratio is computed per repeat and its median (and range)
reported. The profile splits our time into tracing (train / eval mode, fx), propagation (the concrete forward that maps
channels), grouping, selection and surgery, by wrapping those engine functions while one extra run is timed.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator

import torch
from torch import nn

from lightning_compress.pruning import build_channel_graph, prune, select_channels


def _torchvision(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from torchvision import models

        return models.get_model(name, weights=None)
    return build


def _resnet50() -> nn.Module:
    try:
        return _torchvision("resnet50")()
    except ImportError:  # the torchvision-layout copy when torchvision is absent
        from .resnet50 import ResNet50

        return ResNet50()


def model_zoo() -> dict[str, tuple[str, Callable[[], nn.Module], tuple[int, ...]]]:
    """key -> (label, factory, input shape): the models of issue 12."""
    from lightning_compress.models import resnet56, vgg16

    cifar, imagenet = (1, 3, 32, 32), (1, 3, 224, 224)
    return {
        "resnet56": ("ResNet-56 (CIFAR, option A)", lambda: resnet56(num_classes=10), cifar),
        "resnet56b": ("ResNet-56 (CIFAR, projection shortcuts)", lambda: resnet56(num_classes=10, shortcut="B"),
                      cifar),
        "vgg16": ("VGG-16 (CIFAR)", lambda: vgg16(num_classes=10), cifar),
        "resnet50": ("ResNet-50", _resnet50, imagenet),
        "mobilenet_v2": ("MobileNetV2", _torchvision("mobilenet_v2"), imagenet),
        "regnet_y_1_6gf": ("RegNetY-1.6GF", _torchvision("regnet_y_1_6gf"), imagenet),
        "efficientnet_b0": ("EfficientNet-B0", _torchvision("efficientnet_b0"), imagenet),
        "convnext_tiny": ("ConvNeXt-Tiny", _torchvision("convnext_tiny"), imagenet),
        "densenet121": ("DenseNet-121", _torchvision("densenet121"), imagenet),
        "densenet201": ("DenseNet-201", _torchvision("densenet201"), imagenet),
    }


def run_ours(model: nn.Module, x: torch.Tensor, ratio: float) -> nn.Module:
    graph = build_channel_graph(model, x)
    return prune(model, select_channels(model, x, ratio, importance="l1", graph=graph))


def run_torch_pruning(model: nn.Module, x: torch.Tensor, ratio: float) -> nn.Module:
    import torch_pruning as tp

    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1:]
    pruner = tp.pruner.BasePruner(model, x, importance=tp.importance.GroupMagnitudeImportance(p=1),
                                  pruning_ratio=ratio, ignored_layers=head)
    pruner.step()
    return model


def _wall(fn: Callable[[], object]) -> float:
    """Wall seconds of ``fn()``; garbage collected before and paused during it (a cyclic-GC pass over the
    benchmark's heap of models took up to 0.3 s inside either engine's timed call)."""
    gc.collect()
    with _gc_paused():
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start


class PhaseProfile:
    """Wall seconds spent in each engine phase, by wrapping the engine's functions (restored on exit)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def _wrap(self, owner: object, attr: str, phase: Callable[..., str]) -> Callable[[], None]:
        original = getattr(owner, attr)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                key = phase(*args, **kwargs)
                self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - start

        setattr(owner, attr, timed)
        return lambda: setattr(owner, attr, original)

    @contextlib.contextmanager
    def active(self) -> Iterator[PhaseProfile]:
        from lightning_compress.pruning import capture, graph

        undo = [
            self._wrap(capture, "trace", lambda model, *a, **k: f"trace ({'train' if model.training else 'eval'})"),
            self._wrap(capture._ChannelInterpreter, "run", lambda *a, **k: "propagation"),
            self._wrap(graph, "_groups_from_context", lambda *a, **k: "grouping"),
        ]
        try:
            yield self
        finally:
            for restore in reversed(undo):
                restore()


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


PHASES = ("trace (train)", "trace (eval)", "propagation", "grouping", "selection", "surgery")


def profile_ours(build: Callable[[], nn.Module], x: torch.Tensor, ratio: float) -> dict[str, float]:
    """One timed run of ours split by phase; 'surgery' is prune's total, 'other' what no phase covers."""
    model = build().eval()
    prof = PhaseProfile()
    gc.collect()
    with prof.active(), _gc_paused():
        start = time.perf_counter()
        graph = build_channel_graph(model, x)
        start_selection = time.perf_counter()
        plan = select_channels(model, x, ratio, importance="l1", graph=graph)
        prof.seconds["selection"] = time.perf_counter() - start_selection
        start_surgery = time.perf_counter()
        prune(model, plan)
        prune_s = time.perf_counter() - start_surgery
        total = time.perf_counter() - start
    out = dict(prof.seconds)
    out["surgery"] = prune_s
    out["other"] = total - sum(out.values())
    out["total"] = total
    return out


def compare(build: Callable[[], nn.Module], x: torch.Tensor, ratio: float, repeats: int, with_tp: bool) -> dict:
    base = build().eval()
    ours, theirs, ratios = [], [], []
    tp_error = ""
    for _ in range(repeats):
        mine = copy.deepcopy(base)  # copied outside the timed call
        ours.append(_wall(lambda m=mine: run_ours(m, x, ratio)))
        if with_tp and not tp_error:
            try:
                other = copy.deepcopy(base)
                theirs.append(_wall(lambda m=other: run_torch_pruning(m, x, ratio)))
                ratios.append(ours[-1] / theirs[-1])
            except Exception as exc:  # Torch-Pruning fails on some models; report it
                tp_error = f"fails ({type(exc).__name__})"
    return {"ours": statistics.median(ours), "tp": statistics.median(theirs) if theirs else None,
            "ratio": statistics.median(ratios) if ratios else None,
            "range": (min(ratios), max(ratios)) if ratios else None, "tp_error": tp_error}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--models", nargs="*", default=None, help=f"keys of {list(model_zoo())}")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    zoo = model_zoo()
    keys = args.models or list(zoo)
    try:
        import torch_pruning

        tp_version = torch_pruning.__version__
    except ImportError:
        tp_version = None
    print(f"torch {torch.__version__}, python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"threads {torch.get_num_threads()}, Torch-Pruning {tp_version or 'not installed'}, ratio {args.ratio}, "
          f"median of {args.repeats}")
    with contextlib.suppress(OSError):
        print(f"load average before: {os.getloadavg()}")
    rows, profiles = [], []
    for key in keys:
        label, build, shape = zoo[key]
        torch.manual_seed(0)
        x = torch.randn(shape)
        try:
            result = compare(build, x, args.ratio, args.repeats, tp_version is not None)
            profiles.append((label, profile_ours(build, x, args.ratio)))
        except ImportError as exc:
            print(f"skipped {label}: {exc}")
            continue
        rows.append((label, result))
    print("\n| model | ours s | Torch-Pruning s | ours / Torch-Pruning (median, range) |\n|---|---|---|---|")
    for label, r in rows:
        tp = f"{r['tp']:.3f}" if r["tp"] is not None else (r["tp_error"] or "-")
        ratio = f"{r['ratio']:.2f} ({r['range'][0]:.2f}-{r['range'][1]:.2f})" if r["ratio"] is not None else "-"
        print(f"| {label} | {r['ours']:.3f} | {tp} | {ratio} |")
    print("\n| model | " + " | ".join(PHASES) + " | other | total s |\n|---|" + "---|" * (len(PHASES) + 2))
    for label, p in profiles:
        cells = " | ".join(f"{p.get(k, 0.0):.3f}" for k in PHASES)
        print(f"| {label} | {cells} | {p['other']:.3f} | {p['total']:.3f} |")
    with contextlib.suppress(OSError):
        print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
