"""FPGMPruning in real (tiny) fits: schedule, masks against momentum, compact == soft-pruned, resume, bf16, errors."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from lightning_compress.callbacks import load_pruned_checkpoint
from lightning_compress.callbacks.fpgm import FPGMPruning
from lightning_compress.modules import ImageClassifier
from lightning_compress.pruning import ChannelMask, prune
from tests.helpers import tiny_data, tiny_module, tiny_resnet, tiny_vgg

FAST = {"limit_train_batches": 2, "limit_val_batches": 1}


def selected_rows(net: torch.nn.Module, plan) -> dict[str, torch.Tensor]:
    """Conv weight rows of the selected channels, by conv name."""
    modules = dict(net.named_modules())
    out = {}
    for name, layer in plan.layers.items():
        if layer.type == "Conv2d" and "out" in layer.slots:
            out[name] = modules[name].weight.detach()[list(layer.slots["out"].removed)]
    return out


def all_zero(rows: dict[str, torch.Tensor]) -> bool:
    return all(bool((r == 0).all()) for r in rows.values())


class Recorder(FPGMPruning):
    """Records, after every selection, whether the selected filters (and BN beta) are zero."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.zero_after_selection: list[bool] = []

    def _select(self, trainer: pl.Trainer, epoch: int, hold: bool = False) -> None:
        super()._select(trainer, epoch, hold)
        self.zero_after_selection.append(all_zero(selected_rows(self.net, self.selection)))


# ---------------------------------------------------------------------- configuration errors
@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"pruning_ratio": 1.0}, ValueError, r"`pruning_ratio` must be a float in \[0, 1\), got 1.0"),
    ({"pruning_ratio": -0.1}, ValueError, r"`pruning_ratio` must be a float in \[0, 1\)"),
    ({"pruning_ratio": "0.4"}, TypeError, r"`pruning_ratio` must be a float"),
    ({"pruning_ratio": True}, TypeError, r"`pruning_ratio` must be a float"),
    ({"pruning_ratio": {}}, ValueError, r"non-empty dict"),
    ({"pruning_ratio": {"conv*": 1.5}}, ValueError, r"`pruning_ratio\['conv\*'\]` must be a float in \[0, 1\)"),
    ({"pruning_ratio": {3: 0.5}}, TypeError, r"keys must be module-name globs"),
    ({"distance": "l3"}, ValueError, r"`distance` must be one of \('l2', 'l1', 'cos'\), got 'l3'"),
    ({"norm_ratio": 1.2}, ValueError, r"`norm_ratio` must be a float in \[0, 1\)"),
    ({"norm_ratio": 0.5, "pruning_ratio": 0.4}, ValueError, r"`norm_ratio` must be <= `pruning_ratio`"),
    ({"frequency": 0}, ValueError, r"`frequency` must be an int >= 1, got 0"),
    ({"frequency": 1.5}, TypeError, r"`frequency` must be an int >= 1"),
    ({"min_channels": 0}, ValueError, r"`min_channels` must be an int >= 1"),
    ({"round_to": True}, TypeError, r"`round_to` must be an int >= 1"),
    ({"soft_mode": "frozen"}, ValueError, r"`soft_mode` must be one of \('authors_code', 'paper', 'exact'"),
    ({"soft_mode": "strict"}, ValueError, r"renamed 'one_shot'"),
    ({"residual": "both"}, ValueError, r"`residual` must be one of \('couple', 'select'\)"),
    ({"prune": 1}, TypeError, r"`prune` must be a bool"),
    ({"ignored_layers": "conv1"}, TypeError, r"`ignored_layers` must be a list"),
    ({"submodule": 3}, TypeError, r"`submodule` must be a str or None"),
])
def test_bad_arguments_raise_in_init(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        FPGMPruning(**kwargs)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"pruning_ratio": {"nothing.*": 0.4}}, r"`pruning_ratio` glob 'nothing\.\*' matches no module"),
    ({"ignored_layers": ["nope"]}, r"`ignored_layers` glob 'nope' matches no module"),
    ({"ignored_layers": ["features.*"]}, r"no prunable channel group"),
    ({"submodule": "missing"}, r"`submodule` must name a submodule"),
])
def test_model_dependent_errors_raise_in_setup_before_training(make_trainer, kwargs: dict, match: str) -> None:
    module = tiny_module()
    before = copy.deepcopy(module.net.state_dict())
    with pytest.raises(ValueError, match=match):
        make_trainer(callbacks=[FPGMPruning(**kwargs)], **FAST).fit(module, datamodule=tiny_data())
    assert all(torch.equal(before[k], v) for k, v in module.net.state_dict().items())


# ---------------------------------------------------------------------- schedule and masks
def test_selects_before_training_at_epoch_0_and_every_frequency_epochs(make_trainer) -> None:
    callback = Recorder(pruning_ratio=0.5, frequency=2, prune=False)
    make_trainer(max_epochs=5, callbacks=[callback], **FAST).fit(tiny_module(), datamodule=tiny_data())
    assert callback.selection_epochs == [-1, 0, 2, 4]
    assert all(callback.zero_after_selection)
    assert callback.plan is None and not callback.finished  # prune=False: soft-pruned, full width
    # every group of the tiny VGG (8, 8, 16, 16 channels) loses int(N * 0.5) channels
    assert sorted(len(g.removed) for g in callback.selection.groups) == [4, 4, 8, 8]
    assert all_zero(selected_rows(callback.net, callback.selection))


@pytest.mark.parametrize("mode", ["authors_code", "paper", "exact", "one_shot"])
def test_final_mask_zeroes_whole_channels_incl_bn_gamma_and_beta(make_trainer, mode: str) -> None:
    callback = FPGMPruning(pruning_ratio=0.5, soft_mode=mode, prune=False)
    module = tiny_module()
    make_trainer(max_epochs=1, limit_train_batches=1, callbacks=[callback]).fit(module, datamodule=tiny_data())
    bn = module.net.features.bn1
    removed = callback.selection.removed("features.bn1", "channels")
    assert len(removed) == 4
    assert bool((bn.bias[removed] == 0).all()) and bool((bn.weight[removed] == 0).all())


class MomentumProbe(FPGMPruning):
    """Checks the selected filters right after each optimizer step, before the callback's own re-zeroing."""

    def __init__(self, *args: Any, late: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.late = late
        self.zero_after_step: list[bool] = []
        self.bn_kept_after_step: list[bool] = []  # the selected channels' BN gamma still non-zero

    def on_train_start(self, trainer, pl_module) -> None:
        if not self.late:  # late: first selection at the end of epoch 0, after SGD momentum has built up
            super().on_train_start(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.selection is not None:
            self.zero_after_step.append(all_zero(selected_rows(self.net, self.selection)))
            modules = dict(self.net.named_modules())
            self.bn_kept_after_step.append(all(
                bool((modules[name].weight.detach()[list(layer.slots["channels"].removed)] != 0).all())
                for name, layer in self.selection.layers.items() if layer.type == "BatchNorm2d"))
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


def _momentum_run(make_trainer, mode: str, optim: str = "sgd", late: bool = False) -> MomentumProbe:
    probe = MomentumProbe(pruning_ratio=0.5, soft_mode=mode, frequency=1, prune=False, late=late)
    module = tiny_module(tiny_vgg(), lr=0.1, weight_decay=5e-4)
    if optim != "sgd":
        module.optim_config = {"name": optim, "lr": 0.01, "weight_decay": 1e-2}
    make_trainer(max_epochs=2, limit_train_batches=3, callbacks=[probe]).fit(module, datamodule=tiny_data())
    return probe


@pytest.mark.parametrize(("optim", "late", "mode"), [("sgd", True, "exact"), ("adamw", True, "exact"),
                                                     ("sgd", False, "one_shot")])
def test_held_selections_stay_exactly_zero_against_momentum(make_trainer, optim: str, late: bool, mode: str) -> None:
    # exact over 2 epochs holds the selection made at the end of epoch 0 (its hard phase: the last epoch);
    # one_shot holds the one made before training
    probe = _momentum_run(make_trainer, mode, optim=optim, late=late)
    assert probe.selection_epochs == ([0] if late else [-1]) and probe.held
    assert len(probe.zero_after_step) == (3 if late else 6) and all(probe.zero_after_step)


def test_without_clearing_optimizer_state_momentum_revives_frozen_filters(make_trainer, monkeypatch) -> None:
    # The reference code's pitfall (he-y/filter-pruning-geometric-median#47): zeroed gradients alone do not stop the
    # momentum gathered before the selection from moving the zeroed filters.
    monkeypatch.setattr(ChannelMask, "zero_optimizer_state", lambda self, optimizer: None)
    probe = _momentum_run(make_trainer, "exact", late=True)
    assert len(probe.zero_after_step) == 3 and not any(probe.zero_after_step)


def test_authors_code_mode_masks_gradients_but_not_momentum_or_bn(make_trainer) -> None:
    # Selected before training (fresh optimizer, no momentum yet): masked gradients keep the filters at zero, as in
    # the authors' code; BN gamma/beta of those channels are left alone.
    probe = _momentum_run(make_trainer, "authors_code", late=False)
    assert probe.zero_after_step and all(probe.zero_after_step[:3])  # epoch 0: the before-training selection holds
    assert all(probe.bn_kept_after_step)
    # selected late, after momentum built up: the authors' code leaves momentum alone, so the filters move again
    late = _momentum_run(make_trainer, "authors_code", late=True)
    assert len(late.zero_after_step) == 3 and not any(late.zero_after_step)


def test_paper_mode_lets_selected_filters_regrow_between_selections(make_trainer) -> None:
    # late: BN beta has left its initial 0 by the selection; a zero filter whose channel emits ReLU(beta) > 0 gets
    # gradient (with beta = 0 the ReLU blocks it, in the reference code too).
    probe = _momentum_run(make_trainer, "paper", late=True)
    assert len(probe.zero_after_step) == 3 and not any(probe.zero_after_step)
    assert all_zero(selected_rows(probe.net, probe.selection))  # re-zeroed by the last selection
    assert probe.selection_epochs == [0, 1] and len(probe.changed_channels) == 2


# ---------------------------------------------------------------------- removal: compact == soft-pruned
class SoftSnapshot(FPGMPruning):
    """Keeps a copy of the soft-pruned network just before the physical removal."""

    def apply_plan(self, trainer, plan, *args, **kwargs) -> None:
        self.soft = copy.deepcopy(self.net)
        super().apply_plan(trainer, plan, *args, **kwargs)


@pytest.mark.parametrize(("net_fn", "mode", "residual"), [(tiny_vgg, "exact", "couple"),
                                                          (tiny_resnet, "paper", "couple"),
                                                          (tiny_resnet, "authors_code", "select")])
def test_compact_network_equals_the_soft_pruned_one(make_trainer, net_fn, mode: str, residual: str) -> None:
    callback = SoftSnapshot(pruning_ratio=0.4, soft_mode=mode, residual=residual)
    module, data = tiny_module(net_fn()), tiny_data()
    make_trainer(max_epochs=2, callbacks=[callback], **FAST).fit(module, datamodule=data)
    assert callback.finished and callback.plan.to_dict() == callback.selection.to_dict()
    assert callback.profile["after"]["macs"] < 0.75 * callback.profile["before"]["macs"]
    widths = {n: m.weight.shape[0] for n, m in module.net.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert widths != {n: m.weight.shape[0] for n, m in callback.soft.named_modules() if isinstance(m, torch.nn.Conv2d)}
    data.setup("fit")
    soft, compact = callback.soft.eval(), module.net.eval()
    correct_soft = correct_compact = 0
    with torch.no_grad():
        for batch in data.val_dataloader():
            images, labels = data.transform_batch(batch, train=False)
            a, b = soft(images), compact(images)
            torch.testing.assert_close(b, a, rtol=0, atol=1e-5 * float(a.abs().max()))
            correct_soft += int((a.argmax(1) == labels).sum())
            correct_compact += int((b.argmax(1) == labels).sum())
    assert correct_soft == correct_compact


def test_prune_false_then_engine_prune_and_finalize_give_the_same_network(make_trainer) -> None:
    callback = FPGMPruning(pruning_ratio=0.4, prune=False)
    module = tiny_module()
    make_trainer(max_epochs=1, callbacks=[callback], **FAST).fit(module, datamodule=tiny_data())
    by_engine = prune(copy.deepcopy(module.net), callback.selection)
    assert callback.finalize(module) is None and not callback.finished  # prune=False: finalize leaves the net alone
    callback.prune = True  # as under ddp_spawn: prune=True, but the fit could only mask in this process
    plan = callback.finalize(module)  # recovers the selection from the zeroed channels
    assert plan.to_dict()["layers"] == callback.selection.to_dict()["layers"] and callback.finished
    assert all(torch.equal(a, b) for a, b in zip(by_engine.state_dict().values(), module.net.state_dict().values()))


def test_glob_ratios_prune_only_the_matching_groups(make_trainer) -> None:
    callback = FPGMPruning(pruning_ratio={"features.conv3": 0.5, "features.conv1": 0.0}, norm_ratio=0.25)
    module = tiny_module()
    make_trainer(max_epochs=1, limit_train_batches=1, callbacks=[callback]).fit(module, datamodule=tiny_data())
    widths = [m.out_channels for m in module.net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert widths == [8, 8, 8, 16]


def test_fpgm_mix_takes_the_smallest_norm_filters_first(make_trainer) -> None:
    callback = FPGMPruning(pruning_ratio=0.5, norm_ratio=0.25, prune=False, soft_mode="exact")
    module = tiny_module()
    with torch.no_grad():
        module.net.features.conv3.weight[[2, 9]] *= 1e-3  # the two smallest filters of a 16-filter layer
    make_trainer(max_epochs=1, limit_train_batches=1, callbacks=[callback]).fit(module, datamodule=tiny_data())
    assert {2, 9} <= set(callback.selection.removed("features.conv3", "out"))


def test_state_dict_round_trip_restores_masks_and_counters(make_trainer) -> None:
    callback = FPGMPruning(pruning_ratio=0.4, prune=False)
    make_trainer(max_epochs=2, callbacks=[callback], **FAST).fit(tiny_module(), datamodule=tiny_data())
    fresh = FPGMPruning(pruning_ratio=0.4, prune=False)
    fresh.load_state_dict(callback.state_dict())
    assert fresh.selection.to_dict() == callback.selection.to_dict()
    assert fresh.selection_epochs == [-1, 0, 1] and fresh.changed_channels == callback.changed_channels
    assert fresh.state_dict() == callback.state_dict() and callback.state_key == fresh.state_key


def test_one_fit_leaves_a_last_checkpoint_with_the_pruned_network(tmp_path) -> None:
    callback = FPGMPruning(pruning_ratio=0.4, residual="select", verbose=False)
    checkpoint = ModelCheckpoint(dirpath=str(tmp_path), filename="{epoch}", save_last=True, save_top_k=-1)
    trainer = pl.Trainer(default_root_dir=str(tmp_path), accelerator="cpu", max_epochs=2, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[callback, checkpoint], **FAST)
    module = tiny_module(tiny_resnet())
    trainer.fit(module, datamodule=tiny_data())
    loaded = load_pruned_checkpoint(ImageClassifier, tmp_path / "last.ckpt", net=tiny_resnet())
    assert sum(p.numel() for p in loaded.net.parameters()) == sum(p.numel() for p in module.net.parameters())
    assert sum(p.numel() for p in loaded.net.parameters()) < sum(p.numel() for p in tiny_resnet().parameters())
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded.net.eval()(x), module.net.eval()(x))
    with pytest.raises(ValueError, match="written during soft pruning"):  # an epoch checkpoint before the removal
        load_pruned_checkpoint(ImageClassifier, tmp_path / "epoch=0.ckpt", net=tiny_resnet())


# ---------------------------------------------------------------------- resume and precision
class Crash(pl.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == 2 and batch_idx == 1:
            raise RuntimeError("simulated crash")


def _resume_fit(tmp_path, callbacks, ckpt_path=None, frequency: int = 2, validate: bool = False
                ) -> tuple[FPGMPruning, torch.nn.Module]:
    torch.manual_seed(0)
    images, labels = torch.randn(48, 1, 8, 8), torch.randint(0, 4, (48,))
    loader = DataLoader(TensorDataset(images, labels), batch_size=16, shuffle=False)
    callback = FPGMPruning(pruning_ratio=0.4, frequency=frequency, soft_mode="paper")
    # validate: check_val_every_n_epoch=2 makes ModelCheckpoint save at validation end, i.e. *before* this epoch's
    # selection in on_train_epoch_end; Lightning then resumes inside that epoch's end and the selection still runs.
    val = {"val_dataloaders": loader} if validate else {}
    trainer = pl.Trainer(default_root_dir=str(tmp_path), accelerator="cpu", max_epochs=4, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=1 if validate else 0, check_val_every_n_epoch=2 if validate else 1,
                         deterministic=True,
                         callbacks=[callback, ModelCheckpoint(dirpath=str(tmp_path), save_last=True), *callbacks])
    module = tiny_module(lr=0.05, weight_decay=5e-4)
    if callbacks:
        with pytest.raises(RuntimeError, match="simulated crash"):
            trainer.fit(module, train_dataloaders=loader, ckpt_path=ckpt_path, **val)
    else:
        trainer.fit(module, train_dataloaders=loader, ckpt_path=ckpt_path, **val)
    return callback, module.net


@pytest.mark.parametrize(("frequency", "validate", "crashed_epochs", "epochs"), [
    (2, False, [-1, 0], [-1, 0, 2, 3]),        # checkpoint after the epoch's (skipped) selection
    (1, True, [-1, 0, 1], [-1, 0, 1, 2, 3]),   # checkpoint before epoch 1's selection: still made on resume
])
def test_resume_after_a_crash_reaches_the_uninterrupted_weights(tmp_path, frequency, validate, crashed_epochs,
                                                                 epochs) -> None:
    reference, reference_net = _resume_fit(tmp_path / "a", [], frequency=frequency, validate=validate)
    crashed, _ = _resume_fit(tmp_path / "b", [Crash()], frequency=frequency, validate=validate)
    assert not crashed.finished and crashed.selection_epochs == crashed_epochs
    checkpoint = torch.load(tmp_path / "b" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 1
    state = next(v for k, v in checkpoint["callbacks"].items() if k.startswith("FPGMPruning"))
    assert state["selection_epochs"] == [-1, 0] and state["plan"] is None  # saved soft-pruned, before removal
    resumed, resumed_net = _resume_fit(tmp_path / "b", [], ckpt_path=str(tmp_path / "b" / "last.ckpt"),
                                       frequency=frequency, validate=validate)
    assert resumed.selection_epochs == reference.selection_epochs == epochs
    assert resumed.plan.to_dict() == reference.plan.to_dict()
    for (name, a), b in zip(reference_net.state_dict().items(), resumed_net.state_dict().values()):
        assert torch.equal(a, b), name


def test_bf16_mixed_run_prunes_and_keeps_fp32_weights(make_trainer) -> None:
    callback = SoftSnapshot(pruning_ratio=0.4, soft_mode="exact")
    module = tiny_module()
    make_trainer(max_epochs=2, precision="bf16-mixed", callbacks=[callback], **FAST).fit(module,
                                                                                      datamodule=tiny_data())
    assert callback.finished and module.net.features.conv1.weight.dtype == torch.float32
    assert all_zero(selected_rows(callback.soft, callback.plan))


# ---------------------------------------------------------------------- soft pruning re-selects (Algorithm 1)
class Rewrite(pl.Callback):
    """Before each selection, writes conv1's filters so that a chosen half of them sits at the geometric median."""

    def __init__(self, near_median_by_epoch: dict[int, list[int]]) -> None:
        self.near = near_median_by_epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        near = self.near[trainer.current_epoch]
        conv = pl_module.net.features.conv1
        far = [i for i in range(conv.out_channels) if i not in near]
        with torch.no_grad():
            weight = torch.zeros_like(conv.weight)
            weight[near] = 0.01 * torch.randn_like(weight[near])  # a tight cluster at the centre
            for k, i in enumerate(far):  # spread out: +-e_a * 10
                weight[i].view(-1)[k // 2] = 10.0 if k % 2 == 0 else -10.0
            conv.weight.copy_(weight)


@pytest.mark.parametrize("mode", ["authors_code", "paper", "exact", "one_shot"])
def test_soft_modes_reselect_the_filters_nearest_the_median_every_epoch(make_trainer, mode: str) -> None:
    first, second = [0, 1, 2, 3], [4, 5, 6, 7]
    callback = FPGMPruning(pruning_ratio=0.5, soft_mode=mode, prune=False)  # exact: hard_epochs=1
    rewrite = Rewrite({0: first, 1: second, 2: second})
    module = tiny_module(tiny_vgg(), lr=1e-9)
    trainer = make_trainer(max_epochs=3, limit_train_batches=1, callbacks=[rewrite, callback])
    trainer.fit(module, datamodule=tiny_data())
    picks = callback.selection.removed("features.conv1", "out")
    conv, bn = module.net.features.conv1, module.net.features.bn1
    if mode == "one_shot":  # not soft pruning: the selection made before training stays
        assert callback.selection_epochs == [-1] and callback.held
        return
    assert picks == second and callback.changed_channels[2] >= len(second)  # the epoch-1 selection moved
    assert bool((conv.weight[second] == 0).all())  # the mask follows the new selection
    if mode == "exact":  # soft until the end of epoch 1, then the selection of that moment is held as whole channels
        assert callback.selection_epochs == [-1, 0, 1] and callback.held
        assert bool((bn.weight[second] == 0).all()) and bool((bn.running_var[second] == 0).all())
        assert bool((bn.weight[first] != 0).all())  # never zeroed beyond its filter while soft: it could regrow
    else:
        assert callback.selection_epochs == [-1, 0, 1, 2] and not callback.held
