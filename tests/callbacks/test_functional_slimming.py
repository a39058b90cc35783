"""The slimming math: the L1 sub-gradient and the gamma summary (the threshold: tests/test_functional_pruning.py)."""

from __future__ import annotations

import pytest
import torch

from lightning_compress.functional import add_l1_subgradient, gamma_summary


def test_subgradient_adds_lambda_sign_and_skips_missing_grads():
    a = torch.nn.Parameter(torch.tensor([0.5, -0.2, 0.0]))
    b = torch.nn.Parameter(torch.tensor([1.0]))
    a.grad = torch.tensor([0.1, 0.1, 0.1])
    assert add_l1_subgradient([a, b], 1e-2) == 1
    torch.testing.assert_close(a.grad, torch.tensor([0.11, 0.09, 0.1]))
    assert b.grad is None


def test_gamma_summary():
    stats = gamma_summary(torch.tensor([0.0, -0.005, 0.5, 1.0]))
    assert stats["frac_below"] == pytest.approx(0.5)
    assert stats["max"] == pytest.approx(1.0)
