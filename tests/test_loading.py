"""Bad input changes nothing and names itself: every file the app loads (method.pretrained, method.compressed,
method.teacher, method.student_weights, profile's weights) goes through one loader; a table of bad files per key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from lightning_compress.loading import LoadError, MissingFileError, load_file
from lightning_compress.pipeline import run
from lightning_compress.pipeline.artifacts import save_stage_model
from lightning_compress.pipeline.builders import build_net
from lightning_compress.profile import profile_from_config
from lightning_compress.pruning import prune, select_channels

# key -> the overrides that make the app load a file from it (resnet8 on digits everywhere).
APP_KEYS = {
    "method.pretrained": ["+method=l1_filter", "model=resnet8"],
    "method.compressed": ["+method=l1_filter", "model=resnet8"],
    "method.teacher": ["+method=kd", "model@method.teacher_model=resnet8"],
    "method.student_weights": ["+method=kd", "model@method.teacher_model=resnet8"],
}


def _stage_model(cfg, path: Path, pruned: bool = False) -> tuple[Path, nn.Module, dict | None]:
    torch.manual_seed(0)
    net = build_net(cfg.model)
    plan = None
    if pruned:
        plan = select_channels(net, torch.zeros(1, 1, 8, 8), 0.5)
        prune(net, plan)
    save_stage_model(path, net, cfg.model, plan, input_shape=(1, 8, 8))
    return path, net, plan.to_dict() if plan is not None else None


def _write(kind: str, folder: Path, cfg) -> Path:
    """A bad file of ``kind`` in ``folder``."""
    path = folder / f"{kind}.pt"
    if kind == "missing":
        return path
    if kind == "folder":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        good, _, _ = _stage_model(cfg, folder / "good.pt")
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "garbage":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "pickled_module":
        torch.save(nn.Linear(2, 2), path)
    elif kind == "json_text":
        path.write_text('{"not": "a model"}')
    elif kind == "not_a_model":
        torch.save({"epoch": 3, "note": "no weights here"}, path)
    elif kind == "wrong_weights":
        _, net, _ = _stage_model(cfg, path)
        payload = torch.load(path, weights_only=True)
        payload["state_dict"]["conv1.weight"] = torch.zeros(3, 3, 3, 3)
        torch.save(payload, path)
    elif kind == "plan_bn_entry_deleted":  # the network is pruned, the plan lost one BatchNorm entry
        _, _, plan = _stage_model(cfg, path, pruned=True)
        payload = torch.load(path, weights_only=True)
        bn = next(name for name, layer in plan["layers"].items() if "BatchNorm" in layer["type"])
        del payload["lightning_compress"]["plan"]["layers"][bn]
        torch.save(payload, path)
    elif kind == "plan_of_another_network":  # a ResNet-20 plan in a ResNet-8 file
        payload = torch.load(_stage_model(cfg, path, pruned=True)[0], weights_only=True)
        other = build_net(OmegaConf.merge(cfg.model, {"_target_": "lightning_compress.models.resnet20"}))
        payload["lightning_compress"]["plan"] = select_channels(other, torch.zeros(1, 1, 8, 8), 0.5).to_dict()
        torch.save(payload, path)
    else:
        raise AssertionError(kind)
    return path


KINDS = ["missing", "folder", "empty", "truncated", "garbage", "pickled_module", "json_text", "not_a_model",
         "wrong_weights", "plan_bn_entry_deleted", "plan_of_another_network"]


def _assert_names_itself(err: BaseException, key: str, path: Path) -> None:
    message = str(err)
    assert f"`{key}`" in message and str(path) in message, message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message, message
    assert isinstance(err, ValueError)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("key", list(APP_KEYS))
def test_bad_file_for_each_app_key_fails_before_training_and_names_key_and_file(compose_config, tmp_path, key, kind):
    files = tmp_path / "files"
    files.mkdir()
    base = compose_config(*APP_KEYS[key])
    path = _write(kind, files, base)
    cfg = compose_config(*APP_KEYS[key], f"{key}={path}")
    with pytest.raises(ValueError) as info:
        run(cfg)
    _assert_names_itself(info.value, key, path)
    if kind == "missing":
        assert isinstance(info.value, FileNotFoundError)
    # Nothing changed: no stage was trained, tested or saved.
    assert not list(tmp_path.glob("stages/*/*")), sorted(tmp_path.rglob("*"))


@pytest.mark.parametrize("key", ["method.pretrained", "method.compressed"])
def test_a_saved_model_of_another_architecture_is_rejected(compose_config, tmp_path, key):
    path, _, _ = _stage_model(compose_config("model=digits_vgg"), tmp_path / "vgg.pt")
    with pytest.raises(LoadError, match="holds a digits_vgg network but the run's `model` is resnet8") as info:
        run(compose_config(*APP_KEYS[key], f"{key}={path}"))
    _assert_names_itself(info.value, key, path)
    assert not (tmp_path / "stages").exists() or not list((tmp_path / "stages").rglob("*.pt"))


@pytest.mark.parametrize("kind", KINDS)
def test_profile_weights_bad_file_names_itself(compose_config, tmp_path, kind):
    path = _write(kind, tmp_path, compose_config("model=resnet8"))
    cfg = compose_config("data=digits", "model=resnet8", f"weights={path}", "latency.batch_size=0",
                         config_name="profile")
    with pytest.raises(ValueError) as info:
        profile_from_config(cfg)
    _assert_names_itself(info.value, "weights", path)


def test_profile_weights_takes_the_architecture_and_input_shape_from_the_file(compose_config, tmp_path):
    path, net, _ = _stage_model(compose_config("model=resnet8"), tmp_path / "digits_resnet8.pt", pruned=True)
    # The profile config says resnet56 on CIFAR-10: the saved digits ResNet-8 must win.
    cfg = compose_config("model=resnet56", "data=cifar10", f"weights={path}", "latency.batch_size=0",
                         config_name="profile")
    result = profile_from_config(cfg)
    assert result["model"] == "resnet8" and result["input"] == [1, 1, 8, 8]
    assert result["params"] == sum(p.numel() for p in net.parameters())


LOADER_CASES: dict[str, Callable[[Path], None]] = {
    "missing": lambda p: None,
    "empty": lambda p: p.write_bytes(b""),
    "garbage": lambda p: p.write_bytes(b"\x00\xff" * 64),
    "pickled_module": lambda p: torch.save(nn.ReLU(), p),
}


@pytest.mark.parametrize("case", list(LOADER_CASES))
def test_load_file_errors_name_the_key_and_keep_the_file(tmp_path, case):
    path = tmp_path / "x.pt"
    LOADER_CASES[case](path)
    before = path.read_bytes() if path.exists() else None
    with pytest.raises(MissingFileError if case == "missing" else LoadError) as info:
        load_file(path, "some.key")
    assert info.value.key == "some.key" and info.value.path == str(path)
    assert "`some.key`" in str(info.value)
    assert (path.read_bytes() if path.exists() else None) == before
    if case == "pickled_module":
        assert "torch.nn.modules.activation.ReLU" in str(info.value)
        assert info.value.__suppress_context__  # torch's own message (with its advice) is not chained


def test_load_file_reads_tensors_and_json(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "w.pt")
    (tmp_path / "r.json").write_text('{"status": "done"}')
    assert torch.equal(load_file(tmp_path / "w.pt", "k")["w"], torch.ones(2))
    assert load_file(tmp_path / "r.json", "k") == {"status": "done"}
    with pytest.raises(MissingFileError, match="must be a file path"):
        load_file("", "method.pretrained")


def test_stage_models_of_the_earlier_format_still_load(compose_config, tmp_path):
    from lightning_compress.pipeline.artifacts import LEGACY_FORMAT, read_stage_model

    cfg = compose_config("model=resnet8", "data=synthetic", "data.in_channels=1")
    torch.manual_seed(0)
    net = build_net(cfg.model)
    plan = select_channels(net, torch.zeros(1, 1, 8, 8), 0.5)
    prune(net, plan)
    torch.save({"format": LEGACY_FORMAT, "model": OmegaConf.to_container(cfg.model, resolve=True),
                "plan": plan.to_dict(), "state_dict": net.state_dict()}, tmp_path / "old.pt")
    saved = read_stage_model(tmp_path / "old.pt", "method.pretrained")
    assert saved.plan.to_dict() == plan.to_dict()
    assert all(torch.equal(a, b) for a, b in zip(saved.net.state_dict().values(), net.state_dict().values()))
