"""What every pruning callback does right after its cut: BN recalibration and the dead-channel check; Slimming's BN
weight decay and its stream-writer rule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_compress.callbacks import FPGMPruning, L1FilterPruning, NetworkSlimming
from lightning_compress.pruning.calibration import dead_channels, recalibrate_batchnorm
from tests.helpers import tiny_data, tiny_module, tiny_resnet, tiny_vgg


def test_recalibrate_batchnorm_averages_the_batches_and_restores_the_module() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)).eval()
    batches = [torch.randn(8, 1, 6, 6) + 3.0, torch.randn(8, 1, 6, 6) - 1.0]
    used = recalibrate_batchnorm(net, batches)
    conv_out = torch.cat([net[0](b) for b in batches])
    assert used == 2 and not net.training and net[1].momentum == 0.1
    assert torch.allclose(net[1].running_mean, conv_out.mean((0, 2, 3)), atol=1e-5)
    assert int(net[1].num_batches_tracked) == 2


def test_dead_channels_names_the_activation_and_counts() -> None:
    net = nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3), nn.ReLU()).eval()
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.zero_()
        net[1].bias.copy_(torch.tensor([0.0, -100.0, 0.0]))  # channel 1 is negative for every input
    assert dead_channels(net, torch.randn(4, 1, 5, 5)) == {"2": (1, 3)}


@pytest.mark.parametrize(("make_callback", "batches"), [
    (lambda: NetworkSlimming(sparsity_lambda=0.0, pruning_ratio=0.3, bn_recalibration=2, plot_dir=""), 2),
    (lambda: FPGMPruning(pruning_ratio=0.3, soft_mode="exact", bn_recalibration=2), 2),
    (lambda: L1FilterPruning(pruning_ratio=0.3, bn_recalibration=2), 2 + 2),  # cut in setup, then 2 training steps
], ids=["slimming", "fpgm", "l1"])
def test_every_callback_recalibrates_bn_after_its_cut(make_trainer, make_callback, batches: int) -> None:
    callback = make_callback()
    module, data = tiny_module(), tiny_data()
    make_trainer(max_epochs=1, limit_train_batches=2, callbacks=[callback]).fit(module, datamodule=data)
    before = callback.bn_buffers_before_recalibration
    assert callback.finished and before is not None
    after = module.net.state_dict()
    for key, value in before.items():
        if key.endswith("num_batches_tracked"):  # statistics reset, then exactly two batches averaged
            assert int(after[key]) == batches, key
        elif key.endswith("running_mean"):
            assert after[key].shape == value.shape and not torch.allclose(after[key], value, atol=1e-6), key


def test_a_dead_kept_channel_is_named_in_a_warning(make_trainer) -> None:
    module = tiny_module(tiny_vgg(), lr=1e-12)
    bn = module.net.features.bn3
    with torch.no_grad():
        for m in module.net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1.0)
        bn.weight.copy_(torch.linspace(1e-4, 1e-3, 16))  # bn3 has the smallest scales: the cut takes most of it
        bn.bias.fill_(-50.0)  # and what it keeps is negative everywhere
    callback = NetworkSlimming(sparsity_lambda=0.0, pruning_ratio=0.25, max_pruning_ratio=0.75, plot_dir="")
    with pytest.warns(UserWarning, match=r"WHOLE LAYERS DEAD .*features\.relu3 \(all 4\)"):
        make_trainer(max_epochs=1, limit_train_batches=1, callbacks=[callback]).fit(module, datamodule=tiny_data())
    assert callback.dead_after_cut["features.relu3"] == (4, 4)  # 12 of 16 cut (the cap), the 4 kept are dead


def _bn_scales_after_one_step(module_wd: float, bn_weight_decay: float | None) -> torch.Tensor:
    torch.manual_seed(0)
    module = tiny_module(tiny_vgg(), lr=0.5, weight_decay=module_wd)
    with torch.no_grad():
        module.net.features.bn1.weight.fill_(2.0)  # a large scale: weight decay moves it visibly
    callback = NetworkSlimming(sparsity_lambda=0.0, prune=False, bn_weight_decay=bn_weight_decay, plot_dir="")
    from tests.helpers import quiet_trainer

    trainer = quiet_trainer("/tmp", max_steps=1, limit_train_batches=1, callbacks=[callback])
    torch.manual_seed(1)
    trainer.fit(module, datamodule=tiny_data())
    return module.net.features.bn1.weight.detach().clone()


def test_bn_weight_decay_replaces_the_optimizers_decay_on_bn_only() -> None:
    plain = _bn_scales_after_one_step(0.0, None)
    own = _bn_scales_after_one_step(0.1, 0.0)  # the optimizer decays by 0.1, the BN scales by 0
    decayed = _bn_scales_after_one_step(0.1, None)
    assert torch.allclose(own, plain, atol=1e-6)
    assert not torch.allclose(decayed, plain, atol=1e-3)


def test_bn_weight_decay_refuses_decoupled_weight_decay(make_trainer) -> None:
    module = tiny_module(tiny_vgg())
    module.optim_config = {"name": "adamw", "lr": 0.01, "weight_decay": 1e-2}
    callback = NetworkSlimming(sparsity_lambda=1e-4, prune=False, bn_weight_decay=1e-4, plot_dir="")
    with pytest.raises(ValueError, match="AdamW decouples it"):
        make_trainer(max_steps=1, limit_train_batches=1, callbacks=[callback]).fit(module, datamodule=tiny_data())


def test_slimming_leaves_stream_writers_to_channel_selection(make_trainer) -> None:
    writers = {"bn1", "layer1.0.bn2", "layer2.0.bn2", "layer3.0.bn2"}  # the stem and each block's last BN
    paper = NetworkSlimming(sparsity_lambda=0.0, pruning_ratio=0.3, residual="select", plot_dir="")
    make_trainer(max_steps=1, limit_train_batches=1, callbacks=[paper]).fit(tiny_module(tiny_resnet()),
                                                                            datamodule=tiny_data())
    pruned = {name for name, layer in paper.plan.layers.items() if layer.type == "BatchNorm2d"
              and layer.slots["channels"].removed}
    assert pruned and not pruned & writers
    every = NetworkSlimming(sparsity_lambda=0.0, pruning_ratio=0.3, residual="select", prune_stream_writers=True,
                            plot_dir="")
    make_trainer(max_steps=1, limit_train_batches=1, callbacks=[every]).fit(tiny_module(tiny_resnet()),
                                                                            datamodule=tiny_data())
    assert {bns[0] for bns in every.groups.values()} >= writers


def _skew(net: nn.Module, layer: str) -> None:
    """Every BN scale 1 and every conv filter equal in norm, except ``layer``'s BN and conv: far below the rest."""
    with torch.no_grad():
        for name, m in net.named_modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1e-6 if name == f"features.bn{layer}" else 1.0)
            if isinstance(m, nn.Conv2d):
                m.weight.fill_(1e-6 if name == f"features.conv{layer}" else 1.0)


@pytest.mark.parametrize("make_callback", [
    lambda cap: NetworkSlimming(sparsity_lambda=0.0, pruning_ratio=0.25, max_pruning_ratio=cap, plot_dir=""),
    lambda cap: L1FilterPruning(pruning_ratio=0.9, max_pruning_ratio=cap),
    lambda cap: FPGMPruning(pruning_ratio=0.9, max_pruning_ratio=cap, soft_mode="exact"),
], ids=["slimming", "l1", "fpgm"])
def test_every_callback_caps_each_layer_by_max_pruning_ratio(make_trainer, make_callback) -> None:
    widths = {}
    for cap in (1.0, 0.5):
        module = tiny_module(tiny_vgg(), lr=1e-12)
        _skew(module.net, "3")  # a 16-channel layer far below the others: a global threshold would empty it
        callback = make_callback(cap)
        make_trainer(max_steps=1, limit_train_batches=1, callbacks=[callback]).fit(module, datamodule=tiny_data())
        widths[cap] = {n: m.out_channels for n, m in module.net.named_modules() if isinstance(m, nn.Conv2d)}
        removed = sum(len(g.removed) for g in callback.plan.groups)
        if isinstance(callback, NetworkSlimming):
            assert removed == int(48 * 0.25)  # the global count holds with or without the cap
    assert widths[1.0]["features.conv3"] < 8  # uncapped: the skewed layer loses most of its channels
    assert all(widths[0.5][n] >= full // 2 for n, full in (("features.conv1", 8), ("features.conv2", 8),
                                                             ("features.conv3", 16), ("features.conv4", 16)))


@pytest.mark.parametrize("make_callback", [
    lambda: NetworkSlimming(sparsity_lambda=0.0, pruning_ratio=0.4, round_to="auto", plot_dir=""),
    lambda: L1FilterPruning(pruning_ratio=0.4, round_to="auto"),
    lambda: FPGMPruning(pruning_ratio=0.4, round_to="auto", soft_mode="exact"),
], ids=["slimming", "l1", "fpgm"])
def test_round_to_auto_keeps_the_measured_fastest_multiple(make_trainer, monkeypatch, make_callback) -> None:
    from lightning_compress.cost import Latency
    from lightning_compress.pruning import alignment

    calls: list[list[str]] = []

    def timer(runners, batch_size, device, warmup, repeats, threads):  # 8 is clearly the fastest
        calls.append(sorted(runners))
        medians = {"1": 10.0, "8": 5.0, "16": 7.0}
        return {k: Latency(medians[k], medians[k] - 0.1, medians[k] + 0.1, batch_size, str(device), repeats, warmup,
                           1, "fake") for k in runners}

    monkeypatch.setattr(alignment, "interleaved_latency", timer)
    callback = make_callback()
    module = tiny_module(tiny_vgg())
    make_trainer(max_epochs=2, limit_train_batches=1, callbacks=[callback]).fit(module, datamodule=tiny_data())
    assert len(calls) == 1  # timed once; FPGM's later selections reuse the choice
    assert callback.alignment["round_to"] == 8 and callback.alignment["verdict"] == "faster"
    widths = [m.out_channels for m in module.net.modules() if isinstance(m, nn.Conv2d)]
    assert all(w % 8 == 0 for w in widths)
    restored = make_callback()
    restored.load_state_dict(callback.state_dict())
    assert restored.alignment == callback.alignment and restored.selection_args()["round_to"] == 8
