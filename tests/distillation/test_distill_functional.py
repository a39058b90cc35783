"""FSP and KD math against direct loop implementations on random tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lightning_compress.functional.distillation import (
    fsp_loss,
    fsp_matrix,
    fsp_pair_loss,
    kd_loss,
    match_spatial,
    soft_target_loss,
)


def loop_fsp_matrix(f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
    """G_ij = Σ_s Σ_t F1[s,t,i] F2[s,t,j] / (h w), one image at a time, entry by entry (same spatial size)."""
    batch, m, h, w = f1.shape
    n = f2.shape[1]
    out = torch.zeros(batch, m, n, dtype=torch.float64)
    for b in range(batch):
        for i in range(m):
            for j in range(n):
                total = 0.0
                for s in range(h):
                    for t in range(w):
                        total += float(f1[b, i, s, t]) * float(f2[b, j, s, t])
                out[b, i, j] = total / (h * w)
    return out


def loop_max_pool(f: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Non-overlapping max pooling by an integer factor, written out."""
    batch, c, h, w = f.shape
    kh, kw = h // size[0], w // size[1]
    out = torch.empty(batch, c, *size, dtype=f.dtype)
    for s in range(size[0]):
        for t in range(size[1]):
            out[:, :, s, t] = f[:, :, s * kh:(s + 1) * kh, t * kw:(t + 1) * kw].amax(dim=(2, 3))
    return out


def test_fsp_matrix_matches_loop_same_size():
    torch.manual_seed(0)
    f1, f2 = torch.randn(3, 4, 5, 6), torch.randn(3, 7, 5, 6)
    got = fsp_matrix(f1, f2)
    assert got.shape == (3, 4, 7)
    torch.testing.assert_close(got.double(), loop_fsp_matrix(f1, f2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("larger_first", [True, False])
def test_fsp_matrix_max_pools_the_larger_map(larger_first):
    torch.manual_seed(1)
    big, small = torch.randn(2, 3, 8, 8), torch.randn(2, 5, 4, 4)
    f1, f2 = (big, small) if larger_first else (small, big)
    pooled = loop_max_pool(big, (4, 4))
    expected = loop_fsp_matrix(pooled, small) if larger_first else loop_fsp_matrix(small, pooled)
    torch.testing.assert_close(fsp_matrix(f1, f2).double(), expected, rtol=1e-5, atol=1e-5)


def test_avg_pool_variant_and_no_upsampling():
    f1, f2 = torch.randn(2, 3, 8, 4), torch.randn(2, 3, 4, 8)
    a, b = match_spatial(f1, f2, "avg")
    assert a.shape[2:] == b.shape[2:] == (4, 4)
    torch.testing.assert_close(match_spatial(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 2, 2), "avg")[0],
                               torch.ones(1, 1, 2, 2))


def test_fsp_matrix_rejects_bad_inputs():
    with pytest.raises(ValueError, match="4-D"):
        fsp_matrix(torch.randn(2, 3, 4), torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="same batch size"):
        fsp_matrix(torch.randn(2, 3, 4, 4), torch.randn(3, 3, 4, 4))
    with pytest.raises(ValueError, match="`pool` must be one of"):
        fsp_matrix(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 2, 2), pool="min")


def loop_fsp_loss(student, teacher, weights):
    """(1/N) Σ_x Σ_i λ_i Σ_jk (G_T - G_S)²."""
    batch = student[0].shape[0]
    total = 0.0
    for x in range(batch):
        for lam, gs, gt in zip(weights, student, teacher):
            diff = gt[x] - gs[x]
            total += lam * sum(float(d) ** 2 for d in diff.flatten())
    return total / batch


def test_fsp_loss_matches_loop_with_weights_and_parts():
    torch.manual_seed(2)
    student = [torch.randn(4, 3, 5), torch.randn(4, 6, 2)]
    teacher = [torch.randn(4, 3, 5), torch.randn(4, 6, 2)]
    total, parts = fsp_loss(student, teacher, weights=[0.5, 2.0])
    assert math.isclose(float(total), loop_fsp_loss(student, teacher, [0.5, 2.0]), rel_tol=1e-5)
    assert math.isclose(float(parts[1]), loop_fsp_loss(student[1:], teacher[1:], [1.0]), rel_tol=1e-5)
    default_total, _ = fsp_loss(student, teacher)
    assert math.isclose(float(default_total), loop_fsp_loss(student, teacher, [1.0, 1.0]), rel_tol=1e-5)


def test_fsp_loss_zero_on_identical_and_symmetric():
    g = [torch.randn(2, 3, 3)]
    h = [torch.randn(2, 3, 3)]
    assert float(fsp_loss(g, g)[0]) == 0.0
    assert torch.isclose(fsp_loss(g, h)[0], fsp_loss(h, g)[0])
    mean = fsp_pair_loss(g[0], h[0], reduction="mean")
    assert torch.isclose(mean * 9, fsp_pair_loss(g[0], h[0], reduction="sum"))


def test_fsp_loss_rejects_mismatches():
    g = torch.randn(2, 3, 3)
    with pytest.raises(ValueError, match="same number"):
        fsp_loss([g], [g, g])
    with pytest.raises(ValueError, match="one value per pair"):
        fsp_loss([g], [g], weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="same shape"):
        fsp_loss([g], [torch.randn(2, 3, 4)])
    with pytest.raises(ValueError, match="`reduction` must be one of"):
        fsp_pair_loss(g, g, reduction="max")


def loop_kd(s, t, y, temperature, alpha):
    total_kl = total_ce = 0.0
    for b in range(s.shape[0]):
        ps = [math.exp(v / temperature) for v in s[b].tolist()]
        pt = [math.exp(v / temperature) for v in t[b].tolist()]
        zs, zt = sum(ps), sum(pt)
        total_kl += sum((q / zt) * math.log((q / zt) / (p / zs)) for p, q in zip(ps, pt))
        e = [math.exp(v) for v in s[b].tolist()]
        total_ce += -math.log(e[int(y[b])] / sum(e))
    n = s.shape[0]
    return alpha * temperature**2 * total_kl / n + (1 - alpha) * total_ce / n


@pytest.mark.parametrize(("temperature", "alpha"), [(1.0, 0.5), (4.0, 0.9), (3.0, 1.0), (2.0, 0.0)])
def test_kd_loss_matches_loop(temperature, alpha):
    torch.manual_seed(3)
    s, t, y = torch.randn(5, 7), torch.randn(5, 7), torch.randint(0, 7, (5,))
    got = kd_loss(s, t, y, temperature=temperature, alpha=alpha)
    assert math.isclose(float(got), loop_kd(s, t, y, temperature, alpha), rel_tol=1e-4, abs_tol=1e-6)


def test_soft_target_loss_zero_when_equal_and_gradient_only_to_student():
    s = torch.randn(4, 5, requires_grad=True)
    t = s.detach().clone()
    assert float(soft_target_loss(s.detach(), t)) == pytest.approx(0.0, abs=1e-6)
    loss = soft_target_loss(s, torch.randn(4, 5))
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert torch.isclose(kd_loss(s, t, None, alpha=1.0), soft_target_loss(s, t))
    assert torch.isclose(kd_loss(s, t, torch.zeros(4, dtype=torch.long), alpha=0.0),
                         F.cross_entropy(s, torch.zeros(4, dtype=torch.long)))


def test_kd_loss_rejects_bad_arguments():
    s = torch.randn(2, 3)
    with pytest.raises(ValueError, match="`alpha` must be in"):
        kd_loss(s, s, None, alpha=1.5)
    with pytest.raises(ValueError, match="`temperature` must be > 0"):
        kd_loss(s, s, None, temperature=0.0, alpha=1.0)
    with pytest.raises(ValueError, match="`labels` must be given"):
        kd_loss(s, s, None, alpha=0.5)
