"""Parameter, MAC and latency counters against hand-computed values."""

import pytest
import torch
from torch import nn

from lightning_compress.cost import count_macs, count_params, measure_latency, profile_model, speed_ratio


def test_conv_and_linear_macs_by_hand():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    expected = 8 * 4 * 4 * 3 * 9 + 8 * 4 * 4 * 5
    assert count_macs(net, torch.zeros(2, 3, 4, 4)) == expected  # per image, whatever the batch


def test_grouped_and_depthwise_convolutions():
    depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    grouped = nn.Conv2d(8, 16, 1, groups=4)
    assert count_macs(depthwise, torch.zeros(1, 8, 5, 5)) == 8 * 25 * 9
    assert count_macs(grouped, torch.zeros(1, 8, 5, 5)) == 16 * 25 * 2


def test_params_counts_shared_parameters_once():
    layer = nn.Linear(4, 4)
    net = nn.Sequential(layer, layer)
    assert count_params(net) == 20


def test_count_macs_restores_training_mode():
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2)).train()
    count_macs(net, torch.zeros(1, 1, 2, 2))
    assert net.training


def test_latency_and_profile_report_batch_and_device():
    net = nn.Conv2d(3, 4, 3)
    latency = measure_latency(net, torch.zeros(4, 3, 8, 8), warmup=1, repeats=3)
    assert latency.batch_size == 4 and latency.device == "cpu" and latency.median_ms > 0
    profile = profile_model(net, torch.zeros(1, 3, 8, 8), latency_batch_size=2, repeats=2).as_dict()
    assert profile["flops"] == 2 * profile["macs"]
    assert profile["latency_batch_size"] == 2


def test_latency_rejects_bad_repeats():
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(nn.Identity(), torch.zeros(1), repeats=0)


def test_speed_ratio_is_realised_over_macs_speedup_flagged_below_the_target():
    slow = speed_ratio(1.98, 1.25)
    assert slow.ratio == pytest.approx(1.25 / 1.98) and slow.below_target and slow.target == 0.85
    assert not speed_ratio(2.0, 1.7).below_target and speed_ratio(2.0, 1.69).below_target
    assert not speed_ratio(2.0, 1.5, target=0.75).below_target
    assert speed_ratio(1.5, float("inf")).as_dict() == {"macs_speedup": 1.5, "latency_speedup": float("inf"),
                                                        "ratio": float("inf"), "below_target": False, "target": 0.85}
    for bad in ({"macs_speedup": 0}, {"latency_speedup": -1.0}, {"macs_speedup": float("nan")},
                {"macs_speedup": float("inf")}, {"target": True}):
        args = {"macs_speedup": 2.0, "latency_speedup": 1.5, **bad}
        with pytest.raises(ValueError, match=f"`{next(iter(bad))}`"):
            speed_ratio(**args)
