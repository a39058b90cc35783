"""``prune`` and ``mask`` check a plan against the network's own channel groups before changing anything (issue 29,
item 8: a ResNet-20 plan applied to a ResNet-56 cut the residual stream in some of its writers only)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lightning_compress.models.resnet_cifar import CifarResNet
from lightning_compress.pruning import PruningPlan, mask, prune, select_channels
from lightning_compress.pruning.plan import LayerPlan, SlotPlan
from lightning_compress.pruning.plan_check import check_plan_fits

X = torch.randn(1, 3, 16, 16)


def state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


def assert_unchanged(net: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = net.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def resnet20_plan() -> PruningPlan:
    """A saved ResNet-20 plan (through its dict: no graph attached, only the recorded input shape)."""
    plan = select_channels(CifarResNet(20), X, pruning_ratio=0.3)
    return PruningPlan.from_dict(plan.to_dict())


@pytest.mark.parametrize("apply", [prune, mask])
def test_a_plan_of_another_architecture_is_refused_naming_the_first_layer(apply) -> None:
    net = CifarResNet(32)  # same layer names and widths as ResNet-20 for every layer the plan names
    before = state(net)
    with pytest.raises(ValueError, match=r"'layer1\.3\.conv1' in cuts 0 of the 16 coupled channels of group 'conv1'"):
        apply(net, resnet20_plan())
    assert_unchanged(net, before)
    assert net.layer1[0].conv1.in_channels == 16


def test_the_plan_fits_its_own_architecture() -> None:
    net = CifarResNet(20)
    prune(net, resnet20_plan())
    assert net.conv1.out_channels < 16
    assert net(X).shape == (1, 10)


def test_a_plan_cutting_one_member_of_a_coupled_group_is_refused() -> None:
    """A hand-made plan that cuts the stem's output but not the first block's input."""
    net = CifarResNet(8)
    plan = PruningPlan({"conv1": LayerPlan("Conv2d", {"out": SlotPlan(16, (0, 1))}),
                        "bn1": LayerPlan("BatchNorm2d", {"channels": SlotPlan(16, (0, 1))})})
    before = state(net)
    with pytest.raises(ValueError, match=r"does not fit the model: '.*' .* cuts 0 of the 16 coupled channels"):
        prune(net, plan, example_inputs=X)
    assert_unchanged(net, before)


def test_a_plan_naming_a_missing_layer_or_wrong_width_is_refused() -> None:
    net = CifarResNet(8)
    missing = PruningPlan({"layer9.conv": LayerPlan("Conv2d", {"out": SlotPlan(16, (0,))})})
    with pytest.raises(ValueError, match=r"module 'layer9\.conv' not found"):
        prune(net, missing)
    plan = select_channels(CifarResNet(8), X, pruning_ratio=0.5)
    pruned = CifarResNet(8)
    prune(pruned, plan)
    before = state(pruned)
    with pytest.raises(ValueError, match=r"has width \d+, the plan expects 16"):
        prune(pruned, PruningPlan.from_dict(plan.to_dict()))  # already pruned: the recorded widths no longer fit
    assert_unchanged(pruned, before)


def test_a_plan_made_in_this_process_reuses_its_graph_and_a_saved_one_retraces(monkeypatch) -> None:
    import lightning_compress.pruning.plan_check as plan_check

    calls: list[int] = []
    real = plan_check.build_channel_graph
    monkeypatch.setattr(plan_check, "build_channel_graph", lambda *a, **k: calls.append(1) or real(*a, **k))
    net = CifarResNet(8)
    plan = select_channels(net, X, pruning_ratio=0.3)
    prune(copy.deepcopy(net), plan)
    assert calls == []
    prune(copy.deepcopy(net), PruningPlan.from_dict(plan.to_dict()))
    assert calls == [1]


def test_input_shape_round_trips_and_is_checked() -> None:
    plan = select_channels(CifarResNet(8), X, pruning_ratio=0.3)
    data = plan.to_dict()
    assert data["input_shape"] == [3, 16, 16]
    assert PruningPlan.from_dict(data).input_shape == (3, 16, 16)
    assert PruningPlan.from_dict(data) == plan  # the graph is not part of a plan's identity
    with pytest.raises(TypeError, match=r"`data\['input_shape'\]` must be a list of positive ints"):
        PruningPlan.from_dict({**data, "input_shape": [3, -1]})
    without = {k: v for k, v in data.items() if k != "input_shape"}
    assert PruningPlan.from_dict(without).input_shape is None


def test_a_plan_without_input_shape_is_checked_with_example_inputs_only() -> None:
    """A hand-written plan (no recorded shape): the group check needs ``example_inputs``."""
    plan = resnet20_plan()
    bare = PruningPlan(plan.layers, plan.groups)
    check_plan_fits(CifarResNet(32), bare)  # nothing to trace on: per-module checks only (in compile_plan)
    with pytest.raises(ValueError, match="coupled channels"):
        check_plan_fits(CifarResNet(32), bare, example_inputs=X)
