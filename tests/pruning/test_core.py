"""Vertical slice: graph, selection, prune, mask, plan round-trip on small ResNet/VGG and the project's models."""

from __future__ import annotations

import copy
import io
import json
import warnings
from collections import namedtuple

import pytest
import torch
from torch import nn

from lightning_compress.pruning import PruningPlan, build_channel_graph, mask, prune, select_channels
from lightning_compress.pruning.selection import select_on_graph
from tests.helpers import assert_mask_equals_prune, n_params, randomize_norms


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.short(x))


class TinyResNet(nn.Module):
    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = nn.Sequential(Block(8, 8), Block(8, 8))
        self.layer2 = nn.Sequential(Block(8, 16, 2), Block(16, 16))
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        x = nn.functional.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


class TinyVGG(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Linear(16 * 2 * 2, 12), nn.ReLU(), nn.Dropout(), nn.Linear(12, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(x.view(x.size(0), -1))


X = torch.randn(2, 3, 8, 8)


def test_resnet_groups_couple_residual_stream():
    model = TinyResNet()
    graph = build_channel_graph(model, X)
    stem = graph.group("conv1")
    assert stem.prunable and stem.size == 8
    assert set(stem.producers) == {"conv1", "layer1.0.conv2", "layer1.1.conv2"}
    members = {(m.module, m.slot) for m in stem.members}
    assert ("bn1", "channels") in members and ("layer2.0.short.0", "in") in members
    internal = graph.group("layer1.0.conv1")
    assert {(m.module, m.slot) for m in internal.members} == {
        ("layer1.0.conv1", "out"), ("layer1.0.bn1", "channels"), ("layer1.0.conv2", "in")}
    fc_out = [g for g in graph.groups if "fc" in g.producers]
    assert fc_out and not fc_out[0].prunable and "model output" in fc_out[0].frozen_reasons


@pytest.mark.parametrize("importance", ["l1", "l2", "fpgm", "bn_scale", "random"])
@pytest.mark.parametrize("arch", [TinyResNet, TinyVGG])
def test_mask_equals_prune(arch, importance):
    model = randomize_norms(arch())
    plan = select_channels(model, X, 0.5, importance=importance)
    assert plan.num_removed > 0
    pruned = assert_mask_equals_prune(model, X, plan)
    assert n_params(pruned) < n_params(model)


def test_vgg_flatten_linear_removes_hw_features():
    model = TinyVGG()
    plan = select_channels(model, X, 0.5)
    removed = plan.removed("classifier.0", "in")
    channels = plan.removed("features.4", "out")
    assert len(channels) == 8 and removed == sorted(c * 4 + k for c in channels for k in range(4))
    pruned = prune(copy.deepcopy(model), plan)
    assert pruned.classifier[0].in_features == 32 and pruned.features[4].out_channels == 8
    assert pruned.classifier[3].out_features == 4  # classes are never pruned


def test_plan_json_and_weights_only_reload():
    model = randomize_norms(TinyResNet()).eval()
    plan = select_channels(model, X, 0.3)
    prune(model, plan)
    text = json.dumps(plan.to_dict())
    buf = io.BytesIO()
    torch.save({"plan": plan.to_dict(), "state_dict": model.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    fresh = TinyResNet()
    restored = PruningPlan.from_dict(json.loads(text))
    assert restored.to_dict() == PruningPlan.from_dict(ckpt["plan"]).to_dict() == plan.to_dict()
    prune(fresh, restored)
    fresh.load_state_dict(ckpt["state_dict"])
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(X), model(X))


def test_prune_keeps_state_dict_keys_and_updates_attrs():
    model = TinyResNet()
    keys = set(model.state_dict())
    plan = select_channels(model, X, 0.5)
    prune(model, plan)
    assert set(model.state_dict()) == keys
    assert model.conv1.out_channels == model.conv1.weight.shape[0] == 4
    assert model.bn1.num_features == model.bn1.running_mean.shape[0] == 4
    assert model.fc.in_features == model.fc.weight.shape[1] == 8
    model(X)


def test_mask_zeroes_output_side_only_by_default():
    model = TinyVGG()
    plan = select_channels(model, X, 0.5)
    mask(model, plan)
    removed = plan.removed("features.0", "out")
    assert model.features[0].weight[removed].abs().sum() == 0
    assert model.features[1].weight[removed].abs().sum() == 0
    assert model.features[1].running_var[removed].abs().sum() == 0  # BN statistics are zeroed too
    assert model.features[4].weight[:, removed].abs().sum() > 0


def test_project_models_prune_exactly():
    models = pytest.importorskip("lightning_compress.models")
    x = torch.randn(2, 3, 32, 32)
    for build, kwargs in ((models.resnet20, {}), (models.resnet20, {"shortcut": "B"}), (models.vgg16, {})):
        model = randomize_norms(build(num_classes=10, **kwargs))
        plan = select_channels(model, x, 0.4)
        pruned = assert_mask_equals_prune(model, x, plan)
        assert n_params(pruned) < n_params(model)


def test_command_line(tmp_path, capsys):
    pytest.importorskip("lightning_compress.cost")
    from lightning_compress.profile import prune_main as main

    out = tmp_path / "plan.json"
    assert main(["--model", "resnet20", "--ratio", "0.5", "--plan-out", str(out), "--table"]) == 0
    text = capsys.readouterr().out
    assert "params" in text and "MACs" in text and "layer1.0.conv1" in text
    assert text.count("% fewer)") == 2  # the project's one convention for reductions
    plan = PruningPlan.from_dict(json.loads(out.read_text()))
    fresh = pytest.importorskip("lightning_compress.models").resnet20(num_classes=10)
    prune(fresh, plan)


def test_tracing_restores_modes_and_leaves_bn_stats_alone():
    model = TinyResNet().train()
    model.layer1.eval()
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    build_channel_graph(model, X)
    assert model.training and model.conv1.training and not model.layer1.training
    assert all(torch.equal(v, stats[k]) for k, v in model.state_dict().items())


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(2, 6, 3, padding=1)
        self.head = nn.Conv2d(6, 2, 1)

    def forward(self, image: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.a(image) + self.b(extra)))


def test_tuple_and_dict_example_inputs():
    model = TwoInputs()
    inputs = (torch.randn(1, 3, 8, 8), torch.randn(1, 2, 8, 8))
    for example in (inputs, {"image": inputs[0], "extra": inputs[1]}):
        graph = build_channel_graph(model, example)
        assert set(graph.group("a").producers) == {"a", "b"}
    plan = select_channels(model, inputs, 0.5)
    pruned = prune(copy.deepcopy(model), plan)
    assert pruned.a.out_channels == pruned.b.out_channels == pruned.head.in_channels == 3
    pruned(*inputs)


class AuxNet(nn.Module):
    """An auxiliary head used only in training mode (GoogLeNet/Inception style)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.aux = nn.Linear(8, 4)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor):
        x = torch.relu(self.bn1(self.conv1(x)))
        main = self.fc(self.conv2(x).mean([2, 3]))
        if self.training:
            return main, self.aux(x.mean([2, 3]))
        return main


def test_train_only_branches_are_traced_too():
    model = AuxNet().eval()  # traced from eval mode: the aux head must still be seen
    graph = build_channel_graph(model, X)
    assert graph.group("conv1").member("aux", "in") is not None
    pruned = prune(copy.deepcopy(model), select_on_graph(graph, model, 0.5))
    pruned.train()
    main, aux = pruned(X)
    assert main.shape == aux.shape == (2, 4) and pruned.aux.in_features == 4


Outputs = namedtuple("Outputs", ["logits", "aux"])


class NamedOutputs(AuxNet):
    def forward(self, x: torch.Tensor):
        x = torch.relu(self.bn1(self.conv1(x)))
        return Outputs(self.fc(self.conv2(x).mean([2, 3])), aux=self.aux(x.mean([2, 3])))


def test_namedtuple_outputs_are_not_unknown_ops():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graph = build_channel_graph(NamedOutputs(), X)
    assert graph.group("conv1").prunable and not graph.group("fc").prunable
