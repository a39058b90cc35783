"""CIFAR ResNets of He et al. (2016): depth 6n+2, three stages of n basic blocks with 16/32/64 channels.

ResNet-20/32/56/110 are the pruning papers' networks (ResNet-56: 0.85M parameters, 125M MACs); ResNet-8/14/26 are
the FSP paper's students and teacher. ``shortcut="A"`` is the parameter-free zero-padding shortcut of the paper;
``"B"`` a 1x1 convolution + BN projection where the shape changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

STAGE_WIDTHS = (16, 32, 64)


class ZeroPadShortcut(nn.Module):
    """Option A: subsample spatially by ``stride`` and zero-pad channels equally on both sides."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels or (out_channels - in_channels) % 2:
            raise ValueError(
                f"`out_channels` must exceed `in_channels` by an even number, got {in_channels} -> {out_channels}."
            )
        self.stride = stride
        self.pad = (out_channels - in_channels) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus a shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            if shortcut == "A":
                self.shortcut = ZeroPadShortcut(in_channels, out_channels, stride)
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs: stem conv, ``layer1..3``, global average pool, ``fc``."""

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3, shortcut: str = "A") -> None:
        super().__init__()
        if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"`depth` must be 6n+2 with n >= 1 (8, 14, 20, 26, 32, 56, 110, ...), got {depth!r}.")
        if shortcut not in ("A", "B"):
            raise ValueError(f"`shortcut` must be 'A' (zero-pad) or 'B' (projection), got {shortcut!r}.")
        blocks = (depth - 2) // 6
        self.depth = depth
        self.conv1 = nn.Conv2d(in_channels, STAGE_WIDTHS[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STAGE_WIDTHS[0])
        self.relu = nn.ReLU(inplace=True)
        channels = STAGE_WIDTHS[0]
        for stage, width in enumerate(STAGE_WIDTHS, start=1):
            layers = []
            for index in range(blocks):
                stride = 2 if stage > 1 and index == 0 else 1
                layers.append(BasicBlock(channels, width, stride, shortcut))
                channels = width
            self.add_module(f"layer{stage}", nn.Sequential(*layers))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def init_conv_bn(model: nn.Module) -> None:
    """He (fan-out) normal init for convolutions, BN weight 1 and bias 0; linear layers keep PyTorch's default."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def add_preact_head(model: nn.Module, channels: int, num_classes: int) -> None:
    """The pre-activation networks' head as attributes ``bn``, ``relu``, ``pool``, ``fc`` of ``model`` (their names
    are the configs' and the checkpoints'); :func:`preact_head` runs it."""
    model.bn = nn.BatchNorm2d(channels)
    model.relu = nn.ReLU(inplace=True)
    model.pool = nn.AdaptiveAvgPool2d(1)
    model.fc = nn.Linear(channels, num_classes)


def preact_head(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """BN-ReLU, global average pooling, the linear classifier (see :func:`add_preact_head`)."""
    return model.fc(torch.flatten(model.pool(model.relu(model.bn(x))), 1))


def _factory(depth: int):
    def build(num_classes: int = 10, in_channels: int = 3, shortcut: str = "A") -> CifarResNet:
        return CifarResNet(depth, num_classes, in_channels, shortcut)

    build.__name__ = f"resnet{depth}"
    build.__doc__ = f"CIFAR ResNet-{depth} ({(depth - 2) // 6} basic blocks per stage)."
    return build


resnet8 = _factory(8)
resnet14 = _factory(14)
resnet20 = _factory(20)
resnet26 = _factory(26)
resnet32 = _factory(32)
resnet56 = _factory(56)
resnet110 = _factory(110)
