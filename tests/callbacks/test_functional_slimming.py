"""The slimming math: sub-gradient, one global threshold with a per-group floor, gamma summary."""

from __future__ import annotations

import pytest
import torch

from lightning_compress.functional import add_l1_subgradient, gamma_summary, global_threshold_keep


def test_subgradient_adds_lambda_sign_and_skips_missing_grads():
    a = torch.nn.Parameter(torch.tensor([0.5, -0.2, 0.0]))
    b = torch.nn.Parameter(torch.tensor([1.0]))
    a.grad = torch.tensor([0.1, 0.1, 0.1])
    assert add_l1_subgradient([a, b], 1e-2) == 1
    torch.testing.assert_close(a.grad, torch.tensor([0.11, 0.09, 0.1]))
    assert b.grad is None


def test_global_threshold_is_one_threshold_over_all_groups():
    scores = {"a": torch.tensor([0.1, 0.9, 0.5, 0.05]), "b": torch.tensor([0.2, 0.3, 0.8, 0.01])}
    keep = global_threshold_keep(scores, 0.5, min_channels=1)
    # the 4 smallest overall: 0.01 (b), 0.05 (a), 0.1 (a), 0.2 (b)
    assert keep["a"].tolist() == [False, True, True, False]
    assert keep["b"].tolist() == [False, True, True, False]


def test_global_threshold_floor_keeps_the_best_channels_of_an_emptied_group():
    scores = {"big": torch.tensor([5.0, 6.0, 7.0, 8.0]), "small": torch.tensor([0.1, 0.3, 0.2])}
    keep = global_threshold_keep(scores, 0.4, min_channels=2)
    assert keep["big"].all()
    assert keep["small"].tolist() == [False, True, True]
    assert global_threshold_keep(scores, 0.0)["small"].all()


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_global_threshold_rejects_bad_ratio(ratio):
    with pytest.raises(ValueError, match="`pruning_ratio` must be in"):
        global_threshold_keep({"a": torch.ones(3)}, ratio)


def test_gamma_summary():
    stats = gamma_summary(torch.tensor([0.0, -0.005, 0.5, 1.0]))
    assert stats["frac_below"] == pytest.approx(0.5)
    assert stats["max"] == pytest.approx(1.0)
