"""The slimming penalty: added once per optimizer step, to unscaled gradients, identically under AMP."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.precision import MixedPrecision
from torch import nn

from lightning_compress.callbacks import NetworkSlimming
from tests.helpers import tiny_data, tiny_module

LAMBDA = 1e-2


class GradSpy(pl.Callback):
    """Records the gradient of every BN scale at ``on_before_optimizer_step`` (after the callbacks before it)."""

    def __init__(self) -> None:
        self.grads: list[list[torch.Tensor]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.grads.append([m.weight.grad.detach().clone() for m in pl_module.net.modules()
                           if isinstance(m, nn.BatchNorm2d)])


class ZeroTaskLoss(pl.LightningModule):
    """Wraps a module; the task gradient is exactly zero, so a gamma update is the penalty alone."""

    def __init__(self, inner: pl.LightningModule) -> None:
        super().__init__()
        self.net = inner.net

    def training_step(self, batch, batch_idx):
        return (self.net(batch[0]) * 0.0).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.net.parameters(), lr=1.0)


def _gammas(module: pl.LightningModule) -> list[torch.Tensor]:
    return [m.weight.detach().clone() for m in module.net.modules() if isinstance(m, nn.BatchNorm2d)]


def _fit(make_trainer, module, callbacks, **trainer_kwargs):
    trainer = make_trainer(callbacks=callbacks, limit_val_batches=0, **trainer_kwargs)
    trainer.fit(module, datamodule=tiny_data())
    return trainer


def _precision(name: str) -> dict:
    if name == "16-mixed":  # Lightning maps 16-mixed on CPU to bf16; force fp16 autocast + a real GradScaler
        return {"plugins": [MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu", init_scale=1024.0))]}
    return {"precision": name}


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed"])
def test_penalty_update_is_the_same_under_amp(make_trainer, precision):
    """With a zero task gradient, one SGD step (lr=1) must move gamma by exactly -lambda*sign(gamma).

    Under 16-mixed the loss is scaled by 1024: a penalty added before unscaling would shrink 1024x.
    """
    torch.manual_seed(0)
    module = ZeroTaskLoss(tiny_module())
    start = _gammas(module)
    callback = NetworkSlimming(sparsity_lambda=LAMBDA, prune=False, plot_dir="", verbose=False)
    _fit(make_trainer, module, [callback], limit_train_batches=1, **_precision(precision))
    assert callback.penalty_steps == 1
    for before, after in zip(start, _gammas(module)):
        torch.testing.assert_close(after, before - LAMBDA * torch.sign(before), rtol=0, atol=1e-7)


def test_penalty_is_added_once_per_optimizer_step_with_accumulation(make_trainer):
    torch.manual_seed(0)
    module = tiny_module()
    before, after = GradSpy(), GradSpy()
    callback = NetworkSlimming(sparsity_lambda=LAMBDA, prune=False, plot_dir="", verbose=False)
    _fit(make_trainer, module, [before, callback, after], accumulate_grad_batches=2, limit_train_batches=4)
    assert callback.penalty_steps == 2 == len(before.grads) == len(after.grads)
    # The penalty is added to the accumulated gradient exactly once: after - before == lambda * sign(gamma).
    for grads_before, grads_after in zip(before.grads, after.grads):
        for g0, g1 in zip(grads_before, grads_after):
            diff = g1 - g0
            assert torch.allclose(diff.abs(), torch.full_like(diff, LAMBDA), atol=1e-6)


def test_init_gamma_sets_every_prunable_scale(make_trainer):
    module = tiny_module()
    callback = NetworkSlimming(sparsity_lambda=0.0, init_gamma=0.5, prune=False, plot_dir="", verbose=False)
    _fit(make_trainer, module, [callback], limit_train_batches=1, max_steps=0)
    assert all(torch.all(g == 0.5) for g in _gammas(module))
    assert callback.gamma_initialised


@pytest.mark.parametrize(("small_fraction", "cut", "warns"), [
    (0.390, 0.399, False),  # the removed channels are almost all small (slim40_s3e3_s0: the cut cost nothing)
    (0.009, 0.400, True),   # nothing sparsified: the cut goes into large scales
    (0.300, 0.400, True),   # a quarter of the removed channels were still large
])
def test_sparsity_warning_tolerates_a_cut_just_past_the_small_scales(small_fraction, cut, warns, recwarn):
    callback = NetworkSlimming(pruning_ratio=cut)
    total = 1000
    small = int(small_fraction * total)
    callback._gammas = [torch.cat([torch.full((small,), 1e-3), torch.full((total - small,), 0.5)])]
    callback._report_sparsity(removed=int(cut * total), total=total)
    messages = [str(w.message) for w in recwarn if "did not become small" in str(w.message)]
    assert bool(messages) == warns, messages
    assert callback.sparsity_report["frac_below_small_gamma"] == pytest.approx(small / total)
