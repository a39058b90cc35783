"""Small versions of the architecture families the engine must support (tiny widths, 8x8-16x16 inputs)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def cbr(cin: int, cout: int, k: int = 3, s: int = 1, g: int = 1, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(cout), act())


class Bottleneck(nn.Module):
    """ResNet-50 style bottleneck; ``groups > 1`` makes it ResNeXt."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


class BottleneckResNet(nn.Module):
    def __init__(self, widths=(8, 16), mid_mult: float = 0.5, blocks: int = 2, groups: int = 1,
                 num_classes: int = 5) -> None:
        super().__init__()
        self.stem = cbr(3, widths[0])
        layers, cin = [], widths[0]
        for i, w in enumerate(widths):
            mid = max(groups * 2, int(w * mid_mult) // groups * groups)
            for b in range(blocks):
                layers.append(Bottleneck(cin, mid, w, 2 if (b == 0 and i > 0) else 1, groups))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


def resnext() -> BottleneckResNet:
    return BottleneckResNet(widths=(16, 32), mid_mult=1.0, groups=4)


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, r: int = 4, gate: type[nn.Module] = nn.Hardsigmoid) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(c, max(2, c // r), 1)
        self.fc2 = nn.Conv2d(max(2, c // r), c, 1)
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = self.gate(self.fc2(F.relu(self.fc1(s))))
        return x * s


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int, se: bool, act: type[nn.Module]) -> None:
        super().__init__()
        hid = cin * expand
        layers: list[nn.Module] = [cbr(cin, hid, 1, act=act)] if expand != 1 else []
        layers.append(cbr(hid, hid, 3, stride, g=hid, act=act))
        if se:
            layers.append(SqueezeExcite(hid))
        layers += [nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_res else out


class MobileNet(nn.Module):
    """v2 (ReLU6, no SE) or v3 style (hardswish, SE with hardsigmoid)."""

    def __init__(self, v3: bool = False, num_classes: int = 5) -> None:
        super().__init__()
        act = nn.Hardswish if v3 else nn.ReLU6
        cfg = [(8, 1, 1, False), (12, 2, 3, v3), (12, 1, 3, v3), (16, 2, 4, v3), (16, 1, 4, v3)]
        layers: list[nn.Module] = [cbr(3, 8, 3, 1, act=act)]
        cin = 8
        for cout, s, e, se in cfg:
            layers.append(InvertedResidual(cin, cout, s, e, se, act))
            cin = cout
        layers.append(cbr(cin, 32, 1, act=act))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(32, 24), act(), nn.Dropout(0.2), nn.Linear(24, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.classifier(x)


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, 2 * growth, 1, bias=False)
        self.norm2, self.conv2 = nn.BatchNorm2d(2 * growth), nn.Conv2d(2 * growth, growth, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return torch.cat([x, out], 1)


class DenseNet(nn.Module):
    def __init__(self, growth: int = 4, num_classes: int = 5) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        c = 8
        block1 = []
        for _ in range(3):
            block1.append(DenseLayer(c, growth))
            c += growth
        self.block1 = nn.Sequential(*block1)
        self.trans = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2))
        c //= 2
        self.block2 = nn.Sequential(DenseLayer(c, growth), DenseLayer(c + growth, growth))
        c += 2 * growth
        self.norm = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.trans(self.block1(self.conv0(x))))
        x = F.relu(self.norm(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(b, -1, h, w)


def channel_shuffle_tv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """torchvision's form: views back with the width read from the *pre-shuffle* tensor."""
    batchsize, num_channels, height, width = x.size()
    x = x.view(batchsize, groups, num_channels // groups, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batchsize, num_channels, height, width)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit (torchvision layout): stride 1 splits with chunk, stride 2 has two branches."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        bf = cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                nn.Conv2d(cin, bf, 1, bias=False), nn.BatchNorm2d(bf), nn.ReLU(inplace=True))
        else:
            self.branch1 = nn.Sequential()
        bin_ = cin if stride > 1 else bf
        self.branch2 = nn.Sequential(
            nn.Conv2d(bin_, bf, 1, bias=False), nn.BatchNorm2d(bf), nn.ReLU(inplace=True),
            nn.Conv2d(bf, bf, 3, stride, 1, groups=bf, bias=False), nn.BatchNorm2d(bf),
            nn.Conv2d(bf, bf, 1, bias=False), nn.BatchNorm2d(bf), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleUnitSlice(ShuffleUnit):
    """Variant splitting with ``x[:, : c // 2]`` computed from the tensor's size (common hand-written form)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            c = x.size(1) // 2
            out = torch.cat((x[:, :c], self.branch2(x[:, c:])), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle_tv(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, unit: type[ShuffleUnit] = ShuffleUnit, num_classes: int = 5) -> None:
        super().__init__()
        self.conv1 = cbr(3, 8, 3, 1)
        self.stage2 = nn.Sequential(unit(8, 16, 2), unit(16, 16, 1), unit(16, 16, 1))
        self.stage3 = nn.Sequential(unit(16, 32, 2), unit(32, 32, 1))
        self.conv5 = cbr(32, 48, 1)
        self.fc = nn.Linear(48, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv5(self.stage3(self.stage2(self.conv1(x))))
        return self.fc(x.mean([2, 3]))


class Inception(nn.Module):
    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pp: int) -> None:
        super().__init__()
        self.b1 = cbr(cin, c1, 1)
        self.b2 = nn.Sequential(cbr(cin, c3r, 1), cbr(c3r, c3, 3))
        self.b3 = nn.Sequential(cbr(cin, c5r, 1), cbr(c5r, c5, 3), cbr(c5, c5, 3))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), cbr(cin, pp, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class GoogLeNet(nn.Module):
    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.pre = cbr(3, 12)
        self.a = Inception(12, 4, 4, 6, 2, 4, 4)
        self.b = Inception(18, 6, 4, 8, 2, 4, 4)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(22, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.b(self.a(self.pre(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class Fire(nn.Module):
    def __init__(self, cin: int, s: int, e1: int, e3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(cin, s, 1)
        self.expand1x1 = nn.Conv2d(s, e1, 1)
        self.expand3x3 = nn.Conv2d(s, e3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.expand1x1(x)), F.relu(self.expand3x3(x))], 1)


class SqueezeNet(nn.Module):
    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 12, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True),
            Fire(12, 4, 8, 8), Fire(16, 4, 8, 8), nn.MaxPool2d(2, ceil_mode=True), Fire(16, 6, 10, 10))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(20, num_classes, 1), nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


class LayerNorm2d(nn.LayerNorm):
    """Channels-first LayerNorm (ConvNeXt downsampling layers)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, layer_scale: float = 0.5) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inp = x
        x = self.dwconv(x).permute(0, 2, 3, 1)
        x = self.pwconv2(self.act(self.pwconv1(self.norm(x))))
        x = self.gamma * x
        return inp + x.permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 2, 2), LayerNorm2d(8))
        self.stage1 = nn.Sequential(ConvNeXtBlock(8), ConvNeXtBlock(8))
        self.down = nn.Sequential(nn.GroupNorm(2, 8), nn.Conv2d(8, 16, 2, 2))
        self.stage2 = nn.Sequential(ConvNeXtBlock(16))
        self.head_norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage2(self.down(self.stage1(self.stem(x))))
        return self.head(self.head_norm(x.mean([-2, -1])))


class VGG(nn.Module):
    def __init__(self, cfg=(8, "M", 16, 16, "M", 24), num_classes: int = 5, hidden: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c * 2 * 2, hidden), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class PreActBlock(nn.Module):
    """Pre-activation block with an option-A zero-padding shortcut (parameter-free, pads channels with F.pad)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.stride, self.pad = stride, (cout - cin) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        short = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, self.pad, self.pad))
        return out + short


class PreActResNetA(nn.Module):
    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.blocks = nn.Sequential(PreActBlock(8, 8, 1), PreActBlock(8, 16, 2), PreActBlock(16, 16, 1))
        self.bn = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.blocks(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


# name -> (factory, input size, separable: mask == prune exactly)
ARCHS: dict[str, tuple] = {
    "vgg": (VGG, 8, True),
    "resnet_bottleneck": (BottleneckResNet, 8, True),
    "resnext": (resnext, 8, True),
    "preact_resnet_option_a": (PreActResNetA, 8, True),
    "mobilenet_v2": (MobileNet, 8, True),
    "mobilenet_v3": (lambda: MobileNet(v3=True), 8, True),
    "densenet": (DenseNet, 8, True),
    "shufflenet_v2": (ShuffleNetV2, 8, True),
    "shufflenet_v2_slicing": (lambda: ShuffleNetV2(ShuffleUnitSlice), 8, True),
    "googlenet": (GoogLeNet, 8, True),
    "squeezenet": (SqueezeNet, 8, True),
    "convnext": (ConvNeXt, 16, False),
}
