"""Optimizer state follows physical pruning; mask helpers keep soft-pruned channels at exactly zero."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from lightning_compress.pruning import ChannelMask, mask, prune, select_channels
from lightning_compress.pruning.masking import zero_masked_grads

from .archs import VGG, BottleneckResNet

X = torch.randn(4, 3, 8, 8)
Y = torch.randint(0, 5, (4,))


def _step(model, opt):
    opt.zero_grad()
    F.cross_entropy(model(X), Y).backward()
    opt.step()


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-4),
    lambda p: torch.optim.Adam(p, lr=1e-3),
    lambda p: torch.optim.AdamW(p, lr=1e-3, amsgrad=True),
])
def test_optimizer_state_is_sliced_and_rebound(make_opt):
    model = BottleneckResNet()
    opt = make_opt(model.parameters())
    _step(model, opt)
    plan = select_channels(model, X, 0.5)
    old = dict(model.named_parameters())
    old_state = {n: {k: v.clone() for k, v in opt.state[p].items()} for n, p in old.items()}
    conv = model.layers[0].conv1
    keep_rows = plan.kept_indices("layers.0.conv1", "out")
    prune(model, plan, optimizer=opt)
    params = dict(model.named_parameters())
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert in_opt == {id(p) for p in params.values()}
    assert all(id(p) not in in_opt for n, p in old.items() if params[n] is not p)
    new_w = params["layers.0.conv1.weight"]
    assert new_w is conv.weight
    for key, value in old_state["layers.0.conv1.weight"].items():
        state = opt.state[new_w][key]
        if value.dim() == 0:
            assert torch.equal(state, value)
        else:
            keep_in = plan.kept_indices("layers.0.conv1", "in")
            assert torch.equal(state, value[keep_rows][:, keep_in])
    before = new_w.detach().clone()
    _step(model, opt)  # the optimizer updates the new, smaller parameters
    assert not torch.equal(model.layers[0].conv1.weight.detach(), before)


def test_unpruned_params_keep_their_identity_and_state():
    model = VGG()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _step(model, opt)
    plan = select_channels(model, X, 0.5, ignored_layers=["classifier.4"])
    last_bias = model.classifier[4].bias
    buf = opt.state[last_bias]["momentum_buffer"].clone()
    prune(model, plan, optimizer=opt)
    assert model.classifier[4].bias is last_bias
    assert torch.equal(opt.state[last_bias]["momentum_buffer"], buf)


def test_grads_are_sliced_with_parameters():
    model = VGG()
    F.cross_entropy(model(X), Y).backward()
    plan = select_channels(model, X, 0.5)
    w = model.features[0].weight
    keep = plan.kept_indices("features.0", "out")
    expected = w.grad[keep].clone()
    prune(model, plan)
    assert torch.equal(model.features[0].weight.grad, expected)


def test_momentum_revives_masked_filters_unless_state_is_zeroed():
    base = VGG()
    plan = select_channels(base, X, 0.5)
    rows = plan.removed("features.0", "out")
    results = {}
    for freeze_state in (False, True):
        model = copy.deepcopy(base)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        _step(model, opt)  # momentum exists before masking
        m = mask(model, plan)
        for _ in range(2):
            opt.zero_grad()
            F.cross_entropy(model(X), Y).backward()
            if freeze_state:
                m.zero_grads()
                m.zero_optimizer_state(opt)
            opt.step()
        results[freeze_state] = model.features[0].weight[rows].abs().sum().item()
    assert results[False] > 0  # the peer pitfall: stale momentum revives "pruned" filters
    assert results[True] == 0


def test_adam_state_zeroing_keeps_zero():
    model = VGG()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    _step(model, opt)
    plan = select_channels(model, X, 0.5)
    m = mask(model, plan)
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(X), Y).backward()
        m.zero_grads()
        m.zero_optimizer_state(opt)
        opt.step()
    rows = plan.removed("features.0", "out")
    assert model.features[0].weight[rows].abs().sum() == 0
    assert model.features[1].weight[rows].abs().sum() == 0


def test_functional_helpers_and_masks():
    model = VGG()
    plan = select_channels(model, X, 0.5)
    F.cross_entropy(model(X), Y).backward()
    zero_masked_grads(model, plan)
    rows = plan.removed("features.0", "out")
    assert model.features[0].weight.grad[rows].abs().sum() == 0
    masks = ChannelMask(model, plan).masks()
    assert masks["features.0.weight"][rows].sum() == 0 and masks["features.0.weight"].sum() > 0
    assert "features.4.weight" in masks
    with_inputs = ChannelMask(model, plan, include_inputs=True).masks()
    assert with_inputs["features.4.weight"][:, rows].sum() == 0


def test_mask_slots_filter_and_check():
    model = VGG()
    plan = select_channels(model, X, 0.5)
    rows = plan.removed("features.0", "out")
    mask(model, plan, slots={"out"})
    assert model.features[0].weight[rows].abs().sum() == 0
    assert model.features[1].weight[rows].abs().sum() > 0  # BN untouched, as in the FPGM reference
    with pytest.raises(TypeError, match="`slots`"):
        mask(model, plan, slots="out")
