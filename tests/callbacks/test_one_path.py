"""One path from the callbacks to the engine: each callback's plan IS ``select_channels`` with the same arguments."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_compress.callbacks import FPGMPruning, L1FilterPruning, NetworkSlimming
from lightning_compress.callbacks.base import MAX_PRUNING_RATIO
from lightning_compress.models import resnet20, resnet56, vgg16
from lightning_compress.modules import ImageClassifier
from lightning_compress.pruning import (
    BNScale,
    ChannelGraph,
    GeometricMedian,
    Magnitude,
    Random,
    build_channel_graph,
    select_channels,
)
from tests.helpers import randomize_norms
from tests.pruning.archs import MobileNet

NETS = {
    "resnet20": (resnet20, 32),
    "resnet56": (resnet56, 32),
    "vgg16": (vgg16, 32),
    "mobilenet_v3": (lambda num_classes=10: MobileNet(v3=True), 8),  # depthwise convs + squeeze-excitation
}


def _bound(callback, net: nn.Module, graph: ChannelGraph):
    """The callback resolved on ``net`` as in ``setup`` (outside a fit: no pruning happens), tracing once: the graph
    is deterministic (tests/pruning/test_selection.py), so every case shares it."""
    callback.setup(None, ImageClassifier(net, 10), "validate")
    callback.build_graph = lambda: graph
    return callback


@pytest.mark.parametrize("residual", ["couple", "select"])
@pytest.mark.parametrize("name", sorted(NETS))
def test_every_callbacks_plan_is_the_engines(name: str, residual: str) -> None:
    factory, size = NETS[name]
    torch.manual_seed(0)
    net = randomize_norms(factory(num_classes=10)).eval()
    x = torch.zeros(1, 3, size, size)
    graph = build_channel_graph(net, x, residual=residual)
    cases = [
        (L1FilterPruning(0.3, residual=residual, verbose=False),
         {"importance": Magnitude(1), "rounding": "keep"}),
        (L1FilterPruning(0.3, criterion="random", seed=3, strategy="independent", residual=residual, verbose=False),
         {"importance": Random(3), "rounding": "keep"}),
        (L1FilterPruning({"*": 0.5}, criterion="l2", strategy="greedy", round_to=4, residual=residual,
                         verbose=False),
         {"importance": Magnitude(2), "rounding": "keep", "strategy": "greedy", "round_to": 4}),
        (NetworkSlimming(pruning_ratio=0.4, min_channels=2, residual=residual, prune_stream_writers=True,
                         verbose=False),
         {"importance": BNScale("sum"), "global_pruning": True, "min_channels": 2}),
        (NetworkSlimming(pruning_ratio=0.4, group_score="max", threshold="authors_code", residual=residual,
                         prune_stream_writers=True, verbose=False),
         {"importance": BNScale("max"), "global_pruning": True, "threshold": "authors_code"}),
        (FPGMPruning(0.4, residual=residual, verbose=False),
         {"importance": GeometricMedian("l2"), "rounding": "remove"}),
        (FPGMPruning(0.4, norm_ratio=0.1, distance="cos", residual=residual, verbose=False),
         {"importance": GeometricMedian("cos", 0.1), "rounding": "remove"}),
    ]
    for callback, engine_args in cases:
        plan = _bound(callback, net, graph).select()
        expected = select_channels(net, x, callback.pruning_ratio, residual=residual, graph=graph,
                                   max_pruning_ratio=MAX_PRUNING_RATIO, **engine_args)
        assert plan.to_dict() == expected.to_dict(), type(callback).__name__
        assert plan.num_removed > 0


def test_greedy_differs_from_independent_only_through_removed_inputs() -> None:
    # Li et al. 3.3 on VGG-16-A: greedy scores a layer without the kernels of the maps removed just before it. A loop
    # over the layers, zeroing the removed inputs by hand, must give the engine's greedy plan.
    net = randomize_norms(vgg16(num_classes=10)).eval()
    x = torch.zeros(1, 3, 32, 32)
    ratios = {"features.conv1": 0.5, **{f"features.conv{i}": 0.5 for i in range(8, 14)}}
    greedy = select_channels(net, x, ratios, importance="l1", strategy="greedy")
    independent = select_channels(net, x, ratios, importance="l1")
    removed_inputs: set[int] = set()
    for i in range(1, 14):
        conv = net.get_submodule(f"features.conv{i}")
        weight = conv.weight.detach().clone()
        weight[:, sorted(removed_inputs)] = 0  # the kernels of the maps the previous layer lost
        name = f"features.conv{i}"
        if name in ratios:
            kept = int(conv.out_channels * (1 - ratios[name]))
            order = torch.argsort(weight.abs().flatten(1).sum(1), stable=True)
            removed_inputs = set(order[: conv.out_channels - kept].tolist())
            assert greedy.removed(name, "out") == sorted(removed_inputs), name
        else:
            removed_inputs = set()
    assert greedy.to_dict() != independent.to_dict()  # the criterion changes once inputs are gone
