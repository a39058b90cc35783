"""The pruning callbacks with a budget (target_macs / target_latency_ms) instead of a ratio, in real tiny fits, and
train.py with `method.callback.target_macs=0.5`."""

from __future__ import annotations

import pytest
import torch

from lightning_compress.callbacks import FPGMPruning, L1FilterPruning, NetworkSlimming
from lightning_compress.pipeline import run
from lightning_compress.pruning import Budget
from tests.helpers import TINY_PRUNING_RUN as TINY
from tests.helpers import tiny_data, tiny_module, tiny_resnet, tiny_vgg

X = torch.randn(1, 1, 8, 8)


def _assert_met(callback, target: float = 0.5) -> None:
    before, after = callback.profile["before"]["macs"], callback.profile["after"]["macs"]
    assert 0.99 * target * before <= after <= target * before
    budget = callback.budget
    assert isinstance(budget, Budget) and budget.target == "macs" and budget.macs == after
    assert budget.counts == {g.id: len(g.removed) for g in callback.plan.groups}
    restored = type(callback)(target_macs=target, verbose=False)  # the budget travels with the callback state
    restored.load_state_dict(callback.state_dict())
    assert restored.budget == budget


def test_l1_filter_prunes_to_a_macs_target_in_setup(make_trainer):
    module = tiny_module(tiny_vgg())
    callback = L1FilterPruning(target_macs=0.5, verbose=False)
    make_trainer(callbacks=[callback], limit_train_batches=2).fit(module, datamodule=tiny_data())
    _assert_met(callback)
    assert isinstance(callback.budget.pruning_ratio, float)


def test_l1_filter_scales_a_dict_ratio_to_the_target(make_trainer):
    module = tiny_module(tiny_resnet())
    shape = {"layer1.*.conv1": 0.4, "layer2.*.conv1": 0.2, "layer3.*.conv1": 0.2}
    callback = L1FilterPruning(pruning_ratio=shape, target_macs=0.8, verbose=False)
    make_trainer(callbacks=[callback], max_steps=0).fit(module, datamodule=tiny_data())
    _assert_met(callback, 0.8)
    found = callback.budget.pruning_ratio
    assert found["layer1.*.conv1"] == pytest.approx(2 * found["layer2.*.conv1"]) and set(found) == set(shape)


def test_fpgm_uses_the_counts_found_in_setup_for_every_selection(make_trainer):
    module = tiny_module(tiny_resnet())
    callback = FPGMPruning(target_macs=0.5, residual="select", verbose=False)
    make_trainer(callbacks=[callback], max_epochs=1, limit_train_batches=2).fit(module, datamodule=tiny_data())
    assert callback.selection_epochs == [-1, 0] and callback.finished
    _assert_met(callback)
    resumed = FPGMPruning(target_macs=0.5, residual="select", verbose=False)
    resumed.load_state_dict(callback.state_dict())
    assert resumed.budget.counts == callback.budget.counts  # what a resumed fit selects with


def test_slimming_searches_the_global_ratio_on_the_trained_scales(make_trainer):
    module = tiny_module(tiny_vgg())
    callback = NetworkSlimming(target_macs=0.5, sparsity_lambda=1e-4, plot_dir="", verbose=False)
    make_trainer(callbacks=[callback], limit_train_batches=2).fit(module, datamodule=tiny_data())
    _assert_met(callback)
    assert isinstance(callback.budget.pruning_ratio, float)


def test_l1_filter_meets_a_latency_target_timed_at_its_batch_size(make_trainer, monkeypatch):
    from lightning_compress.cost import Latency, count_macs
    from lightning_compress.pruning import budget_search

    def fake(net, inputs, *args, **kwargs):  # deterministic: proportional to the MACs, no spread
        ms = 1e-3 * count_macs(net, inputs[:1]) * inputs.shape[0]
        return Latency(ms, ms, ms, inputs.shape[0], str(inputs.device), 1, 0, 1, "fake")

    monkeypatch.setattr(budget_search, "measure_latency", fake)
    module = tiny_module(tiny_vgg())
    base_ms = 1e-3 * count_macs(module.net, X) * 8
    callback = L1FilterPruning(target_latency_ms=0.5 * base_ms, latency_batch_size=8, verbose=False)
    make_trainer(callbacks=[callback], max_steps=0).fit(module, datamodule=tiny_data())
    latency = callback.budget.latency
    assert latency["batch_size"] == 8 and latency["device"] == "cpu"
    assert 0.99 * 0.5 * base_ms <= latency["median_ms"] <= 0.5 * base_ms
    assert callback.profile["after"]["macs"] == callback.budget.macs


@pytest.mark.parametrize("cls", [L1FilterPruning, FPGMPruning, NetworkSlimming])
@pytest.mark.parametrize(("kwargs", "match"), [
    ({"pruning_ratio": 0.4, "target_macs": 0.5}, "pruning_ratio=null"),
    ({"target_macs": 0.5, "target_latency_ms": 2.0}, "target_latency_ms"),
    ({"target_macs": 0.0}, "target_macs"),
    ({"target_latency_ms": -1.0}, "target_latency_ms"),
    ({"target_macs": 0.5, "latency_batch_size": 0}, "latency_batch_size"),
])
def test_bad_budgets_are_refused_in_init(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_without_a_target_none_is_the_method_default():
    assert L1FilterPruning().pruning_ratio == 0.4 and FPGMPruning().pruning_ratio == 0.4
    assert NetworkSlimming().pruning_ratio == 0.4 and NetworkSlimming(target_macs=0.5).pruning_ratio is None


def test_train_py_fpgm_with_target_macs(compose_config):
    cfg = compose_config("+method=fpgm", "method.callback.target_macs=0.5", *TINY)  # the command
    record = run(cfg)
    before, after = record["baseline"]["macs"], record["compressed"]["macs"]
    assert 0.99 * 0.5 * before <= after <= 0.5 * before
    budget = record["compressed"]["budget"]
    assert budget["target"] == "macs" and budget["macs"] == after and -0.01 <= budget["error"] <= 0


def test_train_py_refuses_a_float_ratio_together_with_a_target(compose_config):
    cfg = compose_config("+method=fpgm", "method.callback.pruning_ratio=0.4", "method.callback.target_macs=0.5", *TINY)
    with pytest.raises(Exception, match="method.callback.pruning_ratio=null"):
        run(cfg)
