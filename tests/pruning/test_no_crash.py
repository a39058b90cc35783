"""No pruned model that crashes: sizes read from attributes are rewritten (or frozen), the checked prune restores
the model exactly when forward fails, and tracing works for every model that runs in eval mode."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_compress.pruning import PruningPlan, build_channel_graph, prune
from lightning_compress.pruning.selection import select_on_graph
from lightning_compress.pruning.verify import PrunedModelError
from tests.helpers import assert_mask_equals_prune, randomize_norms


def _no_warnings_graph(model: nn.Module, x: torch.Tensor):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return build_channel_graph(model, x)


class Res2Block(nn.Module):
    """Res2Net: split by a width stored as an attribute; each piece is added to the previous piece's conv output."""

    def __init__(self, cin: int = 16, width: int = 6, scale: int = 4) -> None:
        super().__init__()
        self.width, self.scale = width, scale
        self.conv1 = nn.Conv2d(cin, width * scale, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1, bias=False) for _ in range(scale - 1))
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(scale - 1))
        self.conv3 = nn.Conv2d(width * scale, cin, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        spx = torch.split(out, self.width, 1)
        spo = []
        sp = spx[0]
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            sp = spx[i] if i == 0 else sp + spx[i]
            sp = F.relu(bn(conv(sp)))
            spo.append(sp)
        spo.append(spx[-1])
        return F.relu(x + self.bn3(self.conv3(torch.cat(spo, 1))))


class CSPBlock(nn.Module):
    """CSPNet cross stage: ``x.split(self.expand_chs // 2, dim=1)``, one half through blocks, concat, transition."""

    def __init__(self, cin: int = 16, expand: int = 16) -> None:
        super().__init__()
        self.expand_chs = expand
        self.conv_exp = nn.Sequential(nn.Conv2d(cin, expand, 1, bias=False), nn.BatchNorm2d(expand), nn.ReLU())
        half = expand // 2
        self.blocks = nn.Sequential(nn.Conv2d(half, half, 3, padding=1, bias=False), nn.BatchNorm2d(half), nn.ReLU())
        self.conv_transition_b = nn.Conv2d(half, half, 1)
        self.conv_transition = nn.Conv2d(expand, cin, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs, xb = self.conv_exp(x).split(self.expand_chs // 2, dim=1)
        xb = self.conv_transition_b(self.blocks(xb)).contiguous()
        return self.conv_transition(torch.cat([xs, xb], dim=1))


class DualPath(nn.Module):
    """DPN / GhostNet slicing by attributes: ``y[:, :self.c]`` and ``y[:, self.c:]``; a view to a stored width."""

    def __init__(self, cin: int = 16, c: int = 10, extra: int = 6) -> None:
        super().__init__()
        self.c, self.width = c, c + extra
        self.conv = nn.Conv2d(cin, c + extra, 1)
        self.res = nn.Conv2d(c, cin, 1)
        self.dense = nn.Conv2d(extra, cin, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        b, _, h, w = y.shape
        y = y.view(b, self.width, h * w).view(b, self.width, h, w)
        return x + self.res(y[:, : self.c]) + self.dense(y[:, self.c :])


def _net(block: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), block,
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))


@pytest.mark.parametrize("block", [Res2Block, CSPBlock, DualPath])
def test_sizes_from_attributes_are_rewritten(block):
    model = randomize_norms(_net(block())).eval()
    x = torch.randn(2, 3, 8, 8)
    graph = _no_warnings_graph(model, x)
    plan = select_on_graph(graph, model, 0.5, importance="random")
    slots = {slot for lp in plan.layers.values() for slot in lp.slots if slot.startswith("int:")}
    assert slots, "the size attribute must be part of the plan"
    pruned = assert_mask_equals_prune(model, x, plan)
    build_channel_graph(pruned, x)  # the pruned model traces again
    assert prune(copy.deepcopy(model), PruningPlan.from_dict(plan.to_dict()), example_inputs=x) is not None


def test_res2net_width_and_csp_expand_follow_the_pruned_widths():
    model = _net(nn.Sequential(Res2Block(), CSPBlock())).eval()
    x = torch.randn(1, 3, 8, 8)
    plan = select_on_graph(build_channel_graph(model, x), model, 0.5)
    pruned = prune(copy.deepcopy(model), plan, example_inputs=x)
    res2, csp = pruned[3][0], pruned[3][1]
    assert res2.width == 3 and res2.conv1.out_channels == 3 * res2.scale
    assert csp.expand_chs == csp.conv_transition.in_channels == 8


class SplitBySum(nn.Module):
    """A split whose sizes come from arithmetic the engine does not track (product of two attributes)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = 2, 4
        self.conv = nn.Conv2d(16, 16, 1)
        self.out = nn.Conv2d(8, 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = self.conv(x).split(self.a * self.b, 1)
        return x + self.out(first + second)


def test_untracked_size_arithmetic_freezes_instead_of_crashing():
    model = _net(SplitBySum()).eval()
    x = torch.randn(1, 3, 8, 8)
    graph = build_channel_graph(model, x)
    group = next(g for g in graph.groups if "3.conv" in g.producers)
    assert not group.prunable and any("fixed sizes" in r for r in group.frozen_reasons)
    prune(copy.deepcopy(model), select_on_graph(graph, model, 0.5), example_inputs=x)


def _state(model: nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_checked_prune_restores_the_model_exactly_and_names_the_op(monkeypatch):
    model = _net(nn.Identity()).train()
    x = torch.randn(2, 3, 8, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(x).sum().backward()
    opt.step()
    before, params = _state(model), [p for g in opt.param_groups for p in g["params"]]
    momenta = {p: opt.state[p]["momentum_buffer"].clone() for p in params}
    # removes conv outputs but not the matching BatchNorm channels: valid per module, broken as a model
    plan = PruningPlan.from_dict({"format": "lightning_compress.PruningPlan", "version": 1, "layers": {
        "0": {"type": "Conv2d", "slots": {"out": {"size": 16, "removed": [0, 1]}}},
        "6": {"type": "Linear", "slots": {"in": {"size": 16, "removed": [0, 1]}}}}, "groups": []})
    with pytest.raises(ValueError, match=r"'1' channels cuts 0 of the 16 coupled channels"):  # the group check
        prune(model, plan, opt, example_inputs=x)
    # without the group check (for what it cannot see), the forward check catches it and restores everything
    monkeypatch.setattr("lightning_compress.pruning.surgery.check_plan_fits", lambda *args, **kwargs: None)
    with pytest.raises(PrunedModelError, match=r"module '1' \(BatchNorm2d\).*restored"):
        prune(model, plan, opt, example_inputs=x)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert model[0].out_channels == 16 and model[6].in_features == 16 and model.training
    assert [p for g in opt.param_groups for p in g["params"]] == params
    assert all(torch.equal(opt.state[p]["momentum_buffer"], m) for p, m in momenta.items())
    model(x)  # still runs


class PoolThenBN(nn.Module):
    """MobileNetV4's head: a BatchNorm after global pooling (train-mode BN cannot run on a batch of one)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3)
        self.head = nn.Conv2d(16, 32, 1)
        self.norm = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(F.adaptive_avg_pool2d(F.relu(self.conv(x)), 1))
        x = F.batch_norm(x, self.norm.running_mean, self.norm.running_var, self.norm.weight, self.norm.bias,
                         self.training, 0.1, 1e-5)  # functional, as timm's BatchNormAct2d: training is in the graph
        return self.fc(x.flatten(1))


def test_batch_of_one_with_bn_after_pooling_traces_and_keeps_statistics():
    model = randomize_norms(PoolThenBN()).train()
    stats = _state(model)
    x = torch.randn(1, 3, 8, 8)
    graph = _no_warnings_graph(model, x)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())  # nothing updated
    assert model.training
    assert graph.group("conv").prunable and graph.group("head").prunable
    pruned = assert_mask_equals_prune(model, x, select_on_graph(graph, model, 0.5))
    assert pruned.norm.num_features == pruned.norm.running_mean.shape[0] == 16


def _pad_same(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    ih, iw = x.size()[-2:]
    pad_h = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
    pad_w = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))


class Conv2dSame(nn.Conv2d):
    """TensorFlow "same" padding computed from the input size in Python (fx alone cannot trace it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _pad_same(x, self.kernel_size[0], self.stride[0])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class ChannelBranch(nn.Module):
    """A Python branch on a channel width: pruning would change the branch taken, so those channels freeze."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(16, 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y + x if y.shape[1] == 16 else y


def test_shape_dependent_control_flow_is_followed():
    model = nn.Sequential(Conv2dSame(3, 16, 3, 2), nn.BatchNorm2d(16), nn.ReLU(), Conv2dSame(16, 16, 3, 2),
                          ChannelBranch(), nn.Conv2d(16, 8, 1), nn.ReLU(), Conv2dSame(8, 4, 3, 1)).eval()
    x = torch.randn(1, 3, 15, 15)
    graph = _no_warnings_graph(model, x)
    assert graph.group("0").prunable and graph.group("5").prunable  # spatial branches freeze nothing
    coupled = graph.group("3")
    assert not coupled.prunable and any("control flow" in r for r in coupled.frozen_reasons)
    assert_mask_equals_prune(model, x, select_on_graph(graph, model, 0.5))


class ReadInPython(nn.Module):
    """A size attribute that forward also reads in Python: it is not rewritten, its channels freeze."""

    def __init__(self) -> None:
        super().__init__()
        self.width = 8
        self.conv = nn.Conv2d(16, 16, 1)
        self.out = nn.Conv2d(8, 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.conv(x).split(self.width, 1)
        scale = 1.0 if self.width > 4 else 2.0  # a Python read of the attribute
        return x + self.out(a + b) * scale


def test_size_attribute_read_in_python_freezes():
    model = _net(ReadInPython()).eval()
    x = torch.randn(1, 3, 8, 8)
    graph = build_channel_graph(model, x)
    assert not next(g for g in graph.groups if "3.conv" in g.producers).prunable
    prune(copy.deepcopy(model), select_on_graph(graph, model, 0.5), example_inputs=x)
