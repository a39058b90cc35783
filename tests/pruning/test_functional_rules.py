"""Functional ops of the common zoos (timm-style layers that call F.* with their own parameters) get rules."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_compress.pruning import build_channel_graph, register_module_rule
from lightning_compress.pruning.rules import _MODULE_RULES, StandardizedConvRule
from lightning_compress.pruning.selection import select_on_graph
from tests.helpers import assert_mask_equals_prune, randomize_norms


class BatchNormAct(nn.BatchNorm2d):
    """timm's BatchNormAct2d: a BatchNorm2d subclass whose forward calls F.batch_norm, then an activation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training,
                         self.momentum, self.eps)
        return F.silu(x)


class GroupNormAct(nn.GroupNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps))


class LayerNorm2d(nn.Module):
    """A custom channels-first LayerNorm: normalized_shape from an int attribute, not an nn.LayerNorm."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.weight = nn.Parameter(torch.rand(dim) + 0.5)
        self.bias = nn.Parameter(torch.rand(dim) - 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), (self.dim,), self.weight, self.bias, 1e-6)
        return x.permute(0, 3, 1, 2)


class CastLinear(nn.Linear):
    """timm's Linear: an nn.Linear subclass calling F.linear."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class MixedConv(nn.ModuleDict):
    """MixNet's mixed-kernel depthwise conv: split by a list attribute, one kernel size per part, concat."""

    def __init__(self, channels: int = 12, kernels: tuple[int, ...] = (3, 5, 7)) -> None:
        splits = [channels // len(kernels)] * len(kernels)
        super().__init__({str(i): nn.Conv2d(c, c, k, padding=k // 2, groups=c) for i, (c, k) in
                          enumerate(zip(splits, kernels))})
        self.splits = splits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.split(x, self.splits, 1)
        return torch.cat([conv(parts[i]) for i, conv in enumerate(self.values())], 1)


class WeightStdConv(nn.Conv2d):
    """A weight-standardised conv (the weight is computed in forward): needs a registered rule."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, training=True, momentum=0.0,
                         eps=1e-5).reshape_as(self.weight)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


def _graph(model: nn.Module, x: torch.Tensor):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every op of these blocks has a rule
        return build_channel_graph(model, x)


def _model(norm: nn.Module, channels: int = 12) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), norm, MixedConv(channels),
                         nn.Conv2d(channels, 8, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), CastLinear(8, 16),
                         nn.ReLU(), nn.Linear(16, 3))


@pytest.mark.parametrize("norm", ["batch", "group", "layer"])
def test_functional_norms_and_mixed_conv_prune(norm):
    layer = {"batch": BatchNormAct(12), "group": GroupNormAct(3, 12), "layer": LayerNorm2d(12)}[norm]
    model = randomize_norms(_model(layer)).eval()
    x = torch.randn(2, 3, 8, 8)
    graph = _graph(model, x)
    first = graph.group("0")
    assert first.prunable and graph.group("6").prunable  # the conv's group and CastLinear's
    plan = select_on_graph(graph, model, 0.5, importance="random")
    assert plan.removed("2", "int:splits[0]") or plan.removed("2", "int:splits[1]")
    if norm == "batch":  # separable: pruned == masked
        pruned = assert_mask_equals_prune(model, x, plan)
        assert pruned[1].num_features == pruned[1].running_mean.shape[0] == 6
    else:
        from lightning_compress.pruning import prune

        pruned = prune(model, plan, example_inputs=x)
    assert pruned[2].splits == [m.out_channels for m in pruned[2].values()]
    assert pruned[6].in_features == 4 and pruned[6].out_features == 8


def test_train_mode_functional_batch_norm_is_one_graph_and_touches_no_buffer():
    model = _model(BatchNormAct(12)).train()
    counts = model[1].num_batches_tracked.clone()
    _graph(model, torch.randn(1, 3, 8, 8))
    assert torch.equal(model[1].num_batches_tracked, counts)


@pytest.fixture
def custom_rules():
    saved = dict(_MODULE_RULES)
    yield
    _MODULE_RULES.clear()
    _MODULE_RULES.update(saved)


def test_weight_computed_in_forward_is_frozen_until_a_rule_is_registered(custom_rules):
    model = nn.Sequential(WeightStdConv(3, 8, 3, padding=1), nn.ReLU(), WeightStdConv(8, 8, 3, padding=1),
                          nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    x = torch.randn(1, 3, 8, 8)
    with pytest.warns(UserWarning, match="weight computed in forward.*README"):
        graph = build_channel_graph(model, x)
    assert not graph.prunable_groups
    register_module_rule(WeightStdConv, StandardizedConvRule())
    graph = _graph(model, x)
    plan = select_on_graph(graph, model, 0.5)
    from lightning_compress.pruning import prune

    pruned = prune(model, plan, example_inputs=x)
    assert pruned[0].out_channels == pruned[2].in_channels == 4


def fused_scaled_silu(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Stands for a fused op from an extension: fx records it as one call (torch.fx.wrap), the engine has no rule."""
    return F.silu(x) * alpha.view(1, -1, 1, 1)


torch.fx.wrap("fused_scaled_silu")


class ScaledAct(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.rand(channels) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_scaled_silu(x, self.alpha)


@pytest.fixture
def custom_function_rules():
    from lightning_compress.pruning.ops import FUNCTION_RULES

    saved = dict(FUNCTION_RULES)
    yield
    FUNCTION_RULES.clear()
    FUNCTION_RULES.update(saved)


def test_readme_custom_function_rule(custom_function_rules):
    from lightning_compress.pruning import prune
    from lightning_compress.pruning.ops import channelwise_function_rule, register_function_rule

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), ScaledAct(8), nn.Conv2d(8, 4, 1)).eval()
    x = torch.randn(1, 3, 8, 8)
    with pytest.warns(UserWarning, match=r"fused_scaled_silu.*README.md, 'Custom ops'"):
        assert not build_channel_graph(model, x).group("0").prunable
    register_function_rule(fused_scaled_silu, channelwise_function_rule(params=((1, "alpha"),)))
    graph = _graph(model, x)
    plan = select_on_graph(graph, model, 0.5)
    pruned = assert_mask_equals_prune(model, x, plan)
    assert pruned[1].alpha.shape[0] == pruned[0].out_channels == 4
    assert prune(model, plan, example_inputs=x)[1].alpha.shape[0] == 4
