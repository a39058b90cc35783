"""VGG networks with batch normalisation, as used on CIFAR by the pruning papers.

* ``vgg16``: Li et al. (ICLR 2017) — 13 conv + BN, global 2x2 average pool, then Linear(512, 512) + BN + ReLU +
  Linear(512, classes). 313M MACs and 15.0M parameters on 32x32 inputs.
* ``vgg19``: Network Slimming (ICCV 2017) — 16 conv + BN, 2x2 average pool, Linear(512, classes).
  398M MACs (the paper's "7.97e8 FLOPs" counts 2 FLOPs per MAC) and 20.04M parameters.
* ``vgg11``: the 8-conv VGG-11 configuration of Network Slimming's code with its one-linear head; ``width=0.5``
  halves every layer (``model=vgg11_half``, a network small enough for CPU runs of Network Slimming).
* ``digits_vgg``: a small VGG for the 8x8 digits data set.

Layers are named ``features.conv<i>``/``features.bn<i>`` (1-based, counting convolutions only) so that pruning
settings can address them with plain globs such as ``features.conv1[0-3]``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

VGGConfig = Sequence["int | str"]

VGG11_CONFIG: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512)
VGG16_CONFIG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512,
)
VGG19_CONFIG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512,
)
DIGITS_VGG_CONFIG: tuple[int | str, ...] = (32, 32, "M", 64, 64, "M", 128)


def scale_config(config: VGGConfig, width: float) -> list[int | str]:
    """``config`` with every positive channel count multiplied by ``width`` (rounded, at least 1).

    Other entries (``"M"``, and invalid ones for :func:`make_vgg_features` to reject) are kept as they are.
    """
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"`width` must be a positive number, got {width!r}.")
    return [max(1, round(item * width)) if isinstance(item, int) and item > 0 else item for item in config]


def make_vgg_features(config: VGGConfig, in_channels: int) -> nn.Sequential:
    """Conv3x3-BN-ReLU for every int in ``config`` and a 2x2 max pool for every ``"M"``."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    conv_index = pool_index = 0
    channels = in_channels
    for item in config:
        if item == "M":
            pool_index += 1
            layers[f"pool{pool_index}"] = nn.MaxPool2d(kernel_size=2, stride=2)
            continue
        if not isinstance(item, int) or item <= 0:
            raise ValueError(f"`config` entries must be positive ints or 'M', got {item!r}.")
        conv_index += 1
        layers[f"conv{conv_index}"] = nn.Conv2d(channels, item, kernel_size=3, padding=1, bias=False)
        layers[f"bn{conv_index}"] = nn.BatchNorm2d(item)
        layers[f"relu{conv_index}"] = nn.ReLU(inplace=True)
        channels = item
    return nn.Sequential(layers)


class VGG(nn.Module):
    """A VGG with BN built from a cfg list; the head is ``"slimming"`` (one linear) or ``"li"`` (two linears + BN).

    ``width`` multiplies every convolution's channel count of ``config`` (see :func:`scale_config`).
    """

    def __init__(
        self,
        config: VGGConfig,
        num_classes: int = 10,
        in_channels: int = 3,
        head: str = "slimming",
        hidden_features: int = 512,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        if head not in ("slimming", "li"):
            raise ValueError(f"`head` must be one of ('slimming', 'li'), got {head!r}.")
        config = scale_config(config, width)
        ints = [c for c in config if c != "M"]
        if not ints:
            raise ValueError(f"`config` needs at least one convolution, got {list(config)!r}.")
        self.features = make_vgg_features(config, in_channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        width = int(ints[-1])
        if head == "slimming":
            self.classifier = nn.Sequential(OrderedDict(fc=nn.Linear(width, num_classes)))
        else:
            self.classifier = nn.Sequential(
                OrderedDict(
                    fc1=nn.Linear(width, hidden_features),
                    bn=nn.BatchNorm1d(hidden_features),
                    relu=nn.ReLU(inplace=True),
                    fc2=nn.Linear(hidden_features, num_classes),
                )
            )
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _init_weights(model: nn.Module) -> None:
    """He (MSRA) init for convolutions, unit BN scales, small normal init for linear layers."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)


def vgg11(num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> VGG:
    """VGG-11 (8 conv + BN, one linear) for CIFAR; ``width`` scales every layer (0.5: ``model=vgg11_half``)."""
    return VGG(VGG11_CONFIG, num_classes, in_channels, head="slimming", width=width)


def vgg16(num_classes: int = 10, in_channels: int = 3) -> VGG:
    """VGG-16 of Li et al. (ICLR 2017) for CIFAR."""
    return VGG(VGG16_CONFIG, num_classes, in_channels, head="li")


def vgg19(num_classes: int = 10, in_channels: int = 3) -> VGG:
    """VGG-19 of Network Slimming (Liu et al., ICCV 2017) for CIFAR."""
    return VGG(VGG19_CONFIG, num_classes, in_channels, head="slimming")


def digits_vgg(num_classes: int = 10, in_channels: int = 1) -> VGG:
    """A small VGG for the 8x8 digits data set (two pooling stages: 8 -> 4 -> 2)."""
    return VGG(DIGITS_VGG_CONFIG, num_classes, in_channels, head="slimming")
