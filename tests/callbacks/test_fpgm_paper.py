"""FPGM as in the paper on ResNet-56: every conv pruned on its own at 40%, widths 10/20/39, the paper's FLOPs count."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lightning_compress.callbacks import FPGMPruning
from lightning_compress.cost import count_macs
from lightning_compress.models import CifarResNet, resnet56
from lightning_compress.modules import ImageClassifier
from lightning_compress.pruning import prune

STAGE_WIDTHS = {"layer1": 16, "layer2": 32, "layer3": 64}


def paper_fractional_macs(net: nn.Module, x: torch.Tensor, rate: float) -> float:
    """The FPGM authors' FLOPs count (their functions/cal_flop.py, written for ImageNet ResNets; applied here to the
    CIFAR ones): a conv counts (1 - rate)^2 of its MACs when its input is pruned too (every block's second conv, and
    both convs of the very first block, which reads the pruned stem), (1 - rate) when it reads the full-width stream
    (the stem and the first conv of every other block); the head counts in full. Returns the fraction removed."""
    per_layer: dict[str, int] = {}

    def hook(name: str):
        def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            per_layer[name] = output[0].numel() * math.prod(getattr(module, "kernel_size", (1,))) * (
                module.in_channels // module.groups if isinstance(module, nn.Conv2d) else module.in_features)
        return record

    layers = [(n, m) for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    handles = [m.register_forward_hook(hook(n)) for n, m in layers]
    with torch.no_grad():
        net.eval()(x)
    for handle in handles:
        handle.remove()
    total = 0.0
    for name, macs in per_layer.items():
        if name.endswith("conv2") or name == "layer1.0.conv1":
            total += macs * (1 - rate) ** 2
        elif name == "fc":
            total += macs
        else:  # the stem and the first conv of every block read the full-width stream
            total += macs * (1 - rate)
    return 1 - total / sum(per_layer.values())


def test_resnet56_at_40_percent_per_layer_keeps_10_20_39_in_every_conv() -> None:
    net, x = resnet56(), torch.zeros(1, 3, 32, 32)
    callback = FPGMPruning(0.4, residual="select", input_shape=[3, 32, 32], verbose=False)
    callback.setup(None, ImageClassifier(net, 10), "fit")  # input_shape given: setup needs no trainer
    before = count_macs(net, x)
    paper_cut = paper_fractional_macs(net, x, 0.4)
    prune(net, callback.select())
    widths = {name: m.out_channels for name, m in net.named_modules() if isinstance(m, nn.Conv2d)}
    assert widths.pop("conv1") == 10
    for name, width in widths.items():
        full = STAGE_WIDTHS[name.split(".")[0]]
        assert width == full - int(full * 0.4), name  # 10 / 20 / 39
    assert net.fc.in_features == 64  # the residual stream keeps its width
    cut = 1 - count_macs(net, x) / before
    assert 0.49 < cut < 0.51, cut  # integer widths, first convs reading the full stream
    assert abs(paper_cut - 0.526) < 0.001, paper_cut  # the paper's Table 1: -52.6% FLOPs
    with torch.no_grad():
        assert net.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(("depth", "paper"), [(20, 0.540), (56, 0.526), (110, 0.523)])
def test_the_papers_flops_reductions_come_from_its_fractional_count(depth: int, paper: float) -> None:
    # Table 1 of the paper at 40%: ResNet-20 -54.0%, ResNet-56 -52.6%, ResNet-110 -52.3% FLOPs
    net = CifarResNet(depth)
    assert abs(paper_fractional_macs(net, torch.zeros(1, 3, 32, 32), 0.4) - paper) < 0.001
