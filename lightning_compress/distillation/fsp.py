"""FSP distillation (Yim et al., CVPR 2017) as a LightningModule: the student learns the teacher's FSP matrices.

The paper's two stages are two fits: stage 1 with this module (``distill_loss_weight=1, task_loss_weight=0``: FSP
loss only), stage 2 a plain cross-entropy fit of the same ``net`` (``ImageClassifier``), which therefore starts from
the stage-1 weights. ``task_loss_weight > 0`` gives a one-stage FSP + CE variant (not the paper's).

Defaults that differ from the paper, chosen to be stable on the networks users bring (any width):
``reduction="normalized"`` (each pair's squared error relative to the teacher matrix's mean square; the paper's sum
is ``reduction="sum"``) and, when no ``optim`` is given, Adam at lr 1e-3 without weight decay (:data:`DEFAULT_OPTIM`;
the paper: SGD at lr 1e-3). A loss that is not finite, or that grows more than ``max_loss_growth`` times over its
first-step value, stops the fit with a ``FloatingPointError``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_compress.distillation.base import Batch, DistillationModule, total_loss
from lightning_compress.distillation.features import FeatureRecorder, default_pairs
from lightning_compress.distillation.teacher import FrozenTeacher, TeacherMismatchError
from lightning_compress.functional.distillation import POOLS, REDUCTIONS, fsp_loss, fsp_matrix

Pair = tuple[str, str]

# Stage 1's optimiser when none is given: Adam's step does not depend on the loss's scale, so it suits every
# reduction and width (torchdistill's FSP sample also trains stage 1 with Adam). Not the paper's (SGD, lr 1e-3).
DEFAULT_OPTIM = {"name": "adam", "lr": 1e-3, "weight_decay": 0.0}
# The explosion guard's default: a loss more than this many times its first-step value stops the fit.
MAX_LOSS_GROWTH = 1000.0


class FSPDistillation(DistillationModule):
    """Student ``net`` trained to match the FSP matrices of a frozen teacher at named layer pairs.

    Args:
        net: the student network.
        teacher: the teacher network (frozen, eval mode, not optimised, not checkpointed); ``None`` (default): reload.
        num_classes: classes of the task (student accuracy is logged in every stage).
        pairs: student feature pairs ``[[first, second], ...]``, each a module path with optional ``:input`` /
            ``:output`` (default output), e.g. ``["layer2:input", "layer2:output"]``. ``None``: the paper's
            first/last tensor of every section (:func:`~lightning_compress.distillation.features.default_pairs`).
        teacher_pairs: the teacher's pairs, same count; ``None``: the same names as ``pairs`` (for the teacher's
            own defaults when ``pairs`` is ``None``).
        pair_weights: λ_i per pair; ``None``: all 1 (the paper).
        pool: ``max`` (paper) or ``avg`` (RepDistiller): how the larger map of a pair is pooled to the smaller.
        reduction: ``normalized`` (default, NOT the paper's: each pair's squared error divided by the teacher
            matrix's mean square, scale-free and width-free), ``sum`` (the paper: squared L2 over matrix entries,
            whose size grows with the widths and the fourth power of the feature scale) or ``mean`` (RepDistiller's
            MSE). See :func:`~lightning_compress.functional.distillation.fsp_pair_loss`.
        distill_loss_weight: weight of the FSP loss (stage 1: 1).
        task_loss_weight: weight of the student's cross-entropy (stage 1 of the paper: 0).
        projection: learn a 1x1 convolution from the student's to the teacher's channels wherever they differ
            (not in the paper; for pruned or thinner students). ``False``: a mismatch is an error at setup.
        input_shape: (C, H, W) of one input, to check channels (and build projections) at setup when the
            trainer has no datamodule with ``example_input``.
        max_loss_growth: the explosion guard: training stops with a ``FloatingPointError`` when the FSP loss of a
            step exceeds this factor times the first (non-zero) step loss of the fit; ``None`` disables it
            (non-finite losses always stop the fit). Default 1000: a diverging stage 1 grows by orders of magnitude
            within a few steps, far beyond the transient rises of a stage 1 that trains.
        optim: as for ``ImageClassifier``; ``None`` gives :data:`DEFAULT_OPTIM` (Adam, lr 1e-3, no weight decay).
        scheduler, student_plan: see :class:`~lightning_compress.distillation.base.DistillationModule`.

    With ``task_loss_weight == 0`` the student parameters the FSP loss does not reach (the classifier head) are
    frozen during the fit (found by one backward pass at setup, unfrozen at teardown): they would get no gradient
    anyway, and DDP then needs no ``find_unused_parameters``.

    Logs ``train/loss`` (total), ``fsp/loss`` (weighted FSP sum), ``fsp/pair_<i>`` (each pair, unweighted),
    ``train/ce``, ``train/acc``; ``val/fsp_loss``, ``val/loss``, ``val/acc``; ``test/acc``.

    Warns when the student has more parameters than the teacher (see ``DistillationModule``).

    Raises:
        FloatingPointError: (in training) the FSP loss is not finite or grew more than ``max_loss_growth`` times.
        ValueError: bad weights/pool/reduction/max_loss_growth, pair lists of different lengths, unknown module
            names (listing the available ones), or (at setup) unequal channels at a pair without ``projection``
            (listing both shapes).
    """

    def __init__(self, net: nn.Module, teacher: nn.Module | FrozenTeacher | None = None, num_classes: int = 10,
                 pairs: Sequence[Sequence[str]] | None = None, teacher_pairs: Sequence[Sequence[str]] | None = None,
                 pair_weights: Sequence[float] | None = None, pool: str = "max", reduction: str = "normalized",
                 distill_loss_weight: float = 1.0, task_loss_weight: float = 0.0, projection: bool = False,
                 input_shape: Sequence[int] | None = None, max_loss_growth: float | None = MAX_LOSS_GROWTH,
                 optim: Mapping[str, Any] | None = None, scheduler: Mapping[str, Any] | None = None,
                 student_plan: Mapping[str, Any] | None = None) -> None:
        super().__init__(net, teacher, num_classes, DEFAULT_OPTIM if optim is None else optim, scheduler,
                         student_plan)
        if pool not in POOLS:
            raise ValueError(f"`pool` must be one of {POOLS}, got {pool!r}.")
        if reduction not in REDUCTIONS:
            raise ValueError(f"`reduction` must be one of {REDUCTIONS}, got {reduction!r}.")
        for name, value in (("distill_loss_weight", distill_loss_weight), ("task_loss_weight", task_loss_weight)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"`{name}` must be a number >= 0, got {value!r}.")
        if distill_loss_weight == 0 and task_loss_weight == 0:
            raise ValueError("`distill_loss_weight` and `task_loss_weight` must not both be 0, got 0 and 0.")
        if max_loss_growth is not None and (isinstance(max_loss_growth, bool) or not isinstance(
                max_loss_growth, (int, float)) or not max_loss_growth > 1):
            raise ValueError(f"`max_loss_growth` must be a number > 1 or None, got {max_loss_growth!r}.")
        if not isinstance(projection, bool):
            raise TypeError(f"`projection` must be a bool, got {projection!r}.")
        self.pairs = _as_pairs("pairs", pairs) if pairs is not None else default_pairs(net)
        if teacher_pairs is not None:
            self.teacher_pairs = _as_pairs("teacher_pairs", teacher_pairs)
        elif pairs is None and self.teacher is not None:
            self.teacher_pairs = default_pairs(self.teacher.net)
        else:
            self.teacher_pairs = list(self.pairs)
        if len(self.teacher_pairs) != len(self.pairs):
            raise ValueError(f"`teacher_pairs` must have as many pairs as `pairs` ({len(self.pairs)}), "
                             f"got {len(self.teacher_pairs)}: {self.teacher_pairs!r}.")
        weights = [1.0] * len(self.pairs) if pair_weights is None else [float(w) for w in pair_weights]
        if len(weights) != len(self.pairs) or any(w < 0 for w in weights):
            raise ValueError(f"`pair_weights` must be {len(self.pairs)} numbers >= 0 (one per pair), got "
                             f"{list(pair_weights or [])!r}.")
        if input_shape is not None and (len(input_shape) != 3 or any(int(s) < 1 for s in input_shape)):
            raise ValueError(f"`input_shape` must be (C, H, W) of positive ints, got {input_shape!r}.")
        self.pair_weights = weights
        self.pool, self.reduction = pool, reduction
        self.distill_loss_weight, self.task_loss_weight = float(distill_loss_weight), float(task_loss_weight)
        self.projection = projection
        self.max_loss_growth = None if max_loss_growth is None else float(max_loss_growth)
        self._first_loss: float | None = None  # the guard's reference: the first non-zero step loss of the fit
        self.input_shape = tuple(int(s) for s in input_shape) if input_shape is not None else None
        self.projections = nn.ModuleDict()  # "pair<i>_<first|second>" -> 1x1 conv (only with projection=True)
        self._student_rec = FeatureRecorder(net, [name for pair in self.pairs for name in pair])
        self._teacher_rec = self._teacher_recorder()
        self._checked = False
        self._frozen: list[nn.Parameter] = []  # unreached by the FSP loss, frozen during a fit (see setup)
        self.save_hyperparameters({
            **self.base_hparams(num_classes), "pairs": [list(p) for p in self.pairs],
            "teacher_pairs": [list(p) for p in self.teacher_pairs], "pair_weights": weights, "pool": pool,
            "reduction": reduction, "distill_loss_weight": self.distill_loss_weight,
            "task_loss_weight": self.task_loss_weight, "projection": projection,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "max_loss_growth": self.max_loss_growth,
        })

    # -- setup: hooks, shape check, projections ------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        super().setup(stage)
        self._student_rec.attach()
        if self._teacher_rec is not None:
            self._teacher_rec.attach()
        if stage != "fit":
            return
        example = self._example_input()
        if example is None and self.projection:
            raise ValueError("`input_shape` must be given with `projection=True` when the trainer has no "
                             "datamodule with `example_input`, got None (projections are built at setup).")
        if example is not None:
            if not self._checked:
                self.check_pairs(example)
            self._freeze_unreached(example)

    def teardown(self, stage: str) -> None:
        self._student_rec.detach()
        if self._teacher_rec is not None:
            self._teacher_rec.detach()
        for param in self._frozen:
            param.requires_grad_(True)
        self._frozen = []

    def _freeze_unreached(self, example: Tensor) -> None:
        """With ``task_loss_weight == 0``, freeze the student parameters the FSP loss does not reach (the classifier
        head) for this fit: DDP then needs no ``find_unused_parameters`` and weight decay leaves them alone.
        ``teardown`` unfreezes them (stage 2 trains them)."""
        if self.task_loss_weight > 0 or self._frozen:
            return
        params = [p for p in self.net.parameters() if p.requires_grad]
        was_training = self.net.training
        self.net.eval()
        try:
            with torch.enable_grad():
                _, loss, _ = self.fsp_losses(example.to(next(self.net.parameters()).device))
                grads = torch.autograd.grad(loss, params, allow_unused=True)
        finally:
            self.net.train(was_training)
        self._frozen = [p for p, g in zip(params, grads) if g is None]
        for param in self._frozen:
            param.requires_grad_(False)

    def _example_input(self) -> Tensor | None:
        if self.input_shape is not None:
            return torch.zeros(2, *self.input_shape)
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "example_input"):
            return datamodule.example_input(2)
        return None

    def _teacher_recorder(self) -> FeatureRecorder | None:
        if self.teacher is None:
            return None
        try:
            return FeatureRecorder(self.teacher.net, [n for p in self.teacher_pairs for n in p])
        except ValueError as err:
            source = f" from {self.teacher.source!r}" if self.teacher.source else ""
            raise TeacherMismatchError(f"the teacher ({type(self.teacher.net).__name__}{source}) does not fit "
                                       f"`teacher_pairs`: {err}") from err

    def check_pairs(self, example: Tensor) -> list[dict[str, Any]]:
        """Run student and teacher once on ``example`` and check every pair; build projections if enabled.

        Returns one dict per pair with the student's and teacher's feature shapes (C, H, W).

        Raises:
            ValueError: unequal channels at some pair and ``projection`` is off (all such pairs are listed).
        """
        if self.teacher is None or self._teacher_rec is None:
            raise ValueError("`teacher` must be given to check the FSP pairs, got None.")
        student_feats, teacher_feats = self._probe(example)
        return self._check_shapes(student_feats, teacher_feats)

    def _probe(self, example: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        was_training, was_attached = self.net.training, self._student_rec.attached
        self._student_rec.attach()
        self._teacher_rec.attach()
        try:
            self.net.eval()
            device = next(self.net.parameters()).device
            with torch.no_grad():
                self.net(example.to(device))
                student_feats = self._student_rec.collect()
                self.teacher(example.to(device))
                teacher_feats = self._teacher_rec.collect()
        finally:
            self.net.train(was_training)
            if not was_attached:
                self._student_rec.detach()
                self._teacher_rec.detach()
        return student_feats, teacher_feats

    def _check_shapes(self, student_feats: list[Tensor], teacher_feats: list[Tensor]) -> list[dict[str, Any]]:
        report, problems = [], []
        for i, (s_pair, t_pair) in enumerate(zip(self.pairs, self.teacher_pairs)):
            s_shapes = [tuple(student_feats[2 * i + k].shape[1:]) for k in (0, 1)]
            t_shapes = [tuple(teacher_feats[2 * i + k].shape[1:]) for k in (0, 1)]
            report.append({"pair": i, "student": s_pair, "teacher": t_pair, "student_shapes": s_shapes,
                           "teacher_shapes": t_shapes})
            for k, side in enumerate(("first", "second")):
                if s_shapes[k][0] == t_shapes[k][0]:
                    continue
                if self.projection:
                    key = f"pair{i}_{side}"
                    if key not in self.projections:
                        device = next(self.net.parameters()).device
                        self.projections[key] = nn.Conv2d(s_shapes[k][0], t_shapes[k][0], 1, bias=False).to(device)
                else:
                    problems.append(f"pair {i} ({side}): student {s_pair[k]!r} {s_shapes[k]} vs teacher "
                                    f"{t_pair[k]!r} {t_shapes[k]}")
        if problems:
            raise ValueError("FSP needs equal channel counts at each pair (student and teacher feature shapes are "
                             "(C, H, W)); got: " + "; ".join(problems)
                             + ". HINT: pair other layers, or set `projection: true` to learn 1x1 convolutions.")
        self._checked = True
        return report

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        yield from (p for p in self.net.parameters() if p.requires_grad)
        yield from self.projections.parameters()

    # -- training ------------------------------------------------------------------------------------------------
    def fsp_losses(self, images: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Student logits, the weighted FSP loss and each pair's loss for a batch (runs both networks)."""
        self._student_rec.attach()
        self._teacher_rec.attach()
        logits = self.net(images)
        student_feats = self._student_rec.collect()
        self.teacher(images)
        teacher_feats = self._teacher_rec.collect()
        if not self._checked:
            self._check_shapes(student_feats, teacher_feats)
        student_feats = [self._project(i, f) for i, f in enumerate(student_feats)]
        with torch.autocast(device_type=images.device.type, enabled=False):  # FSP sums many products: keep fp32
            g_s = [fsp_matrix(student_feats[2 * i].float(), student_feats[2 * i + 1].float(), self.pool)
                   for i in range(len(self.pairs))]
            g_t = [fsp_matrix(teacher_feats[2 * i].float(), teacher_feats[2 * i + 1].float(), self.pool)
                   for i in range(len(self.pairs))]
            total, per_pair = fsp_loss(g_s, g_t, self.pair_weights, self.reduction)
        return logits, total, per_pair

    def _project(self, index: int, feature: Tensor) -> Tensor:
        key = f"pair{index // 2}_{'first' if index % 2 == 0 else 'second'}"
        return self.projections[key](feature) if key in self.projections else feature

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        images, labels = batch
        logits, distill, per_pair = self.fsp_losses(images)
        self._check_loss(distill)
        ce = F.cross_entropy(logits, labels)
        loss = total_loss({"fsp": (self.distill_loss_weight, distill), "ce": (self.task_loss_weight, ce)},
                          images.device)
        self.train_acc(logits.float(), labels)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("fsp/loss", distill, on_step=True, on_epoch=True, prog_bar=True)
        for i, part in enumerate(per_pair):
            self.log(f"fsp/pair_{i}", part, on_step=False, on_epoch=True)
        self.log("train/ce", ce, on_step=False, on_epoch=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def on_train_start(self) -> None:
        self._first_loss = None  # each fit has its own reference

    def _check_loss(self, distill: Tensor) -> None:
        """The guard: stop the fit when the FSP loss is not finite or has grown more than ``max_loss_growth`` times
        its first non-zero value of the fit (a finite but exploding loss leaves weights that give NaN later). Under
        DDP every rank stops when one does."""
        value = float(distill.detach())
        if self._first_loss is None and math.isfinite(value) and value > 0:
            self._first_loss = value
        finite = math.isfinite(value)
        grown = (finite and self.max_loss_growth is not None and self._first_loss is not None
                 and value > self.max_loss_growth * self._first_loss)
        bad = not finite or grown
        if self._trainer is not None:
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return
        hint = ("HINT: lower stage 1's lr (`method.stage1.optim.lr`), use Adam (the default when no `optim` is "
                "given), or `reduction: normalized` (scale-free; the paper's `sum` grows with the widths).")
        if not finite:
            raise FloatingPointError(f"the FSP loss is not finite at step {self.global_step} (got {value}). {hint}")
        if grown:
            raise FloatingPointError(
                f"the FSP loss exploded at step {self.global_step}: {value:.4g} is more than `max_loss_growth`="
                f"{self.max_loss_growth:g} times its first-step value {self._first_loss:.4g}. {hint} "
                "`max_loss_growth: null` disables this check.")
        raise FloatingPointError(f"the FSP loss is not finite or exploded on another process at step "
                                 f"{self.global_step}. {hint}")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        if self.teacher is None:
            super().validation_step(batch, batch_idx)
            self._student_rec.clear()
            return
        images, labels = batch
        logits, distill, _ = self.fsp_losses(images)
        self.log("val/fsp_loss", distill, on_epoch=True, prog_bar=True)
        self.log("val/loss", F.cross_entropy(logits, labels), on_epoch=True)
        self.val_acc(logits.float(), labels)
        self.log("val/acc", self.val_acc, on_step=False, on_epoch=True, prog_bar=True)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        super().test_step(batch, batch_idx)
        self._student_rec.clear()

    # -- checkpoints ---------------------------------------------------------------------------------------------
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Rebuild the projections a checkpoint holds before its weights are loaded."""
        super().on_load_checkpoint(checkpoint)
        for key, value in checkpoint.get("state_dict", {}).items():
            if key.startswith("projections.") and key.endswith(".weight"):
                name = key[len("projections."):-len(".weight")]
                if name not in self.projections:
                    out_c, in_c = int(value.shape[0]), int(value.shape[1])
                    self.projections[name] = nn.Conv2d(in_c, out_c, 1, bias=False)


def _as_pairs(name: str, pairs: Sequence[Sequence[str]]) -> list[Pair]:
    if isinstance(pairs, str) or not isinstance(pairs, Sequence) or not pairs:
        raise ValueError(f"`{name}` must be a non-empty list of [first, second] feature names, got {pairs!r}.")
    out = []
    for pair in pairs:
        if isinstance(pair, str) or len(pair) != 2 or not all(isinstance(p, str) for p in pair):
            raise ValueError(f"`{name}` entries must be [first, second] feature names, got {pair!r}.")
        out.append((pair[0], pair[1]))
    return out
