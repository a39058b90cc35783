"""Network Slimming on every batch norm the engine can prune (issue 29, item 2): a ``_BatchNorm`` subclass that calls
``F.batch_norm`` itself (as timm's ``BatchNormAct2d`` does) and a module calling ``F.batch_norm`` with its own
parameters are scored, penalised and pruned; a cut that can remove nothing says so."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_compress.callbacks import NetworkSlimming
from lightning_compress.pruning import select_channels
from tests.helpers import tiny_data, tiny_module


class BatchNormAct(nn.BatchNorm2d):
    """A BatchNorm2d subclass with a fused activation: traced as functional batch norm, not as BatchNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                   self.training, self.momentum, self.eps))


class FunctionalNorm(nn.Module):
    """No ``_BatchNorm``: its own parameters and buffers through ``F.batch_norm``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training))


def net_with(norm: type) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), norm(8), nn.Conv2d(8, 16, 3, padding=1), norm(16),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))


@pytest.mark.parametrize("norm", [BatchNormAct, FunctionalNorm])
def test_bn_scale_ranks_the_scales_of_any_batch_norm(norm: type) -> None:
    net = net_with(norm)
    with torch.no_grad():
        net[1].weight.copy_(torch.arange(8.0) + 1)
        net[3].weight.copy_(torch.arange(16.0) + 1)
    plan = select_channels(net, torch.randn(1, 1, 8, 8), pruning_ratio=0.5, importance="bn_scale",
                           global_pruning=True)
    assert plan.num_removed == 12  # half of the 24 scaled channels, the smallest scales
    assert plan.removed("0", "out") == list(range(6)) and plan.removed("2", "out") == list(range(6))  # one threshold


@pytest.mark.parametrize("norm", [BatchNormAct, FunctionalNorm])
def test_slimming_penalises_and_prunes_any_batch_norm(norm: type, make_trainer) -> None:
    module = tiny_module(net_with(norm), lr=0.1)
    callback = NetworkSlimming(sparsity_lambda=1e-2, pruning_ratio=0.5, init_gamma=0.5, verbose=False)
    make_trainer(max_epochs=1, limit_train_batches=2, callbacks=[callback]).fit(module, datamodule=tiny_data())
    assert sorted(n for names in callback.groups.values() for n in names) == ["1", "3"]
    assert callback.penalty_steps == 2
    assert callback.plan.num_removed == 12
    assert module.net[0].out_channels + module.net[2].out_channels == 12


def test_nothing_to_score_is_loud() -> None:
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.LazyLinear(4))
    net(torch.randn(1, 1, 8, 8))
    with pytest.warns(UserWarning, match=r"removes 0 channels: importance BNScale could score none.*bn_scale needs"):
        plan = select_channels(net, torch.randn(1, 1, 8, 8), pruning_ratio=0.5, importance="bn_scale")
    assert plan.is_empty
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scored, but min_channels keeps every group whole: not this warning
        assert select_channels(net_with(BatchNormAct), torch.randn(1, 1, 8, 8), pruning_ratio=0.5, min_channels=16,
                               importance="bn_scale").is_empty


def test_slimming_without_batch_norm_refuses_before_training(make_trainer) -> None:
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 4))
    with pytest.raises(ValueError, match=r"no prunable BatchNorm.*`_BatchNorm` modules \(any subclass\)"):
        make_trainer(callbacks=[NetworkSlimming(pruning_ratio=0.5)]).fit(tiny_module(net), datamodule=tiny_data())
