"""Property: on random architectures, mask(copy, plan) == prune(copy, plan) in eval mode (the exactness contract),
plans round-trip through dicts, and prune(fresh, plan) reproduces the pruned shapes."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from lightning_compress.pruning import PruningPlan, build_channel_graph, prune
from lightning_compress.pruning.selection import select_on_graph
from tests.helpers import assert_mask_equals_prune, randomize_norms

from .random_arch import random_nets

X = torch.randn(2, 3, 8, 8)
COMMON = {"deadline": None, "database": None, "derandomize": True,
          "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}


def _check(net, ratio, importance, global_pruning, seed, residual="couple"):
    model = randomize_norms(net).eval()
    torch.manual_seed(seed)
    graph = build_channel_graph(model, X, strict=True, residual=residual)  # every op of these nets has a rule
    try:
        plan = select_on_graph(graph, model, ratio, importance=importance, global_pruning=global_pruning)
    except ValueError as err:  # the groups' floors cannot let that many channels go: an error, said (test_selection)
        if "let at most" not in str(err):
            raise
        reject()
    pruned = assert_mask_equals_prune(model, X, plan)  # the fused form of residual="select" where it applies
    if residual == "select":
        hooked = prune(copy.deepcopy(model), plan, fuse=False)
        with torch.no_grad():
            assert torch.allclose(pruned(X), hooked(X), rtol=0, atol=1e-6)
    fresh = prune(copy.deepcopy(net), PruningPlan.from_dict(plan.to_dict()))
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in pruned.state_dict().items()}


@settings(max_examples=200, **COMMON)
@given(net=random_nets(), ratio=st.floats(0.1, 0.8), importance=st.sampled_from(["random", "l1", "fpgm"]),
       global_pruning=st.booleans(), seed=st.integers(0, 1000), residual=st.sampled_from(["couple", "select"]))
def test_mask_equals_prune_on_random_architectures(net, ratio, importance, global_pruning, seed, residual):
    _check(net, ratio, importance, global_pruning, seed, residual)


@pytest.mark.slow
@settings(max_examples=1000, **COMMON)
@given(net=random_nets(max_ops=16), ratio=st.floats(0.05, 0.95), importance=st.sampled_from(["random", "l2"]),
       global_pruning=st.booleans(), seed=st.integers(0, 1000), residual=st.sampled_from(["couple", "select"]))
def test_mask_equals_prune_on_larger_random_architectures(net, ratio, importance, global_pruning, seed, residual):
    _check(net, ratio, importance, global_pruning, seed, residual)
