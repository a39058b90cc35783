"""The pruning papers' pipeline: baseline -> compress (fit with the method's callback) -> fine-tune -> test.

``cfg.method`` (from ``conf/method/<name>.yaml``) holds:

* ``callback``: the compression callback (``_target_`` + arguments). After its fit the callback exposes ``plan``
  (the :class:`~lightning_compress.pruning.PruningPlan` relative to the unpruned network) and the network is
  physically smaller.
* ``pretrained``: a saved model (``stages/baseline/model.pt`` of an earlier run, or a Lightning checkpoint) that
  replaces baseline training; ``compressed``: a saved compressed model that skips baseline and compression.
* ``baseline.epochs``; ``compress.epochs``, ``compress.optim`` (overrides of ``module.optim``) and
  ``compress.from_scratch`` (the compress fit starts from fresh weights, as Network Slimming's sparsity training
  does, instead of from the baseline), ``compress.scheduler`` (overrides of ``module.scheduler``, e.g.
  ``{name: constant}`` for Li et al.'s constant-lr retraining); ``finetune.epochs``, ``finetune.optim`` and
  ``finetune.scheduler``.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback

from lightning_compress.pipeline.artifacts import load_stage_model
from lightning_compress.pipeline.builders import build_classifier, build_net
from lightning_compress.pipeline.context import RunContext
from lightning_compress.pipeline.stages import fit_classifier, record_stage


def run_pruning_method(ctx: RunContext) -> None:
    """Run every stage of ``cfg.method`` and fill ``baseline``, ``compressed`` and ``final`` in the record."""
    method = ctx.cfg.method
    callback = hydra.utils.instantiate(method.callback)  # validates its arguments before any training
    if not isinstance(callback, Callback):
        raise TypeError(f"`method.callback` must build a Lightning Callback, got {type(callback).__name__}.")
    if method.get("compressed"):
        net, plan = load_stage_model(method.compressed, ctx.cfg.model, key="method.compressed", same_model=True)
        ctx.record["loaded_compressed"] = str(method.compressed)
    else:
        net = _baseline(ctx, method)
        compress = method.get("compress") or {}
        start = build_net(ctx.cfg.model) if compress.get("from_scratch", False) else net
        module, _ = fit_classifier(ctx, "compress", start, int(compress.get("epochs", 0)), [callback],
                                   optim=compress.get("optim"), scheduler=compress.get("scheduler"))
        net, plan = start, _final_plan(ctx, callback, module)
        record_stage(ctx, "compressed", module, net, plan)
    finetune = method.get("finetune") or {}
    # A finished callback rides along (it only writes the pruning plan into every fine-tune checkpoint).
    riders = [callback] if getattr(callback, "finished", False) else []
    module, _ = fit_classifier(ctx, "finetune", net, int(finetune.get("epochs", 0)), riders,
                               optim=finetune.get("optim"), scheduler=finetune.get("scheduler"))
    record_stage(ctx, "final", module, net, plan)


def _final_plan(ctx: RunContext, callback: Callback, module) -> object:
    """The callback's plan; a callback that could only mask (e.g. FPGM under ``ddp_spawn``) is finalised here."""
    plan = getattr(callback, "plan", None)
    if plan is None and getattr(callback, "prune", False) and hasattr(callback, "finalize"):
        callback.finalize(module, ctx.datamodule.example_input(1))
        plan = getattr(callback, "plan", None)
    return plan


def _baseline(ctx: RunContext, method: DictConfig):
    """Train the baseline network, or load ``method.pretrained``; record its numbers as ``baseline``."""
    if method.get("pretrained"):
        net, _ = load_stage_model(method.pretrained, ctx.cfg.model, key="method.pretrained", same_model=True)
        record_stage(ctx, "baseline", build_classifier(ctx.cfg, net), net)
        ctx.record["baseline"]["loaded_from"] = str(method.pretrained)
        return net
    net = build_net(ctx.cfg.model)
    epochs = int((method.get("baseline") or {}).get("epochs", ctx.cfg.trainer.max_epochs))
    module, _ = fit_classifier(ctx, "baseline", net, epochs)
    record_stage(ctx, "baseline", module, net)
    return net
