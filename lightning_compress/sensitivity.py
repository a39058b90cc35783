"""Pruning sensitivity analysis of Li et al. (ICLR 2017, Fig. 2): prune each layer alone, see what it costs.

For every prunable layer (channel group) and every ratio, a copy of the network loses that fraction of the layer's
filters (by the same criterion as :class:`~lightning_compress.callbacks.L1FilterPruning`), is evaluated without
retraining, and the result is written to ``sensitivity.csv`` (``layer, ratio, kept, total, metric, macs``) and
``sensitivity.png`` (one curve per layer). :func:`derive_ratios` turns the table into per-layer ratios: the largest
ratio whose metric stays within ``tolerance`` of the unpruned one, ready for ``L1FilterPruning(pruning_ratio=...)``.

Command line (a saved stage model, e.g. ``<run>/stages/baseline/model.pt``, evaluated on the val split)::

    python -m lightning_compress.sensitivity <run>/stages/baseline/model.pt --out sens/ \
        --ratios 0.1 0.3 0.5 0.7 0.9 --tolerance 0.01 data=digits
"""

from __future__ import annotations

import argparse
import copy
import csv
import fnmatch
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from lightning_compress.callbacks.l1_filter import L1FilterPruning
from lightning_compress.cost import count_macs
from lightning_compress.pruning import build_channel_graph, prune
from lightning_compress.pruning.selection import eligible_groups, select_on_graph

DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
FIELDS = ("layer", "ratio", "kept", "total", "metric", "macs")


def sensitivity_analysis(net: nn.Module, evaluate: Callable[[nn.Module], float], example_inputs: torch.Tensor,
                         ratios: Sequence[float] = DEFAULT_RATIOS, layers: Sequence[str] | None = None,
                         criterion: str = "l1", ignored_layers: Sequence[str] = (), residual: str = "couple"
                         ) -> list[dict]:
    """Rows ``{layer, ratio, kept, total, metric, macs}``; ``ratio == 0`` rows hold the unpruned metric.

    Args:
        net: the trained network (left untouched: every trial prunes a deep copy).
        evaluate: ``evaluate(net) -> float`` (higher is better, e.g. validation accuracy).
        example_inputs: one input batch for graph tracing and MACs.
        ratios: pruning ratios in ``(0, 1)`` tried for every layer.
        layers: module-name globs of the layers to analyse (a group is named by its first producing conv);
            ``None`` = every prunable group with a producing conv.
        criterion, ignored_layers, residual: as in :class:`L1FilterPruning`, whose choice each trial is.

    Raises:
        ValueError: a ratio outside ``(0, 1)``, or a ``layers`` glob that matches no group.
    """
    for ratio in ratios:
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio < 1.0:
            raise ValueError(f"`ratios` must hold floats in (0, 1), got {ratio!r}.")
    importance = L1FilterPruning(criterion=criterion).importance()
    graph = build_channel_graph(net, example_inputs, residual=residual)
    groups = [graph.group(gid) for gid in eligible_groups(graph, net, list(ignored_layers))]
    groups = [g for g in groups if g.producers]
    if layers is not None:
        for pattern in layers:
            if not any(fnmatch.fnmatchcase(g.id, pattern) for g in groups):
                raise ValueError(f"`layers` glob {pattern!r} matches no prunable layer. "
                                 f"Available: {[g.id for g in groups]}.")
        groups = [g for g in groups if any(fnmatch.fnmatchcase(g.id, p) for p in layers)]
    was_training = net.training
    net.eval()
    base_metric = float(evaluate(net))
    base_macs = count_macs(net, example_inputs)
    rows: list[dict] = []
    for group in groups:
        rows.append({"layer": group.id, "ratio": 0.0, "kept": group.size, "total": group.size,
                     "metric": base_metric, "macs": base_macs})
        for ratio in ratios:  # this group alone: the exact names of its producers as the only globs
            plan = select_on_graph(graph, net, dict.fromkeys(group.producers, float(ratio)), importance,
                                   ignored_layers=list(ignored_layers), rounding="keep")
            trial = prune(copy.deepcopy(net), plan).eval()
            removed = next((len(g.removed) for g in plan.groups if g.id == group.id), 0)
            rows.append({"layer": group.id, "ratio": float(ratio), "kept": group.size - removed, "total": group.size,
                         "metric": float(evaluate(trial)), "macs": count_macs(trial, example_inputs)})
    net.train(was_training)
    return rows


def derive_ratios(rows: Sequence[dict], tolerance: float) -> dict[str, float]:
    """Per layer, the largest ratio whose metric is >= the unpruned metric - ``tolerance`` (layers with none: left out).

    Only ratios up to the first one that breaks the tolerance count (a later lucky recovery is ignored).
    """
    result: dict[str, float] = {}
    by_layer: dict[str, list[dict]] = {}
    for row in rows:
        by_layer.setdefault(row["layer"], []).append(row)
    for layer, layer_rows in by_layer.items():
        base = next((r["metric"] for r in layer_rows if r["ratio"] == 0.0), None)
        if base is None:
            continue
        best = 0.0
        for row in sorted((r for r in layer_rows if r["ratio"] > 0), key=lambda r: r["ratio"]):
            if row["metric"] < base - tolerance:
                break
            best = row["ratio"]
        if best > 0:
            result[layer] = best
    return result


def write_csv(rows: Sequence[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({k: row[k] for k in FIELDS} for row in rows)
    return path


def plot_sensitivity(rows: Sequence[dict], path: Path, metric_name: str = "accuracy") -> Path:
    """One curve per layer: metric against the fraction of its filters pruned (Li et al. Fig. 2(b))."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    for layer in layers:
        points = sorted((r["ratio"], r["metric"]) for r in rows if r["layer"] == layer)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=layer)
    ax.set_xlabel("fraction of filters pruned away")
    ax.set_ylabel(metric_name)
    ax.set_title("Pruning sensitivity (each layer alone, no retraining)")
    if len(layers) <= 20:
        ax.legend(fontsize="x-small", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def accuracy_evaluator(datamodule, split: str = "val", max_batches: int | None = None) -> Callable[[nn.Module], float]:
    """``evaluate(net)``: top-1 accuracy on a split of an in-memory datamodule of this project."""
    datamodule.setup("fit" if split == "val" else "test")
    loader = datamodule.val_dataloader() if split == "val" else datamodule.test_dataloader()

    @torch.no_grad()
    def evaluate(net: nn.Module) -> float:
        device = next(net.parameters()).device
        correct = total = 0
        for index, batch in enumerate(loader):
            if max_batches is not None and index >= max_batches:
                break
            images, labels = datamodule.transform_batch((batch[0].to(device), batch[1].to(device)), train=False)
            correct += int((net(images).argmax(1) == labels).sum())
            total += int(labels.numel())
        return correct / max(total, 1)

    return evaluate


def main(argv: Sequence[str] | None = None) -> dict:
    """The command line; returns ``{"csv", "plot", "ratios"}``."""
    parser = argparse.ArgumentParser(prog="python -m lightning_compress.sensitivity",
                                     description="Li et al. Fig. 2: prune each layer alone, evaluate, plot.")
    parser.add_argument("model", help="a saved stage model (<run>/stages/baseline/model.pt)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of conf/train.yaml, e.g. data=digits")
    parser.add_argument("--out", default="sensitivity", help="output folder (CSV, PNG, ratios.json)")
    parser.add_argument("--ratios", type=float, nargs="+", default=list(DEFAULT_RATIOS))
    parser.add_argument("--layers", nargs="*", default=None, help="globs of the layers to analyse (default: all)")
    parser.add_argument("--criterion", default="l1", choices=("l1", "l2", "random", "largest"))
    parser.add_argument("--tolerance", type=float, default=None,
                        help="derive per-layer ratios that keep the metric within this drop (e.g. 0.01)")
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument("--max-batches", type=int, default=None)
    args = parser.parse_intermixed_args(argv)

    from hydra import compose, initialize_config_dir

    from lightning_compress.config import CONFIG_DIR, register_resolvers
    from lightning_compress.pipeline.artifacts import load_stage_model
    from lightning_compress.pipeline.builders import build_datamodule

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(args.overrides))
    net, _ = load_stage_model(args.model, cfg.model, key="model")
    datamodule = build_datamodule(cfg)
    rows = sensitivity_analysis(net, accuracy_evaluator(datamodule, args.split, args.max_batches),
                                datamodule.example_input(1), ratios=args.ratios, layers=args.layers,
                                criterion=args.criterion)
    out = Path(args.out)
    result = {"csv": str(write_csv(rows, out / "sensitivity.csv")),
              "plot": str(plot_sensitivity(rows, out / "sensitivity.png"))}
    if args.tolerance is not None:
        ratios = derive_ratios(rows, args.tolerance)
        (out / "ratios.json").write_text(json.dumps(ratios, indent=2))
        result["ratios"] = ratios
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
