"""Bad input raises a clear ValueError/TypeError naming the argument, and nothing is modified."""

from __future__ import annotations

import copy

import pytest
import torch

from lightning_compress.pruning import PruningPlan, build_channel_graph, mask, prune, select_channels
from lightning_compress.pruning.selection import select_on_graph

from .archs import VGG

X = torch.randn(1, 3, 8, 8)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _unchanged(model, before):
    after = model.state_dict()
    return after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, float("nan")])
def test_ratio_out_of_range(ratio):
    with pytest.raises(ValueError, match="`pruning_ratio` must be a float in \\[0, 1\\)"):
        select_channels(VGG(), X, ratio)


@pytest.mark.parametrize("ratio", ["0.5", None, True, [0.5]])
def test_ratio_wrong_type(ratio):
    with pytest.raises(TypeError, match="`pruning_ratio`"):
        select_channels(VGG(), X, ratio)


def test_ratio_dict_values_and_keys_checked():
    with pytest.raises(ValueError, match=r"pruning_ratio\['features.\*'\]"):
        select_channels(VGG(), X, {"features.*": 1.2})
    with pytest.raises(TypeError, match="keys must be module-name globs"):
        select_channels(VGG(), X, {3: 0.5})
    with pytest.raises(ValueError, match="non-empty"):
        select_channels(VGG(), X, {})


def test_glob_matching_nothing():
    with pytest.raises(ValueError, match="glob 'encoder.\\*' matches no module"):
        select_channels(VGG(), X, {"encoder.*": 0.5})
    with pytest.raises(ValueError, match="`ignored_layers` glob 'nope' matches no module"):
        select_channels(VGG(), X, 0.5, ignored_layers=["nope"])


@pytest.mark.parametrize(("kwargs", "exc", "text"), [
    ({"importance": "l3"}, ValueError, "`importance` must be one of"),
    ({"importance": 3}, TypeError, "`importance` must be one of"),
    ({"min_channels": 0}, ValueError, "`min_channels` must be an int >= 1"),
    ({"round_to": 2.0}, TypeError, "`round_to` must be an int >= 1"),
    ({"ignored_layers": 5}, TypeError, "`ignored_layers`"),
])
def test_other_selection_arguments(kwargs, exc, text):
    with pytest.raises(exc, match=text):
        select_channels(VGG(), X, 0.5, **kwargs)


def test_callable_importance_wrong_length():
    with pytest.raises(ValueError, match="`importance` must return"):
        select_channels(VGG(), X, 0.5, importance=lambda group, model: torch.ones(3))


def _plan_dict(model):
    return select_channels(model, X, 0.5).to_dict()


@pytest.mark.parametrize("breaker", ["missing", "range", "empty", "type", "size", "duplicate"])
def test_plan_that_does_not_fit_modifies_nothing(breaker):
    model = VGG()
    data = _plan_dict(model)
    name = "features.0"
    slot = data["layers"][name]["slots"]["out"]
    if breaker == "missing":
        data["layers"]["features.99"] = data["layers"].pop(name)
        text = "module 'features.99' not found"
    elif breaker == "range":
        slot["removed"] = [0, 8]
        text = r"must be in \[0, 8\)"
    elif breaker == "empty":
        slot["removed"] = list(range(8))
        text = "would remove every channel"
    elif breaker == "type":
        data["layers"][name]["type"] = "Linear"
        text = "is a Conv2d, the plan expects Linear"
    elif breaker == "size":
        slot["size"] = 9
        text = "has width 8, the plan expects 9"
    else:
        plan = PruningPlan.from_dict(data)
        assert len(plan.removed(name, "out")) == len(set(slot["removed"]))  # duplicates collapse on load
        return
    plan = PruningPlan.from_dict(data)
    before = _state(model)
    with pytest.raises(ValueError, match=text):
        prune(model, plan)
    with pytest.raises(ValueError, match=text):
        mask(model, plan)
    assert _unchanged(model, before)
    assert model.features[0].out_channels == 8


def test_plan_applied_twice_is_rejected():
    model = VGG()
    plan = select_channels(model, X, 0.5)
    prune(model, plan)
    before = _state(model)
    with pytest.raises(ValueError, match="already pruned"):
        prune(model, plan)
    assert _unchanged(model, before)


def test_malformed_plan_dict():
    with pytest.raises(TypeError, match="`data` must be a dict"):
        PruningPlan.from_dict([1, 2])
    with pytest.raises(ValueError, match="`data` must have format"):
        PruningPlan.from_dict({"format": "x"})
    data = _plan_dict(VGG())
    data["layers"]["features.0"]["slots"]["out"]["removed"] = ["a"]
    with pytest.raises(TypeError, match="must be ints"):
        PruningPlan.from_dict(data)
    with pytest.raises(TypeError, match="`plan` must be a PruningPlan"):
        prune(VGG(), data)


def test_group_removals_checked():
    model = VGG()
    graph = build_channel_graph(model, X)
    gid = graph.prunable_groups[0].id
    size = graph.group(gid).size
    with pytest.raises(ValueError, match="must keep at least one channel"):
        graph.plan({gid: range(size)})
    with pytest.raises(ValueError, match="must be positions in"):
        graph.plan({gid: [size]})
    with pytest.raises(ValueError, match="`group_id` must be one of"):
        graph.plan({"nope": [0]})


def test_stale_graph_is_rejected():
    model = VGG()
    graph = build_channel_graph(model, X)
    prune(model, select_on_graph(graph, model, 0.5))
    with pytest.raises(ValueError, match="Rebuild the graph"):
        select_on_graph(graph, model, 0.5)


def test_optimizer_wrong_type_before_modification():
    model = VGG()
    plan = select_channels(copy.deepcopy(model), X, 0.5)
    before = _state(model)
    with pytest.raises(TypeError, match="`optimizer`"):
        prune(model, plan, optimizer="sgd")
    assert _unchanged(model, before)
