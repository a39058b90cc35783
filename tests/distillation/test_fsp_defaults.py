"""FSP's defaults on the networks users bring: the scale-free normalised loss, Adam for stage 1, the guard that stops
an exploding (not only a non-finite) loss, and the warning for a student larger than its teacher."""

from __future__ import annotations

import warnings

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from lightning_compress.distillation import FSPDistillation, KnowledgeDistillation, fsp_loss, fsp_matrix
from lightning_compress.distillation.fsp import DEFAULT_OPTIM, MAX_LOSS_GROWTH
from lightning_compress.functional.distillation import fsp_pair_loss
from tests.helpers import NUM_CLASSES, SCHEDULER


def _loss(features: list[torch.Tensor], scale: float, reduction: str) -> float:
    s1, s2, t1, t2 = (scale * f for f in features)
    return float(fsp_loss([fsp_matrix(s1, s2)], [fsp_matrix(t1, t2)], reduction=reduction)[0])


def test_normalized_reduction_is_scale_free_and_the_papers_sum_is_not():
    features = [torch.randn(4, 8, 6, 6), torch.randn(4, 16, 3, 3), torch.randn(4, 8, 6, 6), torch.randn(4, 16, 3, 3)]
    assert _loss(features, 100.0, "normalized") == pytest.approx(_loss(features, 1.0, "normalized"), rel=1e-5)
    # the same test on the paper's sum: every feature x100 -> every FSP entry x1e4 -> the loss x1e8
    assert _loss(features, 100.0, "sum") == pytest.approx(1e8 * _loss(features, 1.0, "sum"), rel=1e-4)


@pytest.mark.parametrize("width", [4, 64])
def test_normalized_reduction_is_one_for_a_zero_student_at_any_width(width):
    teacher = 1e3 * torch.randn(2, width, width)
    assert float(fsp_pair_loss(torch.zeros_like(teacher), teacher, "normalized")) == pytest.approx(1.0, rel=1e-5)
    assert float(fsp_pair_loss(teacher.clone(), teacher, "normalized")) == 0.0
    zeros = torch.zeros(2, width, width)  # a dead teacher: floored denominator, no NaN
    assert float(fsp_pair_loss(zeros, zeros, "normalized")) == 0.0


def test_fsp_module_defaults_are_the_normalized_loss_and_adam(resnet, data, make_trainer):
    module = FSPDistillation(resnet(8), resnet(14), num_classes=NUM_CLASSES)
    assert module.reduction == "normalized" and module.max_loss_growth == MAX_LOSS_GROWTH
    assert module.optim_config == DEFAULT_OPTIM == {"name": "adam", "lr": 1e-3, "weight_decay": 0.0}
    trainer = make_trainer(max_epochs=1)
    trainer.fit(module, datamodule=data)
    optimizer = trainer.optimizers[0]
    assert type(optimizer) is torch.optim.Adam and optimizer.defaults["lr"] == 1e-3
    assert optimizer.defaults["weight_decay"] == 0.0 and torch.isfinite(trainer.callback_metrics["fsp/loss"])


class ScaleStudent(pl.Callback):
    """Multiplies every BN scale and shift of the student after each step: (train-mode) features grow by ``factor``
    per step whatever the optimiser does, so the FSP loss grows geometrically while staying finite."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        with torch.no_grad():
            for module in pl_module.net.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.weight.mul_(self.factor)
                    module.bias.mul_(self.factor)


def _fsp(resnet, **kwargs) -> FSPDistillation:
    optim = {"name": "sgd", "lr": 1e-6, "momentum": 0.0, "weight_decay": 0.0}
    return FSPDistillation(resnet(8), resnet(14), num_classes=NUM_CLASSES, optim=optim, scheduler=SCHEDULER, **kwargs)


@pytest.mark.parametrize("reduction", ["normalized", "sum"])
def test_an_exploding_finite_loss_stops_the_fit_with_a_hint(reduction, resnet, data, make_trainer):
    module = _fsp(resnet, reduction=reduction)
    trainer = make_trainer(max_epochs=3, callbacks=[ScaleStudent(4.0)])
    with pytest.raises(FloatingPointError, match=r"the FSP loss exploded at step \d+: .* more than "
                                                 r"`max_loss_growth`=1000 times its first-step value .*HINT: lower "
                                                 r"stage 1's lr.*`max_loss_growth: null` disables"):
        trainer.fit(module, datamodule=data)
    assert 0 < trainer.global_step < 8  # caught within a few steps of the start, long before the end of the fit


def test_the_growth_check_can_be_disabled_and_a_non_finite_loss_still_stops(resnet, data, make_trainer):
    module = _fsp(resnet, max_loss_growth=None)
    trainer = make_trainer(max_epochs=1, callbacks=[ScaleStudent(4.0)])
    trainer.fit(module, datamodule=data)  # 4 steps: the loss grows ~1e9 times, still finite
    assert trainer.state.finished and trainer.global_step == 4
    with torch.no_grad():
        module.net.bn1.weight.fill_(float("inf"))
    with pytest.raises(FloatingPointError, match=r"the FSP loss is not finite at step \d+ .*HINT"):
        make_trainer(max_epochs=1).fit(module, datamodule=data)


@pytest.mark.parametrize("value", [1.0, 0, True, "10"])
def test_max_loss_growth_must_be_a_number_above_one(value, resnet):
    with pytest.raises(ValueError, match=r"`max_loss_growth` must be a number > 1 or None"):
        _fsp(resnet, max_loss_growth=value)


def _count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("module_cls", [FSPDistillation, KnowledgeDistillation])
def test_a_student_larger_than_its_teacher_warns_with_both_counts(module_cls, resnet):
    student, teacher = resnet(14), resnet(8)
    match = (rf"student \(CifarResNet, {_count(student):,} parameters\) has more parameters than the teacher "
             rf"\(CifarResNet, {_count(teacher):,} parameters\).*HINT")
    with pytest.warns(UserWarning, match=match):
        module_cls(student, teacher, num_classes=NUM_CLASSES)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module_cls(resnet(8), resnet(14), num_classes=NUM_CLASSES)
        module_cls(resnet(8), resnet(8), num_classes=NUM_CLASSES)  # equal sizes (FSP's fast optimisation): fine
    assert not [w for w in caught if "more parameters" in str(w.message)]


def test_the_papers_sum_with_sgd_lr_0_1_explodes_and_is_stopped_while_the_normalized_default_trains(
        resnet, data, make_trainer):
    """The users' report in small: the summed loss with SGD at lr 0.1 (ImageClassifier's optimiser) grows by orders
    of magnitude in one step; the guard stops it at once. The normalized default trains with the same optimiser."""
    sgd = {"name": "sgd", "lr": 0.1, "momentum": 0.9}
    paper = FSPDistillation(resnet(8), resnet(14), num_classes=NUM_CLASSES, reduction="sum", optim=sgd,
                            scheduler=SCHEDULER)
    trainer = make_trainer(max_epochs=3)
    with pytest.raises(FloatingPointError, match=r"exploded at step 1: .*HINT"):
        trainer.fit(paper, datamodule=data)
    normalized = FSPDistillation(resnet(8), resnet(14), num_classes=NUM_CLASSES, optim=sgd, scheduler=SCHEDULER)
    trainer = make_trainer(max_epochs=3)
    trainer.fit(normalized, datamodule=data)
    assert trainer.state.finished and torch.isfinite(trainer.callback_metrics["fsp/loss"])
    assert all(torch.isfinite(p).all() for p in normalized.net.parameters())
