"""Paper architectures: published sizes (within 2%), shapes and argument checks."""

import pytest
import torch

from lightning_compress import models
from lightning_compress.profiling import count_macs, count_params

CIFAR = torch.zeros(1, 3, 32, 32)

# (factory, published params, published MACs); None where the paper gives no number.
PUBLISHED = [
    ("resnet20", 0.27e6, 40.8e6),   # He et al.: 0.27M; FPGM Table 1 baseline FLOPs 4.08e7
    ("resnet32", 0.46e6, 69e6),
    ("resnet56", 0.85e6, 125e6),    # Li et al. Table 1: 8.5e5 params, 1.25e8 FLOPs (= MACs)
    ("resnet110", 1.73e6, 253e6),   # Li et al.: 1.72e6 params, 2.53e8
    ("vgg16", 15.0e6, 313e6),       # Li et al.: 1.5e7 params, 3.13e8
    ("vgg19", 20.04e6, 398e6),      # Liu et al.: 20.04M params, 7.97e8 FLOPs = 2 x 398M MACs
]


@pytest.mark.parametrize(("name", "params", "macs"), PUBLISHED)
def test_published_sizes_within_two_percent(name, params, macs):
    net = getattr(models, name)(num_classes=10)
    assert count_params(net) == pytest.approx(params, rel=0.02)
    assert count_macs(net, CIFAR) == pytest.approx(macs, rel=0.02)


@pytest.mark.parametrize("name", ["resnet8", "resnet14", "resnet26", "resnet20"])
@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_resnet_forward_shapes(name, shortcut):
    net = getattr(models, name)(num_classes=7, shortcut=shortcut)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 7)


@pytest.mark.parametrize("name", ["vgg16", "vgg19"])
def test_vgg_forward_shapes(name):
    assert getattr(models, name)(num_classes=7)(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_option_b_adds_projection_parameters_option_a_does_not():
    a, b = models.resnet20(shortcut="A"), models.resnet20(shortcut="B")
    assert count_params(b) > count_params(a)
    assert not any(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) for m in a.modules())


def test_zero_pad_shortcut_keeps_input_in_the_middle_channels():
    shortcut = models.ZeroPadShortcut(4, 8, stride=2)
    x = torch.randn(1, 4, 4, 4)
    out = shortcut(x)
    assert out.shape == (1, 8, 2, 2)
    assert torch.equal(out[:, 2:6], x[:, :, ::2, ::2])
    assert out[:, :2].abs().sum() == 0 and out[:, 6:].abs().sum() == 0


def test_digits_vgg_runs_on_8x8_single_channel():
    assert models.digits_vgg()(torch.randn(3, 1, 8, 8)).shape == (3, 10)


def test_layer_names_are_addressable_by_globs():
    names = dict(models.vgg16().named_modules())
    assert "features.conv13" in names and "features.bn1" in names
    assert "layer3.8.conv1" in dict(models.resnet56().named_modules())


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: models.CifarResNet(21), "depth"),
        (lambda: models.CifarResNet(20, shortcut="C"), "shortcut"),
        (lambda: models.VGG([16, "X"]), "config"),
        (lambda: models.VGG(["M"]), "config"),
        (lambda: models.VGG([16], head="big"), "head"),
    ],
)
def test_bad_arguments_name_the_argument(build, match):
    with pytest.raises(ValueError, match=match):
        build()
