"""The run without a compression method: train the configured network, test it, record ``final``."""

from __future__ import annotations

from lightning_compress.pipeline.builders import build_net
from lightning_compress.pipeline.context import RunContext
from lightning_compress.pipeline.stages import fit_classifier, record_stage


def run_plain(ctx: RunContext) -> None:
    """Train ``cfg.model`` on ``cfg.data`` for ``trainer.max_epochs`` and record its test accuracy and size."""
    net = build_net(ctx.cfg.model)
    module, _ = fit_classifier(ctx, "train", net, int(ctx.cfg.trainer.max_epochs))
    record_stage(ctx, "final", module, net)
