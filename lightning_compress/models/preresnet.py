"""Pre-activation bottleneck ResNet for CIFAR (He et al., ECCV 2016), as pruned by Network Slimming (ICCV 2017).

Depth 9n+2: a 3x3 stem conv (3 -> 16, no BN after it), three stages of n bottlenecks with 16/32/64 planes (outputs
64/128/256 channels), then BN -> ReLU -> global average pool -> linear. ResNet-164 (n = 18): 1.70M parameters and
4.99e8 FLOPs in the Network Slimming paper's Table 1 (FLOPs = 2 x MACs of this project's counter).

Each block is BN -> ReLU -> conv1x1 -> BN -> ReLU -> conv3x3 (stride) -> BN -> ReLU -> conv1x1 (4 x planes); the
block output is that plus the shortcut, with no ReLU after the add. The shortcut is a strided 1x1 conv (no BN) on
the block input where the shape changes, the identity otherwise. The network has no channel-selection layers: what
each block reads of the shared stream is the pruning engine's business.

Modules are named ``conv1``, ``layer<s>.<i>.{bn1,conv1,bn2,conv2,bn3,conv3,shortcut}``, ``bn``, ``fc``.
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_compress.models.resnet_cifar import STAGE_WIDTHS, add_preact_head, init_conv_bn, preact_head

EXPANSION = 4


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv1x1, BN-ReLU-conv3x3 (``stride``), BN-ReLU-conv1x1 to ``4 * planes``, plus the shortcut."""

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = EXPANSION * planes
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.relu3 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu1(self.bn1(x)))
        out = self.conv2(self.relu2(self.bn2(out)))
        out = self.conv3(self.relu3(self.bn3(out)))
        return out + self.shortcut(x)


class PreActResNet(nn.Module):
    """Pre-activation bottleneck ResNet-(9n+2) for 32x32 inputs: ``conv1``, ``layer1..3``, ``bn``, ``fc``."""

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 11 or (depth - 2) % 9:
            raise ValueError(f"`depth` must be 9n+2 with n >= 1 (11, 20, 29, ..., 164), got {depth!r}.")
        blocks = (depth - 2) // 9
        self.depth = depth
        self.conv1 = nn.Conv2d(in_channels, STAGE_WIDTHS[0], 3, padding=1, bias=False)
        channels = STAGE_WIDTHS[0]
        for stage, planes in enumerate(STAGE_WIDTHS, start=1):
            layers = []
            for index in range(blocks):
                stride = 2 if stage > 1 and index == 0 else 1
                layers.append(PreActBottleneck(channels, planes, stride))
                channels = EXPANSION * planes
            self.add_module(f"layer{stage}", nn.Sequential(*layers))
        add_preact_head(self, channels, num_classes)
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        return preact_head(self, x)


def resnet164(num_classes: int = 10, in_channels: int = 3) -> PreActResNet:
    """Pre-activation ResNet-164 (18 bottlenecks per stage) of Network Slimming for CIFAR."""
    return PreActResNet(164, num_classes, in_channels)
