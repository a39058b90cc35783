"""Random CNN architectures for property tests: convs (plain/grouped/depthwise), BN, activations, residual adds,
concats, chunks, half-slices, channel shuffles, SE and sigmoid gating, pooling, upsampling, channel padding,
channels-last linear layers, and a flatten or pooled linear head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

from .archs import SqueezeExcite, channel_shuffle

ACTS = [nn.ReLU, nn.Hardswish, nn.GELU, nn.SiLU, nn.Identity, nn.Tanh, nn.ReLU6]


class RandomNet(nn.Module):
    def __init__(self, ops: list[tuple], mods: list[nn.Module], head_flatten: bool, feat: int,
                 num_classes: int) -> None:
        super().__init__()
        self.ops = ops
        self.mods = nn.ModuleList(mods)
        self.head_flatten = head_flatten
        self.fc = nn.Linear(feat, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [self.mods[0](x)]
        for op in self.ops:
            kind = op[0]
            if kind == "conv" or kind == "se":
                nodes.append(self.mods[op[2]](nodes[op[1]]))
            elif kind == "add":
                nodes.append(nodes[op[1]] + self.mods[op[3]](nodes[op[2]]))
            elif kind == "cat":
                nodes.append(torch.cat([nodes[op[1]], nodes[op[2]]], 1))
            elif kind == "chunk":
                nodes.append(nodes[op[1]].chunk(2, dim=1)[op[2]])
            elif kind == "shuffle":
                nodes.append(channel_shuffle(nodes[op[1]], 2))
            elif kind == "gate":
                nodes.append(nodes[op[1]] * torch.sigmoid(nodes[op[2]]))
            elif kind == "maxpool":
                nodes.append(F.max_pool2d(nodes[op[1]], 2))
            elif kind == "avgpool":
                nodes.append(F.avg_pool2d(nodes[op[1]], 2))
            elif kind == "mlp":  # channels-last linear, as in ConvNeXt
                y = nodes[op[1]].permute(0, 2, 3, 1)
                nodes.append(self.mods[op[2]](y).permute(0, 3, 1, 2))
            elif kind == "upsample":
                nodes.append(F.interpolate(nodes[op[1]], scale_factor=2.0, mode="nearest"))
            elif kind == "half":
                y = nodes[op[1]]
                c = y.size(1) // 2
                nodes.append(y[:, c:] if op[2] else y[:, :c])
            elif kind == "pad":  # option-A shortcut: constant channels on both sides
                nodes.append(F.pad(nodes[op[1]], (0, 0, 0, 0, op[2], op[2])))
        out = nodes[-1]
        out = torch.flatten(out, 1) if self.head_flatten else F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def conv_block(cin: int, cout: int, k: int, groups: int, bn: bool, act: type[nn.Module], bias: bool) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, 1, k // 2, groups=groups, bias=bias)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(act())
    return nn.Sequential(*layers)


def _conv_shape(draw: st.DrawFn, cin: int) -> tuple[int, int]:
    """Output channels and groups of a random conv: plain, depthwise (x1 or x2) or 2-grouped."""
    style = draw(st.sampled_from(["plain", "plain", "depthwise", "grouped"]))
    if style == "depthwise":
        return cin * draw(st.sampled_from([1, 2])), cin
    if style == "grouped" and cin % 2 == 0:
        return 2 * draw(st.integers(1, 4)), 2
    return draw(st.integers(1, 8)), 1


@st.composite
def random_nets(draw: st.DrawFn, max_ops: int = 8) -> RandomNet:
    c0 = draw(st.integers(2, 8))
    mods: list[nn.Module] = [conv_block(3, c0, 3, 1, draw(st.booleans()), draw(st.sampled_from(ACTS)), True)]
    meta = [(c0, 8)]  # (channels, spatial size) of each node
    ops: list[tuple] = []
    for _ in range(draw(st.integers(1, max_ops))):
        a = draw(st.integers(0, len(meta) - 1))
        ca, ha = meta[a]
        kind = draw(st.sampled_from(["conv", "conv", "conv", "add", "cat", "chunk", "shuffle", "se", "gate",
                                     "maxpool", "avgpool", "mlp", "upsample", "half", "pad"]))
        same_h = [i for i, (_, h) in enumerate(meta) if h == ha]
        if kind == "conv":
            cout, groups = _conv_shape(draw, ca)
            mods.append(conv_block(ca, cout, draw(st.sampled_from([1, 3])), groups, draw(st.booleans()),
                                   draw(st.sampled_from(ACTS)), draw(st.booleans())))
            ops.append(("conv", a, len(mods) - 1))
            meta.append((cout, ha))
        elif kind == "add":
            b = draw(st.sampled_from(same_h))
            cb = meta[b][0]
            proj = nn.Identity() if cb == ca else conv_block(cb, ca, 1, 1, True, nn.Identity, False)
            mods.append(proj)
            ops.append(("add", a, b, len(mods) - 1))
            meta.append((ca, ha))
        elif kind == "cat":
            b = draw(st.sampled_from(same_h))
            ops.append(("cat", a, b))
            meta.append((ca + meta[b][0], ha))
        elif kind == "chunk" and ca % 2 == 0:
            ops.append(("chunk", a, draw(st.integers(0, 1))))
            meta.append((ca // 2, ha))
        elif kind == "shuffle" and ca % 2 == 0:
            ops.append(("shuffle", a))
            meta.append((ca, ha))
        elif kind == "se":
            mods.append(SqueezeExcite(ca, 2, draw(st.sampled_from([nn.Sigmoid, nn.Hardsigmoid]))))
            ops.append(("se", a, len(mods) - 1))
            meta.append((ca, ha))
        elif kind == "gate":
            same = [i for i in same_h if meta[i][0] == ca]
            ops.append(("gate", a, draw(st.sampled_from(same))))
            meta.append((ca, ha))
        elif kind in ("maxpool", "avgpool") and ha >= 2:
            ops.append((kind, a))
            meta.append((ca, ha // 2))
        elif kind == "mlp":
            cout = draw(st.integers(1, 8))
            mods.append(nn.Sequential(nn.Linear(ca, cout), draw(st.sampled_from(ACTS))()))
            ops.append(("mlp", a, len(mods) - 1))
            meta.append((cout, ha))
        elif kind == "upsample" and ha <= 8:
            ops.append(("upsample", a))
            meta.append((ca, ha * 2))
        elif kind == "half" and ca % 2 == 0:
            ops.append(("half", a, draw(st.integers(0, 1))))
            meta.append((ca // 2, ha))
        elif kind == "pad":
            p = draw(st.integers(1, 2))
            ops.append(("pad", a, p))
            meta.append((ca + 2 * p, ha))
    c_last, h_last = meta[-1]
    flatten = draw(st.booleans())
    feat = c_last * h_last * h_last if flatten else c_last
    return RandomNet(ops, mods, flatten, feat, draw(st.integers(1, 4)))
