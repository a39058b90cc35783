"""The engine's speed shortcuts change nothing: shape-only conv/linear outputs, same-shape elementwise unions, the
vectorised union-find and grouping give the same graph as the plain computation; the tracer names constants as fx."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lightning_compress.models import resnet20
from lightning_compress.pruning import build_channel_graph
from lightning_compress.pruning import capture as capture_module
from lightning_compress.pruning import transfer as transfer_module
from lightning_compress.pruning.channels import UnionFind, unique_sorted
from lightning_compress.pruning.graph import _label_origin_sets
from lightning_compress.pruning.importance import Magnitude, position_vectors
from lightning_compress.pruning.shape_only import shape_only_output

from .archs import ARCHS

CONVS = [
    nn.Conv2d(6, 8, 3, 2, 1), nn.Conv2d(6, 6, 3, 1, "same", dilation=2, groups=3), nn.Conv2d(6, 4, (1, 5), (2, 1),
                                                                                           "valid"),
    nn.Conv2d(6, 4, 4, 3, (2, 0), dilation=(1, 2), bias=False), nn.Conv1d(6, 5, 3, 2, 2), nn.Conv3d(6, 2, 2, 1, 1),
    nn.Linear(7, 3),
]


NORMS = [nn.BatchNorm2d(6), nn.BatchNorm2d(6, affine=False), nn.BatchNorm1d(6), nn.BatchNorm3d(6)]


@pytest.mark.parametrize("layer", CONVS + NORMS, ids=lambda m: repr(m))
def test_shape_only_output_has_the_real_shape_and_layout(layer: nn.Module) -> None:
    layer.eval()  # the mapping forward runs in eval mode
    x = torch.randn(2, 6, 9, 7) if isinstance(layer, (nn.Conv2d, nn.BatchNorm2d)) else (
        torch.randn(2, 6) if isinstance(layer, nn.BatchNorm1d) else
        torch.randn(2, 6, 4, 5, 3) if isinstance(layer, nn.BatchNorm3d) else (
        torch.randn(2, 6, 11) if isinstance(layer, nn.Conv1d) else
        torch.randn(2, 6, 4, 5, 3) if isinstance(layer, nn.Conv3d) else torch.randn(2, 4, 7)))
    for inp in ([x, x.contiguous(memory_format=torch.channels_last)] if x.dim() == 4 else [x]):
        stub, real = shape_only_output(layer, (inp,), {}), layer(inp)
        assert stub is not None and stub.shape == real.shape and stub.stride() == real.stride()


class WeightStandardised(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # the weight is computed in forward: must run for real
        return self._conv_forward(x, self.weight - self.weight.mean(), self.bias)


def test_shape_only_output_runs_anything_else_for_real() -> None:
    x = torch.randn(1, 6, 8, 8)
    hooked = nn.Conv2d(6, 4, 3)
    hooked.register_forward_hook(lambda m, i, o: None)
    for layer, args in [(WeightStandardised(6, 4, 3), (x,)), (nn.Conv2d(6, 4, 3, padding_mode="reflect"), (x,)),
                        (hooked, (x,)), (nn.Conv2d(5, 4, 3), (x,)), (nn.Conv2d(6, 4, 9), (x,)),
                        (nn.Conv2d(6, 4, 3).double(), (x,)), (nn.Linear(8, 3), (x[:, :, :, :7],))]:
        assert shape_only_output(layer, args, {}) is None, layer
    hooked_bn = nn.BatchNorm2d(6).eval()
    hooked_bn.register_forward_pre_hook(lambda m, i: None)
    for norm, args in [(nn.BatchNorm2d(6), (x,)),  # training: batch statistics
                       (nn.BatchNorm2d(6, track_running_stats=False).eval(), (x,)),  # batch statistics in eval
                       (hooked_bn, (x,)), (nn.BatchNorm2d(5).eval(), (x,)), (nn.BatchNorm1d(6).eval(), (x,)),
                       (nn.BatchNorm2d(6).double().eval(), (x,)), (nn.SyncBatchNorm(6).eval(), (x,))]:
        assert shape_only_output(norm, args, {}) is None, norm


def _signature(graph) -> list:
    return [(g.id, g.size, g.prunable, g.frozen_reasons, g.writers, g.readers,
             [(m.module, m.slot, m.size, m.indices.tolist(), m.positions.tolist()) for m in g.members])
            for g in graph.groups]


SHORTCUTS = {  # each off-switch makes the engine take the plain computation
    "shape_only_outputs": (capture_module, "shape_only_output"),  # real conv / linear / BN arithmetic
    "same_shape_elementwise": (transfer_module, "_same_shape_union"),  # every elementwise op broadcast
}


@pytest.mark.parametrize("shortcut", sorted(SHORTCUTS))
@pytest.mark.parametrize("residual", ["couple", "select"])
@pytest.mark.parametrize("arch", sorted(ARCHS) + ["resnet20"])
def test_graph_is_the_same_without_the_shortcut(monkeypatch, arch: str, residual: str, shortcut: str) -> None:
    factory, size, _ = ARCHS[arch] if arch in ARCHS else (lambda: resnet20(num_classes=10), 16, True)
    torch.manual_seed(0)
    model, x = factory().eval(), torch.randn(1, 3, size, size)
    fast = _signature(build_channel_graph(model, x, residual=residual))
    monkeypatch.setattr(*SHORTCUTS[shortcut], lambda *a: None)
    assert _signature(build_channel_graph(model, x, residual=residual)) == fast


def _classes(uf: UnionFind, n: int) -> set[frozenset[int]]:
    roots = uf.roots()
    return {frozenset(np.nonzero(roots == r)[0].tolist()) for r in np.unique(roots[:n])}


def test_union_find_matches_a_plain_one_on_random_unions() -> None:
    rng = np.random.default_rng(0)
    uf, n = UnionFind(), 3000
    uf.new(n)
    plain = list(range(n))

    def find(x: int) -> int:
        while plain[x] != x:
            x = plain[x]
        return x

    for _ in range(40):
        a, b = rng.integers(0, n, 50), rng.integers(0, n, 50)
        uf.union_arrays(a, b)
        for x, y in zip(a.tolist(), b.tolist()):
            rx, ry = find(x), find(y)
            plain[max(rx, ry)] = min(rx, ry)
    uf.freeze(np.array([5]), "five")
    expected = {frozenset(i for i in range(n) if find(i) == r) for r in {find(i) for i in range(n)}}
    assert _classes(uf, n) == expected
    assert all(int(uf.roots()[i]) == find(i) for i in range(n))  # the root is the class minimum, as before
    other = next(find(i) for i in range(n) if find(i) != find(5))
    assert uf.frozen_roots().get(find(5)) == {"five"} and other not in uf.frozen_roots()
    clone = uf.copy()
    clone.union(0, 1)
    clone.freeze(np.array([2]), "two")
    assert int(uf.roots()[1]) == find(1) and "two" not in uf.frozen_roots().get(find(2), set())


@pytest.mark.parametrize("values", [[], [3], [2, 2], [5, 1, 5, 0, 1, 9], list(range(50, 0, -3)) * 3])
def test_unique_sorted_is_np_unique(values: list[int]) -> None:
    arr = np.asarray(values, dtype=np.int64)
    assert np.array_equal(unique_sorted(arr), np.unique(arr))
    assert unique_sorted(arr).dtype == np.unique(arr).dtype


def test_origin_sets_label_each_distinct_set_once() -> None:
    # roots 0..4; (root, origin) pairs sorted by root: 0:{1}, 1:{0,2}, 2:{3}, 3:{0,2}, 4:{0,1,2}
    pair_producer = np.array([1, 0, 2, 3, 0, 2, 0, 1, 2])
    count = np.array([1, 2, 1, 2, 3])
    label = pair_producer[np.concatenate([[0], np.cumsum(count)[:-1]])].copy()
    sets = _label_origin_sets(label, count, pair_producer, n_names=4)
    assert label[0] == 1 and label[2] == 3  # one origin: labelled by it
    assert label[1] == label[3] >= 4 and label[4] >= 4 and label[4] != label[1]
    assert sets == {int(label[1]): (0, 2), int(label[4]): (0, 1, 2)}


@pytest.mark.parametrize("residual", ["couple", "select"])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("arch", ["resnet20", "resnext", "mobilenet_v2", "densenet", "shufflenet_v2", "googlenet"])
def test_magnitude_scores_match_the_concatenated_rows(arch: str, p: int, residual: str) -> None:
    """Magnitude's per-producer sum (with its shortcut for producers whose rows are the positions) equals the norm of
    each position's concatenated producer rows."""
    factory, size, _ = ARCHS[arch] if arch in ARCHS else (lambda: resnet20(num_classes=10), 16, True)
    torch.manual_seed(0)
    model, x = factory().eval(), torch.randn(1, 3, size, size)
    graph = build_channel_graph(model, x, residual=residual)
    checked = 0
    for group in graph.groups:
        scores, rows = Magnitude(p=p).scores(group, model), position_vectors(group, model)
        assert (scores is None) == (rows is None)
        if rows is not None:
            torch.testing.assert_close(scores, torch.linalg.vector_norm(rows, ord=p, dim=1), rtol=1e-5, atol=1e-5)
            checked += 1
    assert checked > 0


@pytest.mark.parametrize("p", [1, 2])
def test_magnitude_scores_follow_permuted_positions(p: int) -> None:
    """A producer whose slot indices map to the group's positions in another order is scattered, not taken as is."""
    import dataclasses

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3)).eval()
    graph = build_channel_graph(model, torch.randn(1, 3, 8, 8))
    group = next(g for g in graph.groups if g.producers == ("0",))
    order = np.random.default_rng(0).permutation(group.size)
    members = tuple(dataclasses.replace(m, positions=order[m.indices]) for m in group.members)
    shuffled = dataclasses.replace(group, members=members)
    expected = torch.linalg.vector_norm(model[0].weight.detach().flatten(1), ord=p, dim=1)
    reordered = torch.empty_like(expected)
    reordered[torch.as_tensor(order)] = expected
    torch.testing.assert_close(Magnitude(p=p).scores(shuffled, model), reordered)
    torch.testing.assert_close(Magnitude(p=p).scores(shuffled, model),
                               torch.linalg.vector_norm(position_vectors(shuffled, model), ord=p, dim=1))


class _TensorConstants(nn.Module):
    """Plain tensor attributes (not parameters or buffers), at the root and in a submodule, used in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.inner = nn.Module()
        self.inner.offset = torch.full((1, 8, 1, 1), 0.5)
        self.scale = torch.arange(8.0).reshape(1, 8, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.scale + self.inner.offset


def test_rule_tracer_names_tensor_attributes_as_fx_does() -> None:
    import torch.fx._symbolic_trace as fx_trace

    from lightning_compress.pruning.tracing import RuleTracer

    types = fx_trace._constant_attribute_types
    model = _TensorConstants()
    ours = RuleTracer().trace(model)
    plain = torch.fx.Tracer().trace(model)
    assert fx_trace._constant_attribute_types is types  # put back after the trace
    attrs = sorted(n.target for n in ours.nodes if n.op == "get_attr")
    assert attrs == sorted(n.target for n in plain.nodes if n.op == "get_attr") == ["inner.offset", "scale"]
    assert not [k for k in vars(model) if k.startswith("_tensor_constant")]  # nothing stowed on the model
    assert RuleTracer().trace(resnet20()) is not None and fx_trace._constant_attribute_types is types


def test_rule_tracer_leaves_fx_state_alone_when_tracing_fails() -> None:
    import torch.fx._symbolic_trace as fx_trace

    from lightning_compress.pruning.tracing import RuleTracer

    class DataDependent(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.sum() > 0 else -x

    types = fx_trace._constant_attribute_types
    with pytest.raises(torch.fx.proxy.TraceError):
        RuleTracer().trace(DataDependent())
    assert fx_trace._constant_attribute_types is types
