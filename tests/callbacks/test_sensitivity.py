"""Sensitivity analysis (Li et al. Fig. 2): per-layer curves, CSV + plot, ratios derived from a tolerated drop."""

from __future__ import annotations

import csv

import pytest
import torch

from lightning_compress.sensitivity import derive_ratios, plot_sensitivity, sensitivity_analysis, write_csv
from tests.helpers import tiny_vgg


def test_each_layer_alone_then_csv_plot_and_ratios(tmp_path):
    torch.manual_seed(0)
    net = tiny_vgg()
    x = torch.randn(16, 1, 8, 8)
    net.eval()
    reference = net(x).detach()

    def evaluate(model):  # 1 - relative output change: 1.0 for the unpruned net, lower when pruning hurts
        return 1.0 - float((model(x) - reference).norm() / reference.norm())

    before = {k: v.clone() for k, v in net.state_dict().items()}
    rows = sensitivity_analysis(net, evaluate, x[:1], ratios=(0.25, 0.5, 0.75))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the net itself is untouched
    layers = {r["layer"] for r in rows}
    assert {"features.conv1", "features.conv4"} <= layers
    assert len(rows) == 4 * len(layers)
    conv1 = sorted((r["ratio"], r["metric"], r["kept"]) for r in rows if r["layer"] == "features.conv1")
    assert conv1[0] == (0.0, pytest.approx(1.0), 8) and conv1[-1][2] == 2 and conv1[-1][1] < 1.0
    write_csv(rows, tmp_path / "s.csv")
    assert len(list(csv.DictReader((tmp_path / "s.csv").open()))) == len(rows)
    assert plot_sensitivity(rows, tmp_path / "s.png").is_file()
    ratios = derive_ratios(rows, tolerance=2.0)
    assert ratios["features.conv1"] == 0.75
    assert derive_ratios(rows, tolerance=0.0) == {}


def test_bad_ratios_and_layers():
    net = tiny_vgg()
    with pytest.raises(ValueError, match="`ratios` must hold floats in"):
        sensitivity_analysis(net, lambda m: 1.0, torch.zeros(1, 1, 8, 8), ratios=(0.0,))
    with pytest.raises(ValueError, match="`layers` glob 'nope' matches no prunable layer"):
        sensitivity_analysis(net, lambda m: 1.0, torch.zeros(1, 1, 8, 8), layers=["nope"])
