"""Unknown ops freeze what they touch (one warning; strict raises); user rules; constant shapes freeze."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_compress.pruning import (
    ChannelwiseRule,
    ElementwiseRule,
    TraceError,
    UnsupportedOpError,
    build_channel_graph,
    prune,
    register_module_rule,
)
from lightning_compress.pruning.rules import _MODULE_RULES
from lightning_compress.pruning.selection import select_on_graph
from tests.helpers import assert_mask_equals_prune, randomize_norms

X = torch.randn(2, 3, 8, 8)


class Gram(nn.Module):
    """Channels feed a matmul (no rule) on one branch; the other branch stays prunable."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, padding=1)
        self.b = nn.Conv2d(3, 6, 3, padding=1)
        self.c = nn.Conv2d(6, 6, 1)
        self.fc = nn.Linear(6 + 36, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.a(x)).flatten(2)
        gram = torch.matmul(a, a.transpose(1, 2)).flatten(1)
        b = self.c(F.relu(self.b(x))).mean([2, 3])
        return self.fc(torch.cat([b, gram], 1))


def test_unknown_op_freezes_its_channels_and_warns_once():
    model = Gram()
    with pytest.warns(UserWarning, match="function torch.*matmul") as record:
        graph = build_channel_graph(model, X)
    assert len([w for w in record if "no pruning rule" in str(w.message)]) == 1
    by_producer = {g.producers[0]: g for g in graph.groups}
    assert not by_producer["a"].prunable and any("matmul" in r for r in by_producer["a"].frozen_reasons)
    assert by_producer["b"].prunable and by_producer["c"].prunable
    plan = select_on_graph(graph, model, 0.5)
    assert plan.removed("a", "out") == [] and plan.removed("b", "out")
    assert_mask_equals_prune(model, X, plan)
    with pytest.raises(ValueError, match="frozen group"):
        graph.plan({by_producer["a"].id: [0]})


def test_strict_raises():
    with pytest.raises(UnsupportedOpError, match="matmul"):
        build_channel_graph(Gram(), X, strict=True)


class Attn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.conv(x).flatten(2).transpose(1, 2)
        t, _ = self.attn(t, t, t)
        return self.fc(t.mean(1))


def test_leaf_module_without_rule_is_named_in_the_warning():
    with pytest.warns(UserWarning, match=r"module 'attn' \(MultiheadAttention\)"):
        graph = build_channel_graph(Attn(), X)
    conv = next(g for g in graph.groups if "conv" in g.producers)
    assert not conv.prunable


class Scale(nn.Module):
    """A custom per-channel layer with data-dependent control flow (fx cannot trace it)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.scale = nn.Parameter(torch.rand(channels) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 1e9:  # data-dependent branch
            return x
        return x * self.scale.view(1, -1, 1, 1)


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x) if x.dim() > 0 else x


class WithCustom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.scale = Scale(8)
        self.act = Swish()
        self.conv2 = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.scale(self.conv1(x))))


@pytest.fixture
def custom_rules():
    saved = dict(_MODULE_RULES)
    yield
    _MODULE_RULES.clear()
    _MODULE_RULES.update(saved)


def test_data_dependent_branch_is_followed_and_its_channels_frozen():
    # fx cannot trace `if x.sum() > 1e9`; the concrete fallback follows the example's branch, names it, and freezes
    # the channels the decision read
    with pytest.warns(UserWarning, match="control flow .* on tensor values"):
        graph = build_channel_graph(WithCustom(), X)
    assert not graph.group("conv1").prunable


def test_untraceable_model_gives_trace_error():
    class Untraceable(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.dim() > 100 else torch.Tensor.__new__(torch.Tensor, x)  # fails in any tracer

    with pytest.raises(TraceError, match="register_module_rule"):
        build_channel_graph(Untraceable(), X)


def test_registered_rules_make_custom_modules_prunable(custom_rules):
    register_module_rule(Scale, ChannelwiseRule(tensors=("scale",), size_attr="channels"))
    register_module_rule(Swish, ElementwiseRule())
    model = WithCustom().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graph = build_channel_graph(model, X)
    group = graph.group("conv1")
    assert group.prunable and group.member("scale", "channels") is not None
    plan = select_on_graph(graph, model, 0.5)
    pruned = assert_mask_equals_prune(model, X, plan)
    assert pruned.scale.channels == pruned.scale.scale.shape[0] == 4


def test_register_rule_argument_checks():
    with pytest.raises(TypeError, match="`module_type`"):
        register_module_rule(int, ElementwiseRule())
    with pytest.raises(TypeError, match="`rule`"):
        register_module_rule(Swish, object())


class ConstView(nn.Module):
    """``x.view(-1, 16 * 2 * 2)``: a hard-coded width, so the last conv's channels cannot shrink."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=4)
        self.fc = nn.Linear(64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(F.relu(self.conv1(x)))
        return self.fc(x.view(-1, 16 * 2 * 2))


def test_constant_view_freezes_channels_without_warning():
    model = ConstView()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graph = build_channel_graph(model, X)
    assert not graph.group("conv2").prunable and graph.group("conv1").prunable
    pruned = prune(copy.deepcopy(model), select_on_graph(graph, model, 0.5))
    assert pruned(X).shape == (2, 3)


class ConstSplit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.left, self.right = nn.Conv2d(3, 3, 1), nn.Conv2d(5, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(self.conv(x), [3, 5], dim=1)
        return self.left(a) + self.right(b)


def test_fixed_split_sizes_freeze():
    graph = build_channel_graph(ConstSplit(), X)
    assert not graph.group("conv").prunable


class SharedConv(nn.Module):
    """One conv applied twice: both calls must stay consistent."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.shared = nn.Conv2d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x = F.relu(self.bn(self.shared(x)))
        return self.head(self.shared(x))


def test_reused_module_is_consistent():
    model = randomize_norms(SharedConv()).eval()
    graph = build_channel_graph(model, X)
    group = graph.group("stem")
    assert set(group.producers) == {"stem", "shared"}
    assert_mask_equals_prune(model, X, select_on_graph(graph, model, 0.5))


class ForeignWidth(nn.Module):
    """MaxViT-style: the width read from ``x`` reshapes another tensor, so x's width is tied to that tensor."""

    def __init__(self, tied: bool) -> None:
        super().__init__()
        self.tied = tied
        self.conv, self.side = nn.Conv2d(3, 8, 1), nn.Conv2d(3, 8, 1)
        self.proj = nn.Linear(8, 8)
        self.head, self.head2 = nn.Conv2d(8, 2, 1), nn.Conv2d(8, 2, 1)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.conv(inp)
        b, c, h, w = x.shape
        if self.tied:  # an op without a rule on a side branch; only x's *width* links x to it
            t = torch.cumprod(self.side(inp).flatten(2).transpose(1, 2), dim=1)
        else:
            t = self.proj(x.flatten(2).transpose(1, 2))
        y = t.transpose(1, 2).reshape(b, c, h, w)
        return self.head(x) + self.head2(y)


def test_size_read_from_another_tensor_couples_or_freezes():
    with pytest.warns(UserWarning, match="cumprod"):
        graph = build_channel_graph(ForeignWidth(tied=True), X)
    assert not graph.group("conv").prunable
    assert any("size of a channel dim reused" in r for r in graph.group("conv").frozen_reasons)
    model = ForeignWidth(tied=False).eval()
    graph = build_channel_graph(model, X)
    group = graph.group("conv")
    assert group.prunable and set(group.producers) == {"conv", "proj"}
    pruned = assert_mask_equals_prune(model, X, select_on_graph(graph, model, 0.5))
    assert pruned.conv.out_channels == pruned.proj.out_features == 4


class EncoderDecoder(nn.Module):
    """Conv encoder + ConvTranspose decoder with a skip concat (U-Net style)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.enc2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.dec = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.ReLU())
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        d = self.up(self.enc2(e1))
        return self.out(self.dec(torch.cat([e1, d], 1)))


class TokenModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.norm = nn.LayerNorm(8)
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.emb(tokens))
        return self.fc2(torch.relu(self.fc1(h)).mean(1))


def test_conv_transpose_and_embedding():
    model = randomize_norms(EncoderDecoder()).eval()
    graph = build_channel_graph(model, X, strict=True)
    assert graph.group("up").prunable and graph.group("enc2.0").prunable
    pruned = assert_mask_equals_prune(model, X, select_on_graph(graph, model, 0.5, importance="l2"))
    assert pruned.up.in_channels == 8 and pruned.up.out_channels == 4 and pruned.dec[0].in_channels == 8
    tokens = torch.randint(0, 20, (2, 5))
    tmodel = TokenModel().eval()
    graph = build_channel_graph(tmodel, tokens, strict=True)
    plan = select_on_graph(graph, tmodel, 0.5)
    pruned = prune(copy.deepcopy(tmodel), plan)
    assert pruned.emb.weight.shape == (20, 4) and pruned.norm.normalized_shape == (4,)
    assert pruned(tokens).shape == (2, 3)


class TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(12, 8)
        self.mix = nn.Linear(8, 8)
        self.out = nn.Linear(8, 12, bias=False)
        self.out.weight = self.emb.weight  # tied

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.emb(tokens)
        return self.out(h + torch.relu(self.mix(h)))


def test_tied_weights_stay_tied():
    model = TiedLM().eval()
    tokens = torch.randint(0, 12, (2, 5))
    graph = build_channel_graph(model, tokens, strict=True)
    plan = select_on_graph(graph, model, 0.5)
    pruned = prune(copy.deepcopy(model), plan)
    assert pruned.out.weight is pruned.emb.weight and pruned.emb.weight.shape == (12, 4)
    assert len(list(pruned.parameters())) == len(list(model.parameters()))
    assert pruned(tokens).shape == (2, 5, 12)
