"""`train.py +method=fsp` / `+method=kd` end to end on tiny synthetic data, composed through Hydra."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import lightning_compress.pipeline.distillation_method as distill_pipeline
from lightning_compress.distillation import FSPDistillation, KnowledgeDistillation
from lightning_compress.pipeline import run
from lightning_compress.pipeline.artifacts import load_stage_model, save_stage_model
from lightning_compress.pipeline.builders import build_net
from lightning_compress.pipeline.distillation_method import _stage_epochs
from tests.helpers import TINY_DISTILLATION_RUN as TINY

SECTIONS = ("teacher", "student_alone", "student_equal_compute", "final")


def check_record(record: dict, out: Path) -> dict:
    """Every section measured and saved, the gains are the differences; returns results.json."""
    results = json.loads((out / "results.json").read_text())
    for section in SECTIONS:
        entry = results[section]
        assert 0.0 <= entry["test_acc"] <= 1.0 and entry["test_acc"] == record[section]["test_acc"]
        assert entry["params"] > 0 and entry["flops"] == 2 * entry["macs"]
        assert Path(entry["model_path"]).is_file()
    info = results["distillation"]
    for reference in ("student_alone", "equal_compute"):
        section = "student_alone" if reference == "student_alone" else "student_equal_compute"
        assert info[f"gain_vs_{reference}"] == pytest.approx(results["final"]["test_acc"]
                                                             - results[section]["test_acc"])
    return results


def test_fsp_pipeline_then_kd_with_the_saved_teacher(compose_config, tmp_path, monkeypatch):
    stage2_start = {}
    original = distill_pipeline.fit_classifier

    def spy(ctx, stage, net, *args, **kwargs):
        if stage == "stage2":
            stage2_start.update({k: v.clone() for k, v in net.state_dict().items()})
        return original(ctx, stage, net, *args, **kwargs)

    monkeypatch.setattr(distill_pipeline, "fit_classifier", spy)
    cfg = compose_config("+method=fsp", *TINY)
    record = run(cfg)
    check_record(record, tmp_path)
    info = record["distillation"]
    assert info["module"] == "FSPDistillation" and info["stage2"] == {"loss": "cross-entropy"}
    assert info["epochs"] == {"teacher": 2, "student_alone": 1, "student_equal_compute": 2, "stage1": 1, "stage2": 1}
    assert record["student_alone"]["epochs"] == 1 and record["student_equal_compute"]["epochs"] == 2
    assert "same_as" not in record["student_equal_compute"]
    assert record["student_alone"]["model_path"] != record["student_equal_compute"]["model_path"]
    assert [p["student_shapes"] for p in info["pairs"]][1] == [(16, 8, 8), (32, 4, 4)]
    assert {"fsp/pair_0", "fsp/loss", "val/fsp_loss"} <= set(info["stage1_metrics"])
    assert record["teacher"]["params"] > record["final"]["params"]  # ResNet-26 teacher, ResNet-8 student
    stage1 = torch.load(tmp_path / "stages" / "stage1" / "last.ckpt", weights_only=True)
    assert stage1["lightning_compress"]["teacher"]["source"] == record["teacher"]["model_path"]
    assert not any(k.startswith("teacher") for k in stage1["state_dict"])
    for key, value in stage1["state_dict"].items():  # stage 2 starts from the stage-1 weights
        assert torch.equal(stage2_start[key[len("net."):]], value), key

    teacher_path = record["teacher"]["model_path"]
    kd_out = tmp_path / "kd"
    cfg = compose_config("+method=kd", *TINY, f"method.teacher={teacher_path}", "method.stage1.epochs=2",
                         "method.stage2.epochs=0")
    cfg.paths.output_dir = str(kd_out)
    kd_record = run(cfg)
    check_record(kd_record, kd_out)
    assert kd_record["teacher"]["loaded_from"] == teacher_path
    assert kd_record["teacher"]["test_acc"] == record["teacher"]["test_acc"]
    assert not (kd_out / "stages" / "teacher" / "last.ckpt").exists()  # loaded, not trained
    assert kd_record["distillation"]["module"] == "KnowledgeDistillation"
    assert "kd/soft_loss" in kd_record["distillation"]["stage1_metrics"]
    # KD is one fit: the student alone is as long as it and is also the equal-compute student, trained once
    assert kd_record["distillation"]["epochs"]["student_alone"] == 2
    assert kd_record["distillation"]["epochs"]["student_equal_compute"] == 2
    assert kd_record["student_equal_compute"] == {**kd_record["student_alone"], "same_as": "student_alone"}
    assert not (kd_out / "stages" / "student_equal_compute").exists()


def pruned_student(cfg, path: Path) -> Path:
    from lightning_compress.pruning import prune, select_channels

    net = build_net(cfg.model)
    plan = select_channels(net, torch.randn(1, 1, 8, 8), pruning_ratio=0.5, importance="l1")
    prune(net, plan)
    return save_stage_model(path, net, cfg.model, plan)


def test_pruned_student_needs_projection_for_fsp_and_works_with_kd(compose_config, tmp_path):
    unpruned = ["model@method.teacher_model=resnet8"]  # the unpruned network is the teacher
    cfg = compose_config("+method=fsp", *TINY, *unpruned)
    student_path = pruned_student(cfg, tmp_path / "pruned.pt")
    cfg = compose_config("+method=fsp", *TINY, *unpruned, f"method.student_weights={student_path}")
    with pytest.raises(ValueError, match=r"equal channel counts.*student 'layer1:input' \(8, 8, 8\) vs teacher "
                                         r"'layer1:input' \(16, 8, 8\).*HINT"):
        run(cfg)
    assert not (tmp_path / "stages" / "teacher").exists(), "the mismatch must fail before any training"

    cfg = compose_config("+method=fsp", *TINY, *unpruned, f"method.student_weights={student_path}",
                         "method.module.projection=true")
    record = run(cfg)
    check_record(record, tmp_path)
    assert record["final"]["params"] < record["teacher"]["params"]
    net, plan = load_stage_model(record["final"]["model_path"])
    assert plan is not None and net.layer1[0].conv1.out_channels == 8
    assert record["student_alone"]["params"] == record["final"]["params"]

    kd_out = tmp_path / "kd"
    cfg = compose_config("+method=kd", *TINY, *unpruned, f"method.student_weights={student_path}",
                         f"method.teacher={record['teacher']['model_path']}")
    cfg.paths.output_dir = str(kd_out)
    kd_record = run(cfg)
    check_record(kd_record, kd_out)
    assert kd_record["final"]["params"] == record["final"]["params"]


def test_bad_pair_names_fail_before_training(compose_config, tmp_path):
    cfg = compose_config("+method=fsp", *TINY, "model=digits_vgg", "method.stage1.epochs=1")
    with pytest.raises(ValueError, match=r"do not name modules of VGG; available: \['features'"):
        run(cfg)
    assert not (tmp_path / "stages").exists()


FSP_CONFIGS = [["+method=fsp"], ["+method=fsp", "method.stage2.epochs=7"],
               ["+experiment=resnet26_resnet8_cifar10_fsp"], ["+experiment=resnet26_resnet8_cifar10_fsp_cpu"],
               ["+experiment=resnet26_resnet8_cifar10_fsp_kd_cpu"], ["+experiment=resnet26_resnet26_cifar10_fsp_fast"]]
KD_CONFIGS = [["+method=kd"], ["+method=kd", "method.stage1.epochs=7"], ["+experiment=resnet26_resnet8_cifar10_kd_cpu"]]


@pytest.mark.parametrize("overrides", FSP_CONFIGS, ids=lambda o: " ".join(o))
def test_fsp_student_alone_gets_stage2_epochs_and_stage1_comes_on_top(compose_config, overrides):
    """The paper's protocol: the student alone trains as long as stage 2; equal compute: stage1 + stage2."""
    epochs = _stage_epochs(compose_config(*overrides).method)
    assert epochs["stage1"] > 0 and epochs["stage2"] > 0
    assert epochs["student_alone"] == epochs["stage2"]
    assert epochs["student_equal_compute"] == epochs["stage1"] + epochs["stage2"]


@pytest.mark.parametrize("overrides", KD_CONFIGS, ids=lambda o: " ".join(o))
def test_kd_student_alone_gets_the_kd_fits_epochs(compose_config, overrides):
    epochs = _stage_epochs(compose_config(*overrides).method)
    assert epochs["stage1"] > 0 and epochs["stage2"] == 0
    assert epochs["student_alone"] == epochs["stage1"] == epochs["student_equal_compute"]


def test_cpu_rows_share_one_budget_and_the_paper_rows_keep_the_papers_loss(compose_config):
    fsp, fsp_kd, kd = (compose_config(f"+experiment=resnet26_resnet8_cifar10_{name}_cpu").method
                       for name in ("fsp", "fsp_kd", "kd"))
    assert _stage_epochs(fsp) == _stage_epochs(fsp_kd)
    assert _stage_epochs(fsp)["stage2"] == _stage_epochs(kd)["stage1"] == 20 and _stage_epochs(fsp)["stage1"] == 5
    assert fsp.stage2.distill is None and fsp_kd.stage2.distill == "kd"
    assert (fsp_kd.stage2.kd.temperature, fsp_kd.stage2.kd.alpha) == (kd.module.temperature, kd.module.alpha)
    assert compose_config("+method=fsp").method.module.reduction == "normalized"
    for name in ("fsp", "fsp_cpu", "fsp_kd_cpu"):
        assert compose_config(f"+experiment=resnet26_resnet8_cifar10_{name}").method.module.reduction == "sum"
    assert compose_config("+experiment=resnet26_resnet26_cifar10_fsp_fast").method.module.reduction == "sum"


def test_skipped_stages_are_recorded_as_not_run_never_measured(compose_config, tmp_path, capsys):
    cfg = compose_config("+method=fsp", *TINY, "method.teacher_fit.epochs=0", "method.student_alone.epochs=0",
                         "method.student_equal_compute.epochs=0", "method.stage2.epochs=0")
    with pytest.warns(UserWarning, match=r"teacher_fit.epochs` is 0.*initial \(random\) weights"):
        record = run(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    for section in ("teacher", "student_alone", "student_equal_compute"):
        assert results[section] == {"status": "not run", "epochs": 0}, section
        assert not (tmp_path / "stages" / section / "model.pt").exists()
    assert 0.0 <= results["final"]["test_acc"] <= 1.0 and Path(results["final"]["model_path"]).is_file()
    info = results["distillation"]
    assert info["gain_vs_student_alone"] is None and info["gain_vs_equal_compute"] is None
    assert info["teacher_source"] == "untrained CifarResNet (method.teacher_fit.epochs=0)"
    assert record["student_alone"] == results["student_alone"]
    summary = capsys.readouterr().out
    assert summary.count("not run (0 epochs)") == 3


def test_no_distillation_epochs_records_final_as_not_run(compose_config, tmp_path):
    cfg = compose_config("+method=kd", *TINY, "method.teacher_fit.epochs=1", "method.stage1.epochs=0",
                         "method.stage2.epochs=0", "method.student_alone.epochs=1")
    record = run(cfg)
    assert record["final"] == {"status": "not run", "epochs": 0}
    assert 0.0 <= record["student_alone"]["test_acc"] <= 1.0 and record["student_alone"]["epochs"] == 1
    assert record["distillation"]["gain_vs_student_alone"] is None


def test_fsp_then_kd_in_stage2_distils_from_the_same_frozen_teacher(compose_config, tmp_path, monkeypatch):
    fits = []
    original = distill_pipeline.fit_module

    def spy(ctx, stage, module, *args, **kwargs):
        fits.append((stage, module, {k: v.clone() for k, v in module.net.state_dict().items()}))
        return original(ctx, stage, module, *args, **kwargs)

    monkeypatch.setattr(distill_pipeline, "fit_module", spy)
    cfg = compose_config("+method=fsp", *TINY, "method.stage2.distill=kd", "method.stage2.kd.temperature=2.0",
                         "method.student_equal_compute.epochs=0")
    record = run(cfg)
    (stage1, fsp, _), (stage2, kd, stage2_start) = fits
    assert (stage1, stage2) == ("stage1", "stage2")
    assert isinstance(fsp, FSPDistillation) and isinstance(kd, KnowledgeDistillation)
    assert (kd.temperature, kd.alpha) == (2.0, 0.9)
    assert kd.net is fsp.net and kd.teacher.net is fsp.teacher.net  # the distilled student, the same teacher
    assert kd.teacher.source == record["teacher"]["model_path"]
    teacher = load_stage_model(record["teacher"]["model_path"])[0]
    for key, value in teacher.state_dict().items():  # frozen through both stages
        assert torch.equal(kd.teacher.net.state_dict()[key], value), key
    stage1_end = torch.load(tmp_path / "stages" / "stage1" / "last.ckpt", weights_only=True)["state_dict"]
    for key, value in stage1_end.items():  # stage 2 starts from the stage-1 weights
        assert torch.equal(stage2_start[key[len("net."):]], value), key
    stage2_end = torch.load(tmp_path / "stages" / "stage2" / "last.ckpt", weights_only=True)
    assert stage2_end["hyper_parameters"]["temperature"] == 2.0
    assert record["distillation"]["stage2"] == {"loss": "kd", "temperature": 2.0, "alpha": 0.9}
    assert record["distillation"]["epochs"]["stage2"] == 1 and 0.0 <= record["final"]["test_acc"] <= 1.0


@pytest.mark.parametrize(("overrides", "error", "match"), [
    (["method.stage2.distill=fsp"], ValueError, r"`method.stage2.distill` must be null \(cross-entropy\) or 'kd', "
                                                r"got 'fsp'"),
    (["method.stage2.distill=kd", "method.stage2.kd.alpha=2.0"], ValueError, r"`alpha` must be a number in \[0, 1\]"),
    (["method.stage2.distill=kd", "+method.stage2.kd.tau=2"], ValueError, r"`method.stage2.kd` takes `temperature` "
                                                                          r"and `alpha`, got unknown keys \['tau'\]"),
    (["method.student_alone.epochs=null"], ValueError, r"`method.student_alone.epochs` must be an int >= 0"),
    (["method.student_equal_compute.epochs=-1"], ValueError, r"`method.student_equal_compute.epochs` must be >= 0"),
])
def test_bad_stage_settings_fail_before_any_training(compose_config, tmp_path, overrides, error, match):
    with pytest.raises(error, match=match):
        run(compose_config("+method=fsp", *TINY, *overrides))
    assert not (tmp_path / "stages").exists()


@pytest.mark.parametrize("overrides", [
    ["+method=fsp"], ["+method=kd"], ["+experiment=resnet26_resnet8_cifar10_fsp"],
    ["+experiment=resnet26_resnet26_cifar10_fsp_fast"], ["+experiment=resnet26_resnet8_cifar10_fsp_kd_cpu"],
])
def test_method_and_experiment_configs_build_their_module(compose_config, overrides):
    import hydra

    from lightning_compress.pipeline.distillation_method import _optim

    cfg = compose_config(*overrides)
    assert cfg.method.kind == "distill"
    factory = hydra.utils.instantiate(cfg.method.module, _partial_=True, _convert_="all")
    student, teacher = build_net(cfg.model), build_net(cfg.method.teacher_model)
    module = factory(net=student, teacher=teacher, num_classes=int(cfg.data.num_classes),
                     optim={**cfg.module.optim, **_optim(cfg.method, "stage1")})
    if hasattr(module, "check_pairs"):
        shape = (2, cfg.data.in_channels, cfg.data.image_size, cfg.data.image_size)
        assert len(module.check_pairs(torch.zeros(shape))) == 3
