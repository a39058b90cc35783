"""Network Slimming's residual and dense paper settings: every BN on its own, channel selection where a BN reads the
shared tensor, the stream's width kept, the paper's configs composing to the paper's recipe."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from lightning_compress.cost import count_macs, count_params
from lightning_compress.modules import ImageClassifier
from lightning_compress.pruning import prune
from lightning_compress.pruning.boundaries import SELECT

PAPER = {  # Liu et al. 2017, Table 1 (CIFAR-10): pruned ratio -> (params reduction, FLOPs reduction)
    "resnet164_cifar10_slimming_40": (0.4, 14.9, 23.7),
    "resnet164_cifar10_slimming_60": (0.6, 35.2, 44.9),
    "densenet40_cifar10_slimming_40": (0.4, 35.7, 28.4),
    "densenet40_cifar10_slimming_70": (0.7, 65.2, 55.0),
}


@pytest.mark.parametrize("experiment", sorted(PAPER))
def test_paper_setting_prunes_every_bn_on_its_own_and_keeps_the_streams(compose_config, experiment: str) -> None:
    ratio, _, _ = PAPER[experiment]
    cfg = compose_config(f"+experiment={experiment}")
    assert cfg.method.callback.sparsity_lambda == 1e-5 and cfg.method.callback.residual == "select"
    assert cfg.method.callback.pruning_ratio == ratio and cfg.data.batch_size == 64
    assert cfg.method.compress.epochs == cfg.method.finetune.epochs == 160
    net = instantiate(cfg.model)
    torch.manual_seed(0)
    with torch.no_grad():  # gamma "after sparsity training": a fixed random draw (see the closing note of issue 8)
        for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.weight.uniform_(0.0, 1.0)
    x = torch.zeros(1, 3, 32, 32)
    params, macs = count_params(net), count_macs(net, x)
    writers = {n: m.out_channels for n, m in net.named_modules()  # the convs whose outputs form the streams
               if isinstance(m, nn.Conv2d) and (n == "conv1" or n.endswith(("conv3", "shortcut")) or ".dense" in
                                                f".{n}" and n.endswith("conv1") or n.startswith("trans"))}
    callback = instantiate(cfg.method.callback, input_shape=[3, 32, 32], verbose=False)
    callback.setup(None, ImageClassifier(net, 10), "validate")
    callback.example_inputs = x
    plan = callback.select()
    prune(net, plan)
    assert plan.num_removed > 0
    selecting = [n for n, m in net.named_modules() if hasattr(m, SELECT)]
    assert selecting and all(n.endswith("bn1") or n in ("bn", "trans1.bn", "trans2.bn") for n in selecting)
    assert len(selecting) > 10
    assert writers == {n: net.get_submodule(n).out_channels for n in writers}  # the streams keep their width
    assert hasattr(net.bn, SELECT)  # the final BN selects, as the paper's channel_selection before the head
    with torch.no_grad():
        assert net.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert count_params(net) < params and count_macs(net, x) < macs
