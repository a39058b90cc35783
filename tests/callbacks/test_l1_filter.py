"""L1FilterPruning: one-shot physical pruning in setup, the paper's criterion and counts, paper FLOPs reductions."""

from __future__ import annotations

import copy

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from lightning_compress.callbacks import L1FilterPruning
from lightning_compress.config import CONFIG_DIR, register_resolvers
from lightning_compress.cost import count_macs
from lightning_compress.models import resnet_cifar, vgg
from tests.helpers import tiny_data, tiny_module, tiny_vgg


def _prune_once(net, callback, input_shape=(3, 32, 32)):
    """Run the callback's setup on a bare module (no Trainer fit) and return it."""
    module = tiny_module(net)
    callback.input_shape = tuple(input_shape)

    class _Trainer:  # the attributes setup/apply_plan read
        world_size, is_global_zero, loggers, global_step, datamodule = 1, True, [], 0, None

    callback.setup(_Trainer(), module, "fit")
    return module


def test_prunes_the_smallest_l1_filters_in_setup_before_the_optimizer(make_trainer):
    torch.manual_seed(0)
    module = tiny_module()
    conv1 = module.net.features.conv1
    with torch.no_grad():
        conv1.weight.mul_(torch.arange(1, 9).float().view(8, 1, 1, 1))  # filter j has norm ~ (j+1)
    expected = conv1.weight.detach().abs().flatten(1).sum(1).argsort(descending=True)[:4].sort().values
    kept_weight = conv1.weight.detach()[expected].clone()
    callback = L1FilterPruning(pruning_ratio={"features.conv1": 0.5}, verbose=False)
    trainer = make_trainer(callbacks=[callback], max_steps=0)
    trainer.fit(module, datamodule=tiny_data())
    assert module.net.features.conv1.out_channels == 4
    assert module.net.features.bn1.num_features == 4 and module.net.features.conv2.in_channels == 4
    torch.testing.assert_close(module.net.features.conv1.weight, kept_weight)
    assert callback.plan.removed("features.conv1", "out") == sorted(set(range(8)) - set(expected.tolist()))
    assert module.net.features.conv3.out_channels == 16  # not selected by the glob
    assert callback.profile["after"]["macs"] < callback.profile["before"]["macs"]


def test_fit_after_pruning_trains_the_small_model(make_trainer):
    module = tiny_module()
    callback = L1FilterPruning(pruning_ratio=0.5, verbose=False)
    trainer = make_trainer(callbacks=[callback], limit_train_batches=2)
    trainer.fit(module, datamodule=tiny_data())
    weight = module.net.features.conv4.weight
    assert weight.shape[0] == 8  # the optimizer was built on the pruned parameters and updated them
    assert any(p is weight for group in trainer.optimizers[0].param_groups for p in group["params"])
    assert trainer.optimizers[0].state[weight]["momentum_buffer"].shape == weight.shape
    assert callback.finished


@pytest.mark.parametrize("criterion", ["l1", "l2", "random", "largest"])
def test_ablation_criteria(criterion):
    torch.manual_seed(0)
    net = vgg.VGG((8, 8), num_classes=4, in_channels=1)
    with torch.no_grad():  # filters 0-3: one entry 4..7 (L1 = L2 = 4..7); 4-7: nine entries 0.6..0.75 (L1 5.4..6.75,
        weight = net.features.conv1.weight  # L2 1.8..2.25): L1 and L2 disagree on which filters are smallest
        weight.zero_()
        for i, value in enumerate((4.0, 5.0, 6.0, 7.0)):
            weight[i, 0, 1, 1] = value
        for i, value in zip(range(4, 8), (0.6, 0.65, 0.7, 0.75)):
            weight[i].fill_(value)
    callback = L1FilterPruning(pruning_ratio={"features.conv1": 0.5}, criterion=criterion, verbose=False)
    _prune_once(net, callback, (1, 8, 8))
    removed = callback.plan.removed("features.conv1", "out")
    assert len(removed) == 4
    if criterion == "l1":
        assert removed == [0, 1, 4, 5]  # L1: 4, 5, 5.4, 5.85
    if criterion == "l2":
        assert removed == [4, 5, 6, 7]  # L2: 1.8 .. 2.25 below 4
    if criterion == "largest":
        assert removed == [2, 3, 6, 7]  # the largest L1: 6, 6.3, 6.75, 7
    if criterion == "random":  # seeded: the same selection again
        again = L1FilterPruning(pruning_ratio={"features.conv1": 0.5}, criterion="random", verbose=False)
        _prune_once(vgg.VGG((8, 8), num_classes=4, in_channels=1), again, (1, 8, 8))
        assert again.plan.removed("features.conv1", "out") == removed


def test_keeps_int_n_times_one_minus_ratio_like_the_reference_code():
    net = tiny_vgg()  # widths 8, 8, 16, 16
    for ratio, kept in ((0.1, [7, 7, 14, 14]), (0.6, [3, 3, 6, 6])):  # int(n * (1 - ratio))
        callback = L1FilterPruning(pruning_ratio=ratio, input_shape=[1, 8, 8], verbose=False)
        callback.setup(None, tiny_module(copy.deepcopy(net)), "validate")
        callback.example_inputs = torch.zeros(1, 1, 8, 8)
        plan = callback.select()
        assert [8 - len(plan.removed(f"features.conv{i}", "out")) if i < 3 else
                16 - len(plan.removed(f"features.conv{i}", "out")) for i in range(1, 5)] == kept


def _experiment_callback(name: str) -> tuple[L1FilterPruning, dict]:
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"+experiment={name}"])
    args = OmegaConf.to_container(cfg.method.callback, resolve=True)
    args.pop("_target_")
    return L1FilterPruning(**{**args, "verbose": False}), args


@pytest.mark.parametrize(("experiment", "build", "paper_reduction"), [
    ("vgg16_cifar10_l1_a", vgg.vgg16, 34.2),
    pytest.param("resnet56_cifar10_l1_a", resnet_cifar.resnet56, 10.4, marks=pytest.mark.slow),
    ("resnet56_cifar10_l1_b", resnet_cifar.resnet56, 27.6),
])
def test_paper_configs_reproduce_the_paper_flops_reduction(experiment, build, paper_reduction):
    callback, _ = _experiment_callback(experiment)
    net = build()
    example = torch.zeros(1, 3, 32, 32)
    before = count_macs(net, example)
    _prune_once(net, callback)
    reduction = 100.0 * (1 - count_macs(net, example) / before)
    assert reduction == pytest.approx(paper_reduction, abs=1.5)


@pytest.mark.slow
@pytest.mark.parametrize(("experiment", "paper_reduction"), [
    ("resnet110_cifar10_l1_a", 15.9), ("resnet110_cifar10_l1_b", 38.6)])
def test_resnet110_configs_reproduce_the_paper_flops_reduction(experiment, paper_reduction):
    callback, _ = _experiment_callback(experiment)
    net = resnet_cifar.resnet110()
    example = torch.zeros(1, 3, 32, 32)
    before = count_macs(net, example)
    _prune_once(net, callback)
    assert 100.0 * (1 - count_macs(net, example) / before) == pytest.approx(paper_reduction, abs=1.5)


def test_resnet_config_prunes_only_first_convs_and_skips_the_paper_layers():
    callback, args = _experiment_callback("resnet56_cifar10_l1_b")
    net = resnet_cifar.resnet56()
    _prune_once(net, callback)
    touched = {name for name, lp in callback.plan.layers.items() if "out" in lp.slots}
    assert touched and all(name.endswith(".conv1") and name != "conv1" for name in touched)
    assert not touched & set(args["ignored_layers"])
    assert net.layer1[0].conv1.out_channels == 6 and net.layer2[1].conv1.out_channels == 22
    assert net.layer3[1].conv1.out_channels == 57 and net.layer1[7].conv1.out_channels == 16
