"""Paper architectures as plain ``nn.Module``s (they know nothing about compression)."""

from lightning_compress.models.resnet_cifar import (
    BasicBlock,
    CifarResNet,
    ZeroPadShortcut,
    resnet8,
    resnet14,
    resnet20,
    resnet26,
    resnet32,
    resnet56,
    resnet110,
)
from lightning_compress.models.vgg import VGG, VGG16_CONFIG, VGG19_CONFIG, digits_vgg, vgg16, vgg19

__all__ = [
    "VGG",
    "VGG16_CONFIG",
    "VGG19_CONFIG",
    "BasicBlock",
    "CifarResNet",
    "ZeroPadShortcut",
    "digits_vgg",
    "resnet8",
    "resnet14",
    "resnet20",
    "resnet26",
    "resnet32",
    "resnet56",
    "resnet110",
    "vgg16",
    "vgg19",
]
