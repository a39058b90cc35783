"""The distillation pipeline behind ``python train.py +method=fsp`` / ``+method=kd`` (``method.kind: distill``).

Stages (each saved under ``<run>/stages/<stage>/model.pt``):

1. ``teacher``: train ``method.teacher_model`` for ``method.teacher_fit.epochs``, or load ``method.teacher``.
2. ``student_alone``: the student (same initial weights as the distilled one) trained with cross-entropy only for
   ``method.student_alone.epochs``: the recipes set the epochs of the fit that trains on the task (FSP: stage 2,
   as in the paper; KD: the KD fit), so the comparison is the paper's (stage 1 of FSP comes on top).
3. ``student_equal_compute``: the same, for ``method.student_equal_compute.epochs`` (null: stage1 + stage2, the
   distilled student's total epochs), so the gain over equal compute is measured too. When its epochs equal the
   student alone's it is not trained again: the entry repeats ``student_alone``'s numbers with ``same_as``.
4. ``stage1``: the distillation fit, ``method.module`` (``FSPDistillation``: FSP loss only; ``KnowledgeDistillation``:
   soft targets + CE) with the frozen teacher.
5. ``stage2``: from the stage-1 weights, cross-entropy only (FSP's second stage; 0 epochs for KD by default), or with
   ``method.stage2.distill: kd`` Hinton's KD from the same frozen teacher (``method.stage2.kd: {temperature, alpha}``;
   FSP then KD, not in either paper).

A stage given 0 epochs did not run: its section is ``{"status": "not run", "epochs": 0}`` with no ``test_acc``
(never the accuracy of an untrained network), and the gains that need it are ``null``.

The student is ``cfg.model`` (fresh weights) or ``method.student_weights`` (a saved, possibly pruned, model).
Fills ``teacher``, ``student_alone``, ``student_equal_compute`` and ``final`` in the run record, plus
``distillation`` (sources, epochs, pair shapes, stage-1 metrics, ``gain_vs_student_alone`` and
``gain_vs_equal_compute``).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn

from lightning_compress.distillation.base import DistillationModule
from lightning_compress.distillation.kd import KnowledgeDistillation
from lightning_compress.distillation.teacher import FrozenTeacher, TeacherMismatchError
from lightning_compress.loading import LoadError
from lightning_compress.pipeline.artifacts import read_stage_model, save_stage_model
from lightning_compress.pipeline.builders import build_classifier, build_net
from lightning_compress.pipeline.context import RunContext
from lightning_compress.pipeline.results import NOT_RUN
from lightning_compress.pipeline.stages import fit_classifier, fit_module, measure, test_accuracy

STAGE2_DISTILL = (None, "kd")


def run_distillation(ctx: RunContext) -> None:
    """Run teacher -> student_alone -> student_equal_compute -> stage1 (distil) -> stage2 (CE or KD) and record
    ``teacher``, ``student_alone``, ``student_equal_compute``, ``final`` and ``distillation`` in ``ctx.record``."""
    method = ctx.cfg.method
    factory = hydra.utils.instantiate(method.module, _partial_=True, _convert_="all")
    epochs = _stage_epochs(method)  # fails on bad epochs before any training
    stage2_factory = _stage2_factory(method)
    student, plan, student_cfg = _student(ctx)
    teacher_path = method.get("teacher")
    teacher_cfg = method.get("teacher_model") or ctx.cfg.model
    if teacher_path:
        saved = read_stage_model(teacher_path, "method.teacher", teacher_cfg)
        teacher, teacher_cfg = saved.net, saved.model_cfg
    else:
        teacher = build_net(teacher_cfg)
    try:
        pairs = _check_config(ctx, factory, stage2_factory, student, teacher, plan)  # fails before any training
    except TeacherMismatchError as err:
        if not teacher_path:
            raise
        raise LoadError(f"`method.teacher`={str(teacher_path)!r} does not fit this distillation: {err}", teacher_path,
                        "method.teacher") from None

    teacher_source = _teacher_stage(ctx, teacher, teacher_cfg, teacher_path, epochs["teacher"])
    initial = copy.deepcopy(student)  # same initial (or pruned) weights as the distilled student
    alone_optim = _optim(method, "student_alone")
    _student_alone(ctx, "student_alone", copy.deepcopy(initial), epochs["student_alone"], alone_optim, student_cfg,
                   plan)
    if 0 < epochs["student_equal_compute"] == epochs["student_alone"]:  # the same fit: not trained twice
        ctx.record["student_equal_compute"] = {**ctx.record["student_alone"], "same_as": "student_alone"}
    else:
        _student_alone(ctx, "student_equal_compute", initial, epochs["student_equal_compute"], alone_optim,
                       student_cfg, plan)

    frozen = FrozenTeacher(teacher, source=teacher_source)
    module = _build_module(ctx, factory, student, frozen, plan, optim=_optim(method, "stage1"))
    stage1_metrics = _distill_stage(ctx, "stage1", module, epochs["stage1"])
    if epochs["stage2"] > 0:
        if stage2_factory is None:
            fit_classifier(ctx, "stage2", student, epochs["stage2"], optim=_optim(method, "stage2"))
        else:
            kd = _build_module(ctx, stage2_factory, student, frozen, plan, optim=_optim(method, "stage2"))
            _distill_stage(ctx, "stage2", kd, epochs["stage2"])
    if epochs["stage1"] + epochs["stage2"] > 0:
        _record(ctx, "final", student, student_cfg, plan)
    else:
        _not_run(ctx, "final")

    ctx.record["distillation"] = {
        "module": type(module).__name__,
        "stage2": _stage2_entry(method),
        "teacher_source": teacher_source,
        "student_weights": str(method.get("student_weights")) if method.get("student_weights") else None,
        "epochs": epochs,
        "pairs": pairs,
        "stage1_metrics": stage1_metrics,
        "gain_vs_student_alone": _gain(ctx.record, "student_alone"),
        "gain_vs_equal_compute": _gain(ctx.record, "student_equal_compute"),
    }


def _teacher_stage(ctx: RunContext, teacher: nn.Module, teacher_cfg: DictConfig, path: str | None,
                   epochs: int | None) -> str:
    """Train the teacher (or keep the loaded one) and record it; returns where it came from (for checkpoints).

    A teacher given 0 epochs and no file is recorded as not run (it is distilled from at its initial weights, with
    a warning)."""
    if path:
        _record(ctx, "teacher", teacher, teacher_cfg)
        ctx.record["teacher"]["loaded_from"] = str(path)
        return str(path)
    if epochs == 0:
        rank_zero_warn("[lightning-compress] `method.teacher_fit.epochs` is 0 and no `method.teacher` is given: the "
                       "student is distilled from a teacher at its initial (random) weights.")
        _not_run(ctx, "teacher")
        return f"untrained {type(teacher).__name__} (method.teacher_fit.epochs=0)"
    fit_classifier(ctx, "teacher", teacher, epochs, optim=_optim(ctx.cfg.method, "teacher_fit"))
    _record(ctx, "teacher", teacher, teacher_cfg)
    ctx.record["teacher"]["epochs"] = epochs
    return str(ctx.record["teacher"]["model_path"])


def _student_alone(ctx: RunContext, section: str, net: nn.Module, epochs: int, optim: Mapping[str, Any],
                   model_cfg: DictConfig, plan: Any) -> None:
    """Train ``net`` with cross-entropy only for ``epochs`` as stage ``section`` and record it (0: not run)."""
    if epochs == 0:
        _not_run(ctx, section)
        return
    fit_classifier(ctx, section, net, epochs, optim=optim)
    _record(ctx, section, net, model_cfg, plan)
    ctx.record[section]["epochs"] = epochs


def _not_run(ctx: RunContext, section: str) -> None:
    """Record that stage ``section`` did not run: no accuracy, no saved model."""
    ctx.record[section] = {"status": NOT_RUN, "epochs": 0}


def _gain(record: Mapping[str, Any], reference: str) -> float | None:
    """``final`` minus ``reference`` test accuracy; None when either did not run."""
    final, other = record.get("final") or {}, record.get(reference) or {}
    if "test_acc" not in final or "test_acc" not in other:
        return None
    return final["test_acc"] - other["test_acc"]


def _distill_stage(ctx: RunContext, stage: str, module: DistillationModule, epochs: int) -> dict[str, float]:
    """Fit a distillation module as ``stage``; returns its last epoch-level metrics."""
    trainer = fit_module(ctx, stage, module, epochs)
    return {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1 and not k.endswith("_step")}


def _stage_epochs(method: DictConfig) -> dict[str, int | None]:
    """Every stage's epochs, checked: ``teacher`` (None with ``method.teacher``: loaded), ``student_alone``
    (required), ``student_equal_compute`` (null: stage1 + stage2), ``stage1``, ``stage2``."""
    stage1, stage2 = _epochs(method, "stage1"), _epochs(method, "stage2")
    alone = (method.get("student_alone") or {}).get("epochs")
    if alone is None:
        raise ValueError("`method.student_alone.epochs` must be an int >= 0 (the student trained without a teacher; "
                         "the recipes give it the epochs of the fit that trains on the task: FSP's stage 2, the KD "
                         "fit), got None.")
    return {
        "teacher": None if method.get("teacher") else _epochs(method, "teacher_fit"),
        "student_alone": _epochs(method, "student_alone"),
        "student_equal_compute": _epochs(method, "student_equal_compute", stage1 + stage2),
        "stage1": stage1,
        "stage2": stage2,
    }


def _stage2_factory(method: DictConfig) -> functools.partial | None:
    """``method.stage2.distill``: None (cross-entropy) or ``kd`` (a KnowledgeDistillation factory with
    ``method.stage2.kd``'s ``temperature`` and ``alpha``)."""
    stage2 = method.get("stage2") or {}
    distill = stage2.get("distill")
    if distill not in STAGE2_DISTILL:
        raise ValueError(f"`method.stage2.distill` must be null (cross-entropy) or 'kd', got {distill!r}.")
    kd = stage2.get("kd")
    if distill is None:
        return None
    kd = OmegaConf.to_container(kd, resolve=True) if isinstance(kd, DictConfig) else dict(kd or {})
    unknown = sorted(set(kd) - {"temperature", "alpha"})
    if unknown:
        raise ValueError(f"`method.stage2.kd` takes `temperature` and `alpha`, got unknown keys {unknown}.")
    return functools.partial(KnowledgeDistillation, **{k: v for k, v in kd.items() if v is not None})


def _stage2_entry(method: DictConfig) -> dict[str, Any]:
    """What stage 2 trained with, for the record: ``{"loss": "cross-entropy"}`` or KD's settings."""
    factory = _stage2_factory(method)
    if factory is None:
        return {"loss": "cross-entropy"}
    return {"loss": "kd", **factory.keywords}


def _student(ctx: RunContext) -> tuple[nn.Module, Any, DictConfig]:
    """The student: ``cfg.model`` with fresh weights, or ``method.student_weights`` (its plan re-applied)."""
    path = ctx.cfg.method.get("student_weights")
    if not path:
        return build_net(ctx.cfg.model), None, ctx.cfg.model
    saved = read_stage_model(path, "method.student_weights", ctx.cfg.model)
    return saved.net, saved.plan, saved.model_cfg


def _check_config(ctx: RunContext, factory: Any, stage2_factory: Any, student: nn.Module, teacher: nn.Module,
                  plan: Any) -> Any:
    """Build the distillation module(s) on copies once, so bad arguments and FSP channel mismatches fail first."""
    probe = _build_module(ctx, factory, copy.deepcopy(student), FrozenTeacher(copy.deepcopy(teacher)), plan,
                          optim=_optim(ctx.cfg.method, "stage1"))
    if stage2_factory is not None:
        _build_module(ctx, stage2_factory, copy.deepcopy(student), FrozenTeacher(copy.deepcopy(teacher)), plan,
                      optim=_optim(ctx.cfg.method, "stage2"))
    if hasattr(probe, "check_pairs"):
        return probe.check_pairs(ctx.datamodule.example_input(2))
    return None


def _build_module(ctx: RunContext, factory: Any, student: nn.Module, teacher: FrozenTeacher, plan: Any,
                  optim: Mapping[str, Any]) -> DistillationModule:
    module_cfg = OmegaConf.to_container(ctx.cfg.module, resolve=True)
    module = factory(net=student, teacher=teacher, num_classes=int(ctx.cfg.data.num_classes),
                     optim={**module_cfg.get("optim", {}), **optim}, scheduler=module_cfg.get("scheduler", {}),
                     student_plan=plan.to_dict() if plan is not None else None)
    if not isinstance(module, DistillationModule):
        raise TypeError(f"`method.module` must build a DistillationModule, got {type(module).__name__}.")
    return module


def _record(ctx: RunContext, section: str, net: nn.Module, model_cfg: DictConfig, plan: Any = None) -> dict:
    """Test, measure and save ``net`` with ITS model config (the teacher's may differ from ``cfg.model``)."""
    acc = test_accuracy(ctx, build_classifier(ctx.cfg, net), section)
    entry = {"test_acc": acc, **measure(ctx, net)}
    entry["model_path"] = str(save_stage_model(ctx.stage_dir(section) / "model.pt", net, model_cfg, plan,
                                               input_shape=ctx.datamodule.example_input(1).shape[1:]))
    ctx.record[section] = entry
    return entry


def _epochs(method: DictConfig, stage: str, default: int = 0) -> int:
    epochs = (method.get(stage) or {}).get("epochs")
    epochs = default if epochs is None else int(epochs)
    if epochs < 0:
        raise ValueError(f"`method.{stage}.epochs` must be >= 0, got {epochs!r}.")
    return epochs


def _optim(method: DictConfig, stage: str) -> dict[str, Any]:
    """``method.<stage>.optim`` without its null entries (null: keep ``module.optim``'s value)."""
    optim = (method.get(stage) or {}).get("optim") or {}
    optim = OmegaConf.to_container(optim, resolve=True) if isinstance(optim, DictConfig) else dict(optim)
    return {k: v for k, v in optim.items() if v is not None}


__all__ = ["run_distillation"]
