"""Every supported architecture family prunes to a smaller, valid model; mask == prune where separable."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from lightning_compress.pruning import build_channel_graph, prune
from lightning_compress.pruning.selection import select_on_graph
from tests.helpers import assert_mask_equals_prune, n_params, randomize_norms

from .archs import ARCHS, ConvNeXt, MobileNet, ShuffleNetV2, resnext


@pytest.mark.parametrize("residual", ["couple", "select"])
@pytest.mark.parametrize("ratio", [0.3, 0.6])
@pytest.mark.parametrize("name", sorted(ARCHS))
def test_architecture_prunes(name, ratio, residual):
    factory, size, separable = ARCHS[name]
    model = randomize_norms(factory()).eval()
    x = torch.randn(2, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no op of these architectures may lack a rule
        graph = build_channel_graph(model, x, residual=residual)
    for importance in ("random", "l1"):
        plan = select_on_graph(graph, model, ratio, importance=importance)
        assert plan.num_removed > 0
        if separable:
            pruned = assert_mask_equals_prune(model, x, plan)
            pruned_in = assert_mask_equals_prune(model, x, plan, include_inputs=True)
            assert n_params(pruned_in) == n_params(pruned)
        else:  # LayerNorm/GroupNorm over channels: not separable, check shapes and that it runs
            pruned = prune(copy.deepcopy(model), plan)
            with torch.no_grad():
                assert pruned(x).shape == model(x).shape
        assert n_params(pruned) < n_params(model)
        # the graph of the pruned model is consistent (traces again without errors; layers that re-expand or select
        # a stream are frozen and named)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore" if residual == "select" else "error")
            build_channel_graph(pruned, x)


def test_shufflenet_split_and_shuffle_are_coupled_not_frozen():
    model = ShuffleNetV2()
    graph = build_channel_graph(model, torch.randn(1, 3, 8, 8))
    groups = {g.id: g for g in graph.prunable_groups}
    # the pass-through half of a chunk and the branch output are tied by the shuffle: one group, prunable
    stream = next(g for g in groups.values() if "stage2.1.branch2.5" in g.producers)
    assert "stage2.0.branch1.2" in stream.producers or "stage2.0.branch2.5" in stream.producers
    plan = select_on_graph(graph, model, 0.5)
    pruned = prune(copy.deepcopy(model), plan)
    widths = [m.out_channels for m in pruned.modules() if isinstance(m, nn.Conv2d)]
    assert widths != [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_depthwise_conv_groups_shrink_with_channels():
    model = MobileNet()
    plan = select_on_graph(build_channel_graph(model, torch.randn(1, 3, 8, 8)), model, 0.5)
    pruned = prune(copy.deepcopy(model), plan)
    for m in pruned.modules():
        if isinstance(m, nn.Conv2d) and m.groups > 1:
            assert m.groups == m.in_channels == m.out_channels == m.weight.shape[0]


def test_resnext_keeps_cardinality():
    model = resnext()
    plan = select_on_graph(build_channel_graph(model, torch.randn(1, 3, 8, 8)), model, 0.5)
    pruned = prune(copy.deepcopy(model), plan)
    grouped = [m for m in pruned.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert grouped and all(m.groups == 4 and m.in_channels % 4 == 0 and m.out_channels % 4 == 0 for m in grouped)
    assert any(m.in_channels < 16 for m in grouped)


def test_convnext_layer_scale_and_layernorm_are_sliced():
    model = ConvNeXt()
    x = torch.randn(1, 3, 16, 16)
    plan = select_on_graph(build_channel_graph(model, x), model, 0.5)
    pruned = prune(copy.deepcopy(model), plan)
    block = pruned.stage1[0]
    assert block.gamma.shape[0] == block.norm.normalized_shape[0] == block.dwconv.out_channels
    stem_norm = pruned.stem[1]  # channels-first LayerNorm subclass calling F.layer_norm after a permute
    assert stem_norm.normalized_shape[0] == stem_norm.weight.shape[0] == pruned.stem[0].out_channels < 8
    assert block.pwconv1.out_features < 32
    pruned(x)


def _torchvision():
    tv = pytest.importorskip("torchvision")
    return tv.models


TV_FAST = ("resnet18", "mobilenet_v3_small", "shufflenet_v2_x0_5", "efficientnet_b0", "densenet121",
           "squeezenet1_1", "regnet_y_400mf", "googlenet")


def _tv_check(models, name: str, exact: bool) -> None:
    size = 299 if "inception" in name else 224 if any(k in name for k in ("vit", "swin", "maxvit")) else 96
    model = randomize_norms(models.get_model(name, weights=None, num_classes=10)).eval()
    x = torch.randn(1, 3, size, size)
    plan = select_on_graph(build_channel_graph(model, x), model, 0.3)
    if exact and "convnext" not in name:
        pruned = assert_mask_equals_prune(model, x, plan)
    else:
        pruned = prune(copy.deepcopy(model), plan)
    assert n_params(pruned) < n_params(model)
    with torch.no_grad():
        out = pruned(x)
    assert (out if isinstance(out, torch.Tensor) else out[0]).shape == (1, 10)


@pytest.mark.parametrize("name", TV_FAST)
def test_torchvision_models_prune(name):  # optional: only where torchvision is installed
    _tv_check(_torchvision(), name, exact=True)


@pytest.mark.slow
def test_every_torchvision_classification_model_prunes():
    models = _torchvision()
    for name in models.list_models(module=models):
        model = models.get_model(name, weights=None)
        if n_params(model) > 100e6:  # time/memory on a small CI machine
            continue
        _tv_check(models, name, exact=False)
