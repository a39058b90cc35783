"""Paper architectures as plain ``nn.Module``s (they know nothing about compression)."""

from lightning_compress.models.densenet import DenseLayer, DenseNet, Transition, densenet40
from lightning_compress.models.preresnet import PreActBottleneck, PreActResNet, resnet164
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
from lightning_compress.models.vgg import (
    VGG,
    VGG11_CONFIG,
    VGG16_CONFIG,
    VGG19_CONFIG,
    digits_vgg,
    scale_config,
    vgg11,
    vgg16,
    vgg19,
)

__all__ = [
    "VGG",
    "VGG11_CONFIG",
    "VGG16_CONFIG",
    "VGG19_CONFIG",
    "BasicBlock",
    "CifarResNet",
    "DenseLayer",
    "DenseNet",
    "PreActBottleneck",
    "PreActResNet",
    "Transition",
    "ZeroPadShortcut",
    "densenet40",
    "digits_vgg",
    "resnet8",
    "resnet14",
    "resnet20",
    "resnet26",
    "resnet32",
    "resnet56",
    "resnet110",
    "resnet164",
    "scale_config",
    "vgg11",
    "vgg16",
    "vgg19",
]
