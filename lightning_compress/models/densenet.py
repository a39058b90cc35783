"""DenseNet for CIFAR (Huang et al., CVPR 2017) with basic BN-ReLU-conv3x3 layers, as pruned by Network Slimming.

Depth 3n+4: a 3x3 stem conv, three dense blocks of n layers, each BN -> ReLU -> conv3x3 (-> k channels) whose
output is concatenated to its input, two transitions BN -> ReLU -> conv1x1 (no compression) -> 2x2 average pool,
then BN -> ReLU -> global average pool -> linear.

The stem width differs between the two codes: the Network Slimming PyTorch code (Eric-mingjie/network-slimming,
``models/densenet.py``) uses 2k = 24 channels, the original DenseNet Lua code (liuzhuang13/DenseNet, early
``densenet.lua``) 16. The Slimming paper's Table 1 size of DenseNet-40 (1.02M parameters, 5.33e8 FLOPs) is the
16-channel one: with ``stem_channels=16`` this project counts 1.020M parameters and 5.30e8 FLOPs (= 2 x MACs), with
24 it counts 1.059M and 5.66e8.

Modules are named ``conv1``, ``dense<b>.<i>.{bn1,conv1}``, ``trans<t>.{bn,conv}``, ``bn``, ``fc``, so pruning
settings can address them with globs such as ``dense1.*.bn1``.
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_compress.models.resnet_cifar import add_preact_head, init_conv_bn, preact_head

STAGES = 3


class DenseLayer(nn.Module):
    """BN-ReLU-conv3x3 to ``growth_rate`` channels, concatenated after the input: ``in + growth_rate`` channels."""

    def __init__(self, in_channels: int, growth_rate: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv1(self.relu1(self.bn1(x)))], 1)


class Transition(nn.Module):
    """BN-ReLU-conv1x1 (same width) then a 2x2 average pool."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(self.relu(self.bn(x))))


class DenseNet(nn.Module):
    """DenseNet-(3n+4) for 32x32 inputs: ``conv1``, ``dense1``, ``trans1``, ``dense2``, ``trans2``, ``dense3``,
    ``bn``, ``fc``. ``stem_channels`` defaults to ``2 * growth_rate``."""

    def __init__(self, depth: int = 40, growth_rate: int = 12, num_classes: int = 10, in_channels: int = 3,
                 stem_channels: int | None = None) -> None:
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 7 or (depth - 4) % 3:
            raise ValueError(f"`depth` must be 3n+4 with n >= 1 (7, 10, ..., 40, 100), got {depth!r}.")
        _check_positive_int("growth_rate", growth_rate)
        if stem_channels is None:
            stem_channels = 2 * growth_rate
        _check_positive_int("stem_channels", stem_channels)
        layers_per_block = (depth - 4) // 3
        self.depth = depth
        self.growth_rate = growth_rate
        channels = stem_channels
        self.conv1 = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        for stage in range(1, STAGES + 1):
            block = []
            for _ in range(layers_per_block):
                block.append(DenseLayer(channels, growth_rate))
                channels += growth_rate
            self.add_module(f"dense{stage}", nn.Sequential(*block))
            if stage < STAGES:
                self.add_module(f"trans{stage}", Transition(channels))
        add_preact_head(self, channels, num_classes)
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.trans1(self.dense1(self.conv1(x)))
        x = self.dense3(self.trans2(self.dense2(x)))
        return preact_head(self, x)


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")


def densenet40(num_classes: int = 10, in_channels: int = 3, stem_channels: int = 24) -> DenseNet:
    """DenseNet-40 (k = 12, 12 layers per block, no compression) of Network Slimming for CIFAR.

    ``stem_channels``: 24 as in the authors' PyTorch code; 16 gives the paper's Table 1 size (see the module doc).
    """
    return DenseNet(40, 12, num_classes, in_channels, stem_channels)
