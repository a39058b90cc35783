"""NetworkSlimming at the end of the fit: one global threshold, per-group floor, physical pruning, gamma logging."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_compress.callbacks import NetworkSlimming
from lightning_compress.functional import global_threshold
from tests.helpers import tiny_data, tiny_module, tiny_resnet


def _set_gammas(net: nn.Module, values: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, value in values.items():
            net.get_submodule(name).weight.copy_(value)


def test_prunes_by_one_global_threshold_at_train_end_with_a_floor(make_trainer, tmp_path):
    module = tiny_module(lr=1e-12)  # the weights stay what we set: only the end-of-fit decision is exercised
    net = module.net
    gammas = {  # bn1 and bn2 hold the smallest scales: a global threshold takes them first
        "features.bn1": torch.linspace(0.001, 0.008, 8), "features.bn2": torch.linspace(0.01, 0.08, 8),
        "features.bn3": torch.linspace(1.0, 2.5, 16), "features.bn4": torch.linspace(3.0, 4.5, 16),
    }
    _set_gammas(net, gammas)
    callback = NetworkSlimming(sparsity_lambda=0.0, pruning_ratio=0.375, min_channels=2, plot_dir=str(tmp_path))
    trainer = make_trainer(callbacks=[callback], max_steps=1, limit_train_batches=1)
    trainer.fit(module, datamodule=tiny_data())
    expected = global_threshold(dict(gammas), 0.375, 2)
    assert net.features.conv1.out_channels == 2  # emptied by the threshold, floor keeps its 2 best
    assert net.features.conv2.out_channels == 8 - len(expected["features.bn2"]) == 2
    # 18 = floor(48 * 0.375) still go: what the floors keep in bn1/bn2 comes from the next-lowest scales (bn3)
    assert net.features.conv3.out_channels == 10 and net.features.conv4.out_channels == 16
    assert callback.plan.removed("features.bn1", "channels") == list(range(6))
    assert callback.finished and (tmp_path / "gamma.png").is_file()
    assert callback.history and set(callback.history[0]) >= {"epoch", "frac_below", "mean"}
    assert trainer.callback_metrics["slimming/gamma_frac_below"] == pytest.approx(8 / 48)


def test_residual_groups_are_scored_together(make_trainer):
    module = tiny_module(tiny_resnet())
    callback = NetworkSlimming(sparsity_lambda=1e-4, pruning_ratio=0.3, group_score="mean", plot_dir="",
                               verbose=False)
    trainer = make_trainer(callbacks=[callback], limit_train_batches=1)
    trainer.fit(module, datamodule=tiny_data())
    multi = [members for members in callback.groups.values() if len(members) > 1]
    assert multi, "the stem + block-output BNs of a residual stage share one group"
    x = torch.randn(2, 1, 8, 8)
    assert module.net(x).shape == (2, 4)
    assert callback.profile["after"]["macs"] < callback.profile["before"]["macs"]


def test_prune_false_only_trains_for_sparsity(make_trainer):
    module = tiny_module()
    callback = NetworkSlimming(prune=False, plot_dir="", verbose=False)
    make_trainer(callbacks=[callback], limit_train_batches=1).fit(module, datamodule=tiny_data())
    assert callback.plan is None and not callback.finished and callback.penalty_steps == 1
    assert module.net.features.conv1.out_channels == 8


def test_state_dict_round_trip():
    callback = NetworkSlimming()
    callback.penalty_steps, callback.history = 7, [{"epoch": 0.0, "frac_below": 0.1}]
    other = NetworkSlimming()
    other.load_state_dict(callback.state_dict())
    assert other.penalty_steps == 7 and other.history == callback.history and other.plan is None
    other.load_state_dict({})  # old/foreign checkpoints: defaults
    assert other.penalty_steps == 7
    assert callback.state_key == "NetworkSlimming{'submodule': None}"
