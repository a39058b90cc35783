"""benchmarks/bench_conv_bound.py (issue 31): every convolution of both networks is timed once per distinct shape and
counted as often as it runs; the numbers of this tiny run mean nothing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmarks import bench_conv_bound
from benchmarks.bench_latency import Setting
from lightning_compress.models import resnet20


@pytest.mark.parametrize("channels_last", [False, True])
def test_conv_and_rest_add_up_to_the_whole_network(channels_last):
    torch.manual_seed(0)
    setting = Setting(lambda: resnet20(num_classes=10), 16, 2, keep_macs=0.5, residual="select")
    row = bench_conv_bound.bound("resnet20_select", setting, 8, threads=1, repeats=2, channels_last=channels_last,
                                 search_steps=4)
    for net in ("unpruned", "pruned"):
        assert row["conv_ms"][net] > 0
        assert row["conv_ms"][net] + row["rest_ms"][net] == pytest.approx(row["whole_ms"][net])
    assert row["macs_speedup"] > 1.5
    assert row["conv_ratio"] == pytest.approx(
        row["conv_ms"]["unpruned"] / row["conv_ms"]["pruned"] / row["macs_speedup"])
    assert "| resnet20_select | 8 |" in bench_conv_bound.markdown([row])


def test_conv_calls_counts_every_convolution_by_shape():
    net = resnet20(num_classes=10).eval()
    calls = bench_conv_bound.conv_calls(net, torch.zeros(1, 3, 16, 16))
    assert sum(calls.values()) == sum(isinstance(m, nn.Conv2d) for m in net.modules())
    assert calls[((1, 16, 16, 16), (16, 16, 3, 3), (1, 1), (1, 1), 1)] == 6  # layer1: 3 blocks x 2 convs
