"""Distillation losses as pure functions: the FSP matrix and loss (Yim et al. 2017) and Hinton's KD loss.

No module state, no Lightning: the LightningModules of `lightning_compress.distillation` only collect features and
call these.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

POOLS = ("max", "avg")
REDUCTIONS = ("normalized", "sum", "mean")
# Floor of the normalised loss's denominator (an all-zero teacher matrix must not divide by zero).
NORMALIZED_EPS = 1e-12


def match_spatial(f1: Tensor, f2: Tensor, pool: str = "max") -> tuple[Tensor, Tensor]:
    """Pool the larger of two (B, C, H, W) maps down to the smaller one's (H, W).

    ``pool="max"`` is the paper's choice (adaptive max pooling); ``"avg"`` is RepDistiller's.
    Each spatial dimension goes to the smaller of the two sizes, so neither map is ever upsampled.
    """
    if pool not in POOLS:
        raise ValueError(f"`pool` must be one of {POOLS}, got {pool!r}.")
    size = (min(f1.shape[2], f2.shape[2]), min(f1.shape[3], f2.shape[3]))
    pool_fn = F.adaptive_max_pool2d if pool == "max" else F.adaptive_avg_pool2d
    if tuple(f1.shape[2:]) != size:
        f1 = pool_fn(f1, size)
    if tuple(f2.shape[2:]) != size:
        f2 = pool_fn(f2, size)
    return f1, f2


def fsp_matrix(f1: Tensor, f2: Tensor, pool: str = "max") -> Tensor:
    """The FSP ("flow of solution procedure") matrix of every image: ``G = F1 · F2ᵀ / (h·w)``.

    Args:
        f1: (B, m, h1, w1) feature map at the start of a section.
        f2: (B, n, h2, w2) feature map at its end.
        pool: how the larger map is brought to the smaller spatial size when they differ (``max`` | ``avg``).

    Returns:
        (B, m, n) tensor; ``G[b, i, j] = Σ_{s,t} f1[b, i, s, t] · f2[b, j, s, t] / (h·w)``.

    Raises:
        ValueError: the inputs are not 4-D or their batch sizes differ.
    """
    if f1.dim() != 4 or f2.dim() != 4:
        raise ValueError(f"`f1` and `f2` must be 4-D (B, C, H, W), got shapes {tuple(f1.shape)} and {tuple(f2.shape)}.")
    if f1.shape[0] != f2.shape[0]:
        raise ValueError(f"`f1` and `f2` must have the same batch size, got {f1.shape[0]} and {f2.shape[0]}.")
    f1, f2 = match_spatial(f1, f2, pool)
    hw = f1.shape[2] * f1.shape[3]
    return torch.bmm(f1.flatten(2), f2.flatten(2).transpose(1, 2)) / hw


def fsp_pair_loss(student: Tensor, teacher: Tensor, reduction: str = "sum") -> Tensor:
    """The loss of one pair of (B, m, n) FSP matrices, averaged over the batch.

    * ``"sum"``: ``‖G_T − G_S‖²`` summed over the matrix entries (the paper's squared L2 norm). Its size grows with
      m·n and with the fourth power of the feature scale (5.4e7 at step 0 on a torchvision-like ResNet-34 -> ResNet-18
      pair), so a learning rate that suits one network pair diverges on a wider one.
    * ``"mean"``: the squared differences averaged over the entries (RepDistiller's MSE, ``sum`` / (m·n)); still
      proportional to the feature scale to the fourth power.
    * ``"normalized"`` (NOT the paper's): the mean squared difference divided by the teacher matrix's mean square,
      both over the batch and the entries: ``Σ(G_T − G_S)² / ΣG_T²``, a relative error that is 1 for ``G_S = 0``.
      Scale-free: multiplying every feature map of both networks by c leaves it unchanged, and it does not grow
      with the widths, so one learning rate works across network pairs. The denominator is the frozen teacher's
      (no gradient), floored at ``NORMALIZED_EPS``.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"`reduction` must be one of {REDUCTIONS}, got {reduction!r}.")
    if student.shape != teacher.shape:
        raise ValueError(f"student and teacher FSP matrices must have the same shape, got {tuple(student.shape)} "
                         f"and {tuple(teacher.shape)}.")
    squared = (teacher - student).pow(2).flatten(1)
    if reduction == "normalized":
        return squared.mean() / teacher.detach().pow(2).mean().clamp_min(NORMALIZED_EPS)
    per_image = squared.sum(1) if reduction == "sum" else squared.mean(1)
    return per_image.mean()


def fsp_loss(student: Sequence[Tensor], teacher: Sequence[Tensor], weights: Sequence[float] | None = None,
             reduction: str = "sum") -> tuple[Tensor, list[Tensor]]:
    """The paper's loss ``(1/N) Σ_x Σ_i λ_i ‖G_i^T(x) − G_i^S(x)‖²₂`` over the FSP matrices of every pair.

    Args:
        student, teacher: one (B, m_i, n_i) FSP matrix per pair, in the same order.
        weights: λ_i per pair; ``None`` gives every pair weight 1 (the paper: all terms equally important).
        reduction: ``sum`` (paper), ``mean`` or ``normalized`` (scale-free, not the paper's), see
            :func:`fsp_pair_loss`.

    Returns:
        ``(total, per_pair)``: the weighted sum and the unweighted loss of each pair.
    """
    if len(student) != len(teacher) or not student:
        raise ValueError(f"`student` and `teacher` must hold the same number (>= 1) of FSP matrices, "
                         f"got {len(student)} and {len(teacher)}.")
    weights = [1.0] * len(student) if weights is None else [float(w) for w in weights]
    if len(weights) != len(student):
        raise ValueError(f"`weights` must have one value per pair ({len(student)}), got {weights!r}.")
    per_pair = [fsp_pair_loss(s, t, reduction) for s, t in zip(student, teacher)]
    total = sum((w * loss for w, loss in zip(weights, per_pair)), torch.zeros((), device=per_pair[0].device))
    return total, per_pair


def soft_target_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 4.0) -> Tensor:
    """Hinton's soft-target term ``T² · KL(softmax(t/T) ‖ softmax(s/T))``, averaged over the batch.

    The ``T²`` factor keeps its gradient scale independent of the temperature.
    """
    if not temperature > 0:
        raise ValueError(f"`temperature` must be > 0, got {temperature!r}.")
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor | None = None, temperature: float = 4.0,
            alpha: float = 0.9) -> Tensor:
    """Knowledge distillation (Hinton et al. 2015): ``alpha · soft_target_loss + (1 − alpha) · CE(s, labels)``.

    ``labels`` may be omitted only when ``alpha == 1`` (pure soft targets).
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"`alpha` must be in [0, 1], got {alpha!r}.")
    soft = soft_target_loss(student_logits, teacher_logits, temperature)
    if alpha == 1:
        return soft
    if labels is None:
        raise ValueError(f"`labels` must be given when `alpha` < 1, got None (alpha={alpha!r}).")
    return alpha * soft + (1 - alpha) * F.cross_entropy(student_logits.float(), labels)
