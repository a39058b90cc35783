"""FSPDistillation and KnowledgeDistillation: frozen teacher, losses, shape checks, checkpoints, hooks."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from lightning_compress.distillation import (
    FeatureRecorder,
    FrozenTeacher,
    FSPDistillation,
    KnowledgeDistillation,
    default_pairs,
    fsp_loss,
    fsp_matrix,
    kd_loss,
)
from lightning_compress.modules import ImageClassifier
from lightning_compress.pipeline.artifacts import load_stage_model
from tests.helpers import NUM_CLASSES, OPTIM, SCHEDULER, snapshot


def fsp_module(student, teacher, **kwargs):
    kwargs = {"optim": {"name": "adam", "lr": 1e-3}, "scheduler": SCHEDULER, **kwargs}  # SGD diverges on the sum loss
    return FSPDistillation(student, teacher, num_classes=NUM_CLASSES, **kwargs)


def kd_module(student, teacher, **kwargs):
    return KnowledgeDistillation(student, teacher, num_classes=NUM_CLASSES, optim=OPTIM, scheduler=SCHEDULER,
                                 **kwargs)


class TeacherSpy(pl.Callback):
    """Records the teacher's mode and gradients at every training batch."""

    def __init__(self) -> None:
        self.modes: list[bool] = []
        self.grads: list[bool] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        net = pl_module.teacher.net
        self.modes.append(net.training)
        self.grads.append(any(p.grad is not None for p in net.parameters()))

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        pl_module.teacher.net.train()  # an attempt to unfreeze: the module must undo it before any batch


@pytest.mark.parametrize("kind", ["fsp", "kd"])
def test_teacher_frozen_in_eval_mode_and_unchanged_while_student_learns(kind, resnet, data, make_trainer):
    student, teacher = resnet(8), resnet(14)
    module = fsp_module(student, teacher) if kind == "fsp" else kd_module(student, teacher)
    before_t, before_s = snapshot(teacher), snapshot(student)
    spy = TeacherSpy()
    make_trainer(max_epochs=2, callbacks=[spy]).fit(module, datamodule=data)
    assert spy.modes and not any(spy.modes), "teacher left eval mode during training"
    assert not any(spy.grads), "teacher received gradients"
    assert all(not p.requires_grad for p in teacher.parameters())
    for key, value in snapshot(teacher).items():
        assert torch.equal(value, before_t[key]), f"teacher tensor {key} changed"
    assert any(not torch.equal(v, before_s[k]) for k, v in snapshot(student).items()), "student did not learn"
    optimizer = module.trainer.optimizers[0]
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not in_optimizer & {id(p) for p in teacher.parameters()}
    trunk = {id(p) for name, p in student.named_parameters() if not name.startswith("fc.")}
    assert trunk <= in_optimizer
    head = {id(p) for p in student.fc.parameters()}
    assert head <= in_optimizer if kind == "kd" else not head & in_optimizer  # FSP loss does not reach the head
    assert not any(k.startswith("teacher") for k in module.state_dict())


def test_fsp_training_step_logs_parts_and_reduces_fsp_loss(resnet, data, make_trainer):
    torch.manual_seed(0)
    module = fsp_module(resnet(8), resnet(8))
    x = data.example_input(8).normal_()
    start = module.fsp_losses(x)[1].item()
    trainer = make_trainer(max_epochs=3)
    trainer.fit(module, datamodule=data)
    keys = set(trainer.callback_metrics)
    assert {"train/loss", "fsp/loss", "fsp/pair_0", "fsp/pair_1", "fsp/pair_2", "train/ce", "val/fsp_loss"} <= keys
    total = sum(float(trainer.callback_metrics[f"fsp/pair_{i}"]) for i in range(3))
    assert float(trainer.callback_metrics["fsp/loss_epoch"]) == pytest.approx(total, rel=1e-4)
    assert not module._student_rec.attached, "hooks must be removed after fit (stage 2 trains the same net)"
    assert not any(m._forward_hooks for m in module.net.modules())
    assert module.fsp_losses(x)[1].item() < start


@pytest.mark.parametrize("reduction", ["normalized", "sum", "mean"])
def test_fsp_losses_equal_functional_on_hooked_features(resnet, reduction):
    student, teacher = resnet(8), resnet(14)
    module = fsp_module(student, teacher, pair_weights=[1.0, 0.5, 2.0], reduction=reduction).eval()
    teacher.eval()
    x = torch.randn(3, 1, 8, 8)
    _, total, parts = module.fsp_losses(x)

    def section_maps(net):
        stem = net.relu(net.bn1(net.conv1(x)))
        l1 = net.layer1(stem)
        l2 = net.layer2(l1)
        return [(stem, l1), (l1, l2), (l2, net.layer3(l2))]

    with torch.no_grad():
        g_s = [fsp_matrix(a, b) for a, b in section_maps(student)]
        g_t = [fsp_matrix(a, b) for a, b in section_maps(teacher)]
    expected, expected_parts = fsp_loss(g_s, g_t, [1.0, 0.5, 2.0], reduction)
    assert float(total) == pytest.approx(float(expected), rel=1e-5)
    assert [float(p) for p in parts] == pytest.approx([float(p) for p in expected_parts], rel=1e-5)


def test_stage2_classifier_starts_from_stage1_weights(resnet, data, make_trainer):
    student = resnet(8)
    head = student.fc.weight.detach().clone()
    make_trainer(max_epochs=1).fit(fsp_module(student, resnet(14)), datamodule=data)
    after_stage1 = snapshot(student)
    assert torch.equal(student.fc.weight, head), "the head, unreached by the FSP loss, is frozen in stage 1"
    assert all(p.requires_grad for p in student.parameters()), "teardown must unfreeze it for stage 2"

    class StartSpy(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            self.start = snapshot(pl_module.net)

    spy = StartSpy()
    classifier = ImageClassifier(student, num_classes=NUM_CLASSES, optim=OPTIM, scheduler=SCHEDULER)
    make_trainer(max_epochs=1, callbacks=[spy]).fit(classifier, datamodule=data)
    for key, value in after_stage1.items():
        assert torch.equal(spy.start[key], value), key


def test_channel_mismatch_is_an_error_at_setup_listing_both_shapes(vgg, data, make_trainer):
    module = fsp_module(vgg(8, 16), vgg(8, 32))
    trainer = make_trainer()
    with pytest.raises(ValueError, match=r"equal channel counts") as err:
        trainer.fit(module, datamodule=data)
    message = str(err.value)
    assert "student 'features.relu3' (16, 4, 4) vs teacher 'features.relu3' (32, 4, 4)" in message
    assert "features.relu4" in message and "projection" in message
    assert trainer.global_step == 0


def test_projection_learns_1x1_convs_and_reloads_from_checkpoint(vgg, data, make_trainer, tmp_path):
    module = fsp_module(vgg(8, 16), vgg(8, 32), projection=True)
    trainer = make_trainer(max_epochs=1)
    trainer.fit(module, datamodule=data)
    assert set(module.projections) == {"pair1_first", "pair1_second"}
    assert module.projections["pair1_first"].weight.shape == (32, 16, 1, 1)
    in_optimizer = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert {id(p) for p in module.projections.parameters()} <= in_optimizer
    path = tmp_path / "proj.ckpt"
    trainer.save_checkpoint(path)
    reloaded = FSPDistillation.load_from_checkpoint(path, net=vgg(8, 16), teacher=None, weights_only=True)
    torch.testing.assert_close(reloaded.projections["pair1_second"].weight, module.projections["pair1_second"].weight)


def test_student_checkpoint_reloads_without_the_teacher(resnet, data, make_trainer, tmp_path):
    student = resnet(8)
    module = fsp_module(student, FrozenTeacher(resnet(14), source="runs/x/stages/teacher/model.pt"))
    trainer = make_trainer(max_epochs=1)
    trainer.fit(module, datamodule=data)
    path = tmp_path / "student.ckpt"
    trainer.save_checkpoint(path)
    payload = torch.load(path, weights_only=True)
    assert payload["state_dict"] and all(k.startswith("net.") for k in payload["state_dict"])
    assert payload["lightning_compress"]["teacher"] == {"source": "runs/x/stages/teacher/model.pt",
                                                        "class": "CifarResNet"}
    reloaded = FSPDistillation.load_from_checkpoint(path, net=resnet(8), teacher=None, weights_only=True)
    assert reloaded.teacher is None and reloaded.hparams.pairs == [list(p) for p in default_pairs(student)]
    for key, value in snapshot(student).items():
        assert torch.equal(reloaded.net.state_dict()[key], value)
    model_cfg = {"_target_": "lightning_compress.models.resnet_cifar.CifarResNet", "depth": 8,
                 "num_classes": NUM_CLASSES, "in_channels": 1}
    from omegaconf import OmegaConf

    net, plan = load_stage_model(path, OmegaConf.create(model_cfg))
    assert plan is None and torch.equal(net.conv1.weight, student.conv1.weight)
    with pytest.raises(ValueError, match="`teacher` must be given"):
        make_trainer().fit(reloaded, datamodule=data)


def test_kd_training_loss_equals_kd_loss(resnet):
    student, teacher = resnet(8), resnet(14)
    module = kd_module(student, teacher, temperature=3.0, alpha=0.7)
    x, y = torch.randn(5, 1, 8, 8), torch.randint(0, NUM_CLASSES, (5,))
    module.log = lambda *args, **kwargs: None  # no trainer attached
    loss = module.training_step((x, y), 0)
    teacher.eval()
    with torch.no_grad():
        t_logits = teacher(x)
    expected = kd_loss(student(x), t_logits, y, temperature=3.0, alpha=0.7)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_kd_works_across_widths(vgg, data, make_trainer):
    module = kd_module(vgg(4, 8), vgg(8, 32))
    make_trainer(max_epochs=1).fit(module, datamodule=data)
    assert module.trainer.state.finished


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"pool": "min"}, ValueError, "`pool` must be one of"),
    ({"reduction": "max"}, ValueError, "`reduction` must be one of"),
    ({"distill_loss_weight": -1.0}, ValueError, "`distill_loss_weight` must be a number >= 0"),
    ({"distill_loss_weight": 0.0, "task_loss_weight": 0.0}, ValueError, "must not both be 0"),
    ({"pair_weights": [1.0]}, ValueError, "`pair_weights` must be 3 numbers"),
    ({"pairs": [["layer1:input", "layer1"]], "teacher_pairs": [["layer1", "layer2"], ["layer2", "layer3"]]},
     ValueError, "`teacher_pairs` must have as many"),
    ({"pairs": [["layer9", "layer1"]], "teacher_pairs": [["layer1", "layer1"]]}, ValueError,
     r"do not name modules.*available: \['conv1'"),
    ({"pairs": [["layer1:middle", "layer1"]]}, ValueError, "part after ':' must be one of"),
    ({"pairs": "layer1"}, ValueError, "`pairs` must be a non-empty list"),
    ({"projection": "yes"}, TypeError, "`projection` must be a bool"),
    ({"input_shape": (8, 8)}, ValueError, "`input_shape` must be"),
])
def test_fsp_misconfiguration(kwargs, error, match, resnet):
    with pytest.raises(error, match=match):
        fsp_module(resnet(8), resnet(14), **kwargs)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"temperature": 0.0}, "`temperature` must be a number > 0"),
    ({"alpha": 1.5}, "`alpha` must be a number in"),
])
def test_kd_misconfiguration(kwargs, match, resnet):
    with pytest.raises(ValueError, match=match):
        kd_module(resnet(8), resnet(14), **kwargs)


def test_teacher_must_differ_from_student_and_be_a_module(resnet):
    net = resnet(8)
    with pytest.raises(ValueError, match="different network object"):
        kd_module(net, net)
    with pytest.raises(TypeError, match="`teacher` must be an nn.Module"):
        kd_module(net, "teacher.pt")


def test_feature_recorder_input_output_and_missing(resnet):
    net = resnet(8).eval()
    rec = FeatureRecorder(net, ["layer2:input", "layer2", "fc:input"])
    x = torch.randn(2, 1, 8, 8)
    with rec, torch.no_grad():
        net(x)
        l2_in, l2_out, fc_in = rec.collect()
        stem = net.relu(net.bn1(net.conv1(x)))
        torch.testing.assert_close(l2_in, net.layer1(stem))
        torch.testing.assert_close(l2_out, net.layer2(l2_in))
        assert fc_in.shape == (2, 64)
        with pytest.raises(RuntimeError, match="were not recorded"):
            rec.collect()
    assert not rec.attached
    assert not net.layer2._forward_hooks


def test_default_pairs_for_vgg_and_unknown(vgg):
    assert default_pairs(vgg(8, 16)) == [("features.relu1", "features.relu2"), ("features.relu3", "features.relu4")]
    with pytest.raises(ValueError, match="no default FSP pairs"):
        default_pairs(torch.nn.Linear(2, 2))


def test_fsp_under_bf16_autocast_computes_matrices_in_fp32(resnet, data, make_trainer):
    module = fsp_module(resnet(8), resnet(14))
    trainer = make_trainer(max_epochs=1, precision="bf16-mixed")
    trainer.fit(module, datamodule=data)
    assert torch.isfinite(trainer.callback_metrics["fsp/loss"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, total, _ = module.fsp_losses(torch.randn(2, 1, 8, 8))
    assert total.dtype == torch.float32


def test_load_teacher_from_bare_state_dict_stage_model_and_errors(resnet, tmp_path):
    from omegaconf import OmegaConf

    from lightning_compress.pipeline.artifacts import read_stage_model, save_stage_model

    def load_teacher(path, model_cfg=None):
        return read_stage_model(path, "method.teacher", model_cfg).net

    cfg = OmegaConf.create({"_target_": "lightning_compress.models.resnet_cifar.CifarResNet", "depth": 14,
                            "num_classes": NUM_CLASSES, "in_channels": 1})
    net = resnet(14)
    torch.save(net.state_dict(), tmp_path / "bare.pt")
    loaded = load_teacher(tmp_path / "bare.pt", cfg)
    assert torch.equal(loaded.fc.weight, net.fc.weight)
    save_stage_model(tmp_path / "model.pt", net, cfg)
    assert torch.equal(load_teacher(tmp_path / "model.pt").conv1.weight, net.conv1.weight)
    with pytest.raises(ValueError, match="needs the `model` config"):
        load_teacher(tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="`method.teacher`.*weights do not fit"):
        load_teacher(tmp_path / "bare.pt", OmegaConf.merge(cfg, {"depth": 8}))
    with pytest.raises(FileNotFoundError, match="`method.teacher`"):
        load_teacher(tmp_path / "missing.pt", cfg)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fsp", "kd"])
def test_ddp_spawn_two_cpu_processes(kind, resnet, data, tmp_path):
    """DDP needs every trained parameter in the loss: stage 1 freezes the head the FSP loss does not reach."""
    student, teacher = resnet(8), resnet(14)
    module = fsp_module(student, teacher) if kind == "fsp" else kd_module(student, teacher)
    before = snapshot(student)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, default_root_dir=str(tmp_path))
    trainer.fit(module, datamodule=data)
    assert any(not torch.equal(v, before[k]) for k, v in snapshot(student).items())
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
