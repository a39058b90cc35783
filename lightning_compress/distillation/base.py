"""What every distillation LightningModule shares: the student ``net``, the frozen teacher, evaluation of the
student, the optimizer (student parameters only) and checkpoint metadata (where the teacher came from)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from lightning_compress._namespaces import LightningModuleBase
from lightning_compress.distillation.teacher import FrozenTeacher
from lightning_compress.modules.optim import configure_optimization, validate_optim_config
from lightning_compress.pruning import PruningPlan
from lightning_compress.pruning.saving import KEY, pruned_payload, read_payload

Batch = tuple[Tensor, Tensor]


class DistillationModule(LightningModuleBase):
    """Base class: subclasses implement ``training_step`` (and may add trainable modules via
    :meth:`trainable_parameters`).

    Args:
        net: the student network, trained in place; ``module.net`` as in ``ImageClassifier``, so a checkpoint
            of this module loads with ``load_stage_model`` as the student alone.
        teacher: the teacher network (frozen here) or a :class:`FrozenTeacher`; ``None`` only to evaluate or reload
            the student (training then fails at setup).
        num_classes: classes of the task (accuracy metrics).
        optim, scheduler: as for ``ImageClassifier`` (``cfg.module.optim`` / ``scheduler`` keys).
        student_plan: the student's pruning plan as a dict (``PruningPlan.to_dict()``) when it is a pruned network;
            stored in checkpoints so they can be rebuilt.

    Warns (``UserWarning``, naming both parameter counts) when the student has more parameters than the teacher:
    distillation compresses a larger teacher into a smaller student, so this is usually a swapped ``model`` /
    ``method.teacher_model``.
    """

    def __init__(self, net: nn.Module, teacher: nn.Module | FrozenTeacher | None, num_classes: int,
                 optim: Mapping[str, Any] | None = None, scheduler: Mapping[str, Any] | None = None,
                 student_plan: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"`net` must be an nn.Module, got {type(net).__name__}.")
        if teacher is not None and not isinstance(teacher, (nn.Module, FrozenTeacher)):
            raise TypeError(f"`teacher` must be an nn.Module, a FrozenTeacher or None, got {type(teacher).__name__}.")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"`num_classes` must be an int >= 2, got {num_classes!r}.")
        if teacher is net:
            raise ValueError("`teacher` must be a different network object than `net` (the student), got the same.")
        self.optim_config = dict(optim or {})
        self.scheduler_config = dict(scheduler or {})
        validate_optim_config(self.optim_config, self.scheduler_config)
        self.net = net
        # Not a submodule (FrozenTeacher is no nn.Module): outside parameters(), state_dict() and train()/eval().
        self.teacher: FrozenTeacher | None = (
            teacher if isinstance(teacher, FrozenTeacher) or teacher is None else FrozenTeacher(teacher)
        )
        self.student_plan = dict(student_plan) if student_plan else None
        if self.teacher is not None:
            warn_if_student_larger(net, self.teacher.net)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def base_hparams(self, num_classes: int) -> dict[str, Any]:
        """Hyperparameters every subclass saves (plain Python values only: checkpoints load with weights_only)."""
        return {"num_classes": num_classes, "optim": dict(self.optim_config), "scheduler": dict(self.scheduler_config)}

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    # -- teacher -------------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage == "fit" and self.teacher is None:
            raise ValueError(f"`teacher` must be given to train {type(self).__name__}, got None.")

    def on_train_epoch_start(self) -> None:
        if self.teacher is not None:
            self.teacher.net.eval()  # belt and braces: FrozenTeacher also forces eval on every call

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """What the optimizer trains: the student's parameters (subclasses add their own, never the teacher's)."""
        return self.net.parameters()

    # -- evaluation of the student -------------------------------------------------------------------------------
    def _eval_step(self, batch: Batch, stage: str, metric: MulticlassAccuracy) -> Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        metric(logits.float(), labels)
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=stage == "val")
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True, prog_bar=True)
        return logits

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_acc)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_acc)

    # -- optimisation --------------------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        return configure_optimization(self.trainer, self.trainable_parameters(), self.optim_config,
                                      self.scheduler_config)

    # -- checkpoints ---------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the student's plan and where the teacher came from (the teacher's weights are never saved), in the
        pruned-network format of :mod:`lightning_compress.pruning.saving` (the student is ``net``)."""
        plan = PruningPlan.from_dict(self.student_plan) if self.student_plan else None
        teacher = None if self.teacher is None else {"source": self.teacher.source,
                                                     "class": type(self.teacher.net).__name__}
        checkpoint[KEY] = pruned_payload(plan, "net", method=type(self).__name__, teacher=teacher)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        entry = read_payload(checkpoint, "checkpoint") or {}
        if entry.get("plan") and self.student_plan is None:
            self.student_plan = dict(entry["plan"])


def warn_if_student_larger(student: nn.Module, teacher: nn.Module) -> None:
    """Warn when ``student`` has more parameters than ``teacher`` (both counts named)."""
    n_student = sum(p.numel() for p in student.parameters())
    n_teacher = sum(p.numel() for p in teacher.parameters())
    if n_student > n_teacher:
        rank_zero_warn(f"The student ({type(student).__name__}, {n_student:,} parameters) has more parameters than "
                       f"the teacher ({type(teacher).__name__}, {n_teacher:,} parameters): distillation usually "
                       "trains a smaller student from a larger teacher. HINT: check `model` (the student) and "
                       "`method.teacher_model` / `method.teacher`.", category=UserWarning)


def total_loss(parts: Mapping[str, tuple[float, Tensor]], device: torch.device) -> Tensor:
    """``Σ weight · loss`` over ``parts``, skipping zero weights (so their terms need not even be finite)."""
    total = torch.zeros((), device=device)
    for weight, loss in parts.values():
        if weight:
            total = total + weight * loss
    return total
