"""Classic knowledge distillation (Hinton et al. 2015) as a LightningModule: soft teacher logits + cross-entropy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from lightning_compress.distillation.base import Batch, DistillationModule, total_loss
from lightning_compress.distillation.teacher import FrozenTeacher
from lightning_compress.functional.distillation import soft_target_loss


class KnowledgeDistillation(DistillationModule):
    """Student ``net`` trained on ``alpha · T²·KL(p_teacher^T ‖ p_student^T) + (1 − alpha) · CE``.

    Works for any teacher/student pair with the same classes (different widths, depths or a pruned student).

    Args:
        net: the student network.
        teacher: the teacher network (frozen, eval mode, not optimised, not checkpointed); ``None`` (default): reload.
        num_classes: classes of the task.
        temperature: softmax temperature T of both networks' logits (Hinton: 2-20; RepDistiller: 4).
        alpha: weight of the soft-target term, in [0, 1]; the cross-entropy gets ``1 − alpha``.
        optim, scheduler, student_plan: see :class:`~lightning_compress.distillation.base.DistillationModule`.

    Logs ``train/loss``, ``kd/soft_loss``, ``train/ce``, ``train/acc``; ``val/loss``, ``val/acc``; ``test/acc``.

    Raises:
        ValueError: ``temperature`` <= 0 or ``alpha`` outside [0, 1].
    """

    def __init__(self, net: nn.Module, teacher: nn.Module | FrozenTeacher | None = None, num_classes: int = 10,
                 temperature: float = 4.0, alpha: float = 0.9, optim: Mapping[str, Any] | None = None,
                 scheduler: Mapping[str, Any] | None = None, student_plan: Mapping[str, Any] | None = None) -> None:
        super().__init__(net, teacher, num_classes, optim, scheduler, student_plan)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"`temperature` must be a number > 0, got {temperature!r}.")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
            raise ValueError(f"`alpha` must be a number in [0, 1], got {alpha!r}.")
        self.temperature, self.alpha = float(temperature), float(alpha)
        self.save_hyperparameters({**self.base_hparams(num_classes), "temperature": self.temperature,
                                   "alpha": self.alpha})

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        images, labels = batch
        logits = self.net(images)
        soft = soft_target_loss(logits, self.teacher(images), self.temperature)
        ce = F.cross_entropy(logits, labels)
        loss = total_loss({"kd": (self.alpha, soft), "ce": (1.0 - self.alpha, ce)}, images.device)
        self.train_acc(logits.float(), labels)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("kd/soft_loss", soft, on_step=False, on_epoch=True)
        self.log("train/ce", ce, on_step=False, on_epoch=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss
