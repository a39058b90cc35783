"""Selection semantics: keep counts, paper criteria, ratio globs, ignored layers, global ranking, composition."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lightning_compress.functional.pruning import keep_count
from lightning_compress.models.resnet_cifar import resnet20
from lightning_compress.pruning import (
    PruningPlan,
    build_channel_graph,
    prune,
    select_channels,
)
from lightning_compress.pruning.selection import group_ratios, select_on_graph
from tests.helpers import randomize_norms

from .archs import VGG, BottleneckResNet

X = torch.randn(1, 3, 8, 8)


@pytest.mark.parametrize(("n", "ratio", "min_c", "round_to", "kept"), [
    (16, 0.1, 1, 1, 14),   # Li et al.: keep floor(n (1 - p))
    (16, 0.5, 1, 1, 8),
    (10, 0.7, 1, 1, 3),    # no float drift (10 * 0.3 = 3.0000000000000004)
    (16, 0.6, 1, 4, 8),    # floor(6.4) = 6, rounded up to a multiple of 4
    (16, 0.95, 3, 1, 3),   # per-group floor
    (4, 0.9, 8, 1, 4),     # floor larger than the group: nothing removed
])
def test_keep_count(n, ratio, min_c, round_to, kept):
    assert keep_count(n, ratio, min_c, round_to) == kept


def test_l1_on_single_conv_group_is_li_et_al():
    model = VGG()
    plan = select_channels(model, X, 0.25, importance="l1")
    w = model.features[4].weight.detach()
    expected = torch.argsort(w.abs().flatten(1).sum(1), stable=True)[:4].sort().values.tolist()
    assert plan.removed("features.4", "out") == expected


def test_fpgm_on_single_conv_group_is_distance_sum():
    model = VGG()
    plan = select_channels(model, X, 0.25, importance="fpgm")
    w = model.features[4].weight.detach().flatten(1)
    dist = torch.cdist(w, w).sum(1)
    assert plan.removed("features.4", "out") == torch.argsort(dist, stable=True)[:4].sort().values.tolist()


def test_callable_importance_sees_groups():
    model = VGG()
    seen = []

    def last_channels_first(group, m):
        seen.append(group.id)
        return -torch.arange(group.size, dtype=torch.float)

    plan = select_channels(model, X, 0.5, importance=last_channels_first)
    assert plan.removed("features.0", "out") == [4, 5, 6, 7]
    assert "features.0" in seen


def test_ratio_dict_first_matching_glob_wins_and_others_untouched():
    model = BottleneckResNet()
    graph = build_channel_graph(model, X)
    ratios = group_ratios(graph, model, {"layers.0.*": 0.5, "layers.*": 0.25})
    assert ratios["layers.0.conv1"] == 0.5 and ratios["layers.2.conv1"] == 0.25
    # the stem's residual stream is also produced by layers.0.conv3: a glob on any producer selects the group
    assert "layers.0.conv3" in graph.group("stem.0").producers and ratios["stem.0"] == 0.5
    plan = select_on_graph(graph, model, {"layers.2.conv2": 0.5})
    touched = {n for n, lp in plan.layers.items() if any(s.removed for s in lp.slots.values())}
    assert touched == {"layers.2.conv2", "layers.2.bn2", "layers.2.conv3"}


def test_ignored_layers_by_name_glob_and_module():
    model = VGG()
    for ignored in (["features.0"], ["features.[0]"], [model.features[0]]):
        plan = select_channels(model, X, 0.5, ignored_layers=ignored)
        assert plan.removed("features.0", "out") == [] and plan.removed("features.4", "out")


def test_global_ranking_counts_and_floor():
    model = VGG()
    graph = build_channel_graph(model, X)
    total = sum(g.size for g in graph.prunable_groups)
    plan = select_on_graph(graph, model, 0.3, importance="l1", global_pruning=True)
    assert plan.num_removed == int(total * 0.3)
    plan = select_on_graph(graph, model, 0.8, importance="l1", global_pruning=True, min_channels=2)
    kept = {g.id: g.size - len(g.removed) for g in plan.groups}
    assert all(k >= 2 for k in kept.values()) and plan.num_removed == int(total * 0.8)
    with pytest.raises(ValueError, match="let at most"):  # the floors cannot leave 10%: said, not silently less
        select_on_graph(graph, model, 0.9, importance="l1", global_pruning=True, min_channels=2)


def test_max_pruning_ratio_on_a_residual_net_keeps_the_global_count():
    model = randomize_norms(resnet20())
    graph = build_channel_graph(model, X, residual="select")
    skew = next(m for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and n.endswith("bn1"))
    with torch.no_grad():
        skew.weight.fill_(1e-6)  # one layer's scales far below all others: an uncapped threshold empties it
    total = sum(g.size for g in graph.prunable_groups if _has_bn(g, model))
    free = select_on_graph(graph, model, 0.4, importance="bn_scale", global_pruning=True)
    capped = select_on_graph(graph, model, 0.4, importance="bn_scale", global_pruning=True, max_pruning_ratio=0.5)
    assert free.num_removed == capped.num_removed == int(total * 0.4)
    for plan, most in ((free, 1.0), (capped, 0.5)):
        for g in plan.groups:
            assert len(g.removed) <= int(graph.group(g.id).size * most)
    assert any(len(g.removed) == graph.group(g.id).size - 1 for g in free.groups)  # the skewed layer: 1 left


def test_bn_scale_global_count_removes_exactly_the_ratio():
    model = randomize_norms(VGG())
    total = sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    for ratio in (0.3, 0.5, 0.7):
        plan = select_channels(model, X, ratio, importance="bn_scale", global_pruning=True)
        assert plan.num_removed == int(total * ratio)


def test_bn_scale_global_authors_code_is_network_slimming_threshold():
    model = randomize_norms(VGG())
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for ratio in (0.3, 0.5, 0.7):
        # the authors' code: sort |gamma| of all BN layers, thre = y[int(total * percent)], keep |gamma| > thre
        y, _ = torch.sort(torch.cat([bn.weight.detach().abs() for bn in bns]))
        thre = y[int(len(y) * ratio)]
        plan = select_channels(model, X, ratio, importance="bn_scale", global_pruning=True, threshold="authors_code")
        for name, module in model.named_modules():
            if isinstance(module, nn.BatchNorm2d):
                expected = torch.nonzero(module.weight.detach().abs() <= thre).flatten().tolist()
                if len(expected) == module.num_features:  # the paper would empty the layer; we keep the best one
                    expected = sorted(expected, key=lambda i: float(module.weight[i].abs()))[:-1]
                assert plan.removed(name, "channels") == sorted(expected)


def test_bn_scale_skips_groups_without_bn():
    model = VGG()
    plan = select_channels(model, X, 0.5, importance="bn_scale")
    assert plan.removed("classifier.1", "out") == []  # hidden linear has no BN
    assert plan.removed("features.0", "out")


def test_graph_ids_are_stable_and_reusable():
    model = BottleneckResNet()
    a, b = build_channel_graph(model, X), build_channel_graph(copy.deepcopy(model), X)
    assert [g.id for g in a.groups] == [g.id for g in b.groups]
    assert select_on_graph(a, model, 0.5).to_dict() == select_on_graph(b, model, 0.5).to_dict()


def test_sequential_plans_compose():
    model = randomize_norms(BottleneckResNet()).eval()
    fresh = copy.deepcopy(model)
    first = select_channels(model, X, 0.3)
    prune(model, first)
    second = select_channels(model, X, 0.3, importance="l2")
    prune(model, second)
    combined = first.then(second)
    assert PruningPlan.from_dict(combined.to_dict()).to_dict() == combined.to_dict()
    prune(fresh, combined)
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    with torch.no_grad():
        torch.testing.assert_close(fresh(X), model(X))
    with pytest.raises(ValueError, match="`later` does not follow"):
        second.then(first)


def test_plan_reports():
    model = VGG()
    plan = select_channels(model, X, 0.5)
    kept = plan.kept_channels()
    assert kept["features.0"]["out"] == 4 and kept["features.1"]["channels"] == 4
    rows = plan.summary_rows()
    assert {"name": "features.0", "type": "Conv2d", "slot": "out", "before": 8, "after": 4} in rows
    assert "features.0" in plan.summary()
    assert not plan.is_empty and select_channels(model, X, 0.0).is_empty


@pytest.mark.parametrize("reduce", ["mean", "sum", "max"])
def test_bn_scale_combines_the_coupled_bns_of_a_group(reduce):
    from lightning_compress.models import resnet8
    from lightning_compress.pruning import BNScale

    model = randomize_norms(resnet8())
    graph = build_channel_graph(model, torch.zeros(1, 3, 32, 32))  # couple: the stage-1 stream is one group
    group = graph.group("conv1")
    bns = [m for m in group.members if m.slot == "channels"]
    assert len(bns) >= 2
    stacked = torch.stack([model.get_submodule(m.module).weight.detach().abs()[torch.as_tensor(m.indices)]
                           for m in bns])
    expected = {"mean": stacked.mean(0), "sum": stacked.sum(0), "max": stacked.max(0).values}[reduce]
    torch.testing.assert_close(BNScale(reduce).scores(group, model), expected)
    orders = {r: BNScale(r).scores(group, model).argsort().tolist() for r in ("mean", "max")}
    assert orders["mean"] != orders["max"]  # the combination changes the ranking


def _has_bn(group, model: nn.Module) -> bool:
    return any(isinstance(model.get_submodule(m.module), nn.BatchNorm2d) for m in group.members if m.slot != "in")


def test_max_pruning_ratio_on_a_vgg_through_select_channels() -> None:
    model = randomize_norms(VGG())
    first_bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    with torch.no_grad():
        first_bn.weight.fill_(1e-6)  # the first layer's scales far below all others
    total = sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    capped = select_channels(model, X, 0.3, importance="bn_scale", global_pruning=True, max_pruning_ratio=0.5)
    assert capped.num_removed == int(total * 0.3)
    assert all(len(g.removed) <= g.size // 2 for g in capped.groups)
    with pytest.raises(ValueError, match="`max_pruning_ratio` must be in"):
        select_channels(model, X, 0.3, max_pruning_ratio=0.0)
