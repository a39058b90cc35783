"""`python -m lightning_compress.export`: ONNX (dynamo) / torch.export files, their parity gate, and the pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from lightning_compress import export, portable
from lightning_compress.cost import VERDICTS
from lightning_compress.pipeline import run
from lightning_compress.pipeline.artifacts import save_stage_model
from lightning_compress.pipeline.builders import build_net
from lightning_compress.pruning import prune, select_channels

FORMATS = [pytest.param("pt2", id="pt2"), pytest.param("onnx", id="onnx")]
DIGITS_VGG = {"_target_": "lightning_compress.models.digits_vgg", "num_classes": 10, "in_channels": 1}


def _need(fmt: str) -> None:
    if fmt == "onnx":
        for name in ("onnx", "onnxscript", "onnxruntime"):
            pytest.importorskip(name)


class HookedNet(nn.Module):
    """Channel selection after ``a`` (forward hook: index_select) and re-expansion before ``b`` (pre-hook:
    index_add into a zero tensor, then a selection), as pruned residual connections may do."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.fc = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(4, 5, 3, padding=1), nn.Linear(5, 3)
        kept = torch.tensor([0, 2, 3, 5])
        self.register_buffer("slots", torch.tensor([1, 3, 4, 6]))
        self.a.register_forward_hook(lambda module, args, out: out.index_select(1, kept))
        self.b.register_forward_pre_hook(self._expand_then_select)

    def _expand_then_select(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
        x = args[0]
        full = x.new_zeros(x.shape[0], 8, *x.shape[2:]).index_add(1, self.slots, x)
        return (full.index_select(1, self.slots),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.b(torch.relu(self.a(x))).mean((2, 3)))


def _load_without_project(path, fmt: str, shape: tuple[int, ...]) -> list[float]:
    """Run the exported file in a fresh interpreter where ``lightning_compress`` cannot be imported."""
    run_file = {
        "onnx": "import onnxruntime as ort\ns = ort.InferenceSession(path, providers=['CPUExecutionProvider'])\n"
                "out = s.run(None, {s.get_inputs()[0].name: x.numpy()})[0].tolist()",
        "pt2": "out = torch.export.load(path).module()(x).tolist()",
    }[fmt]
    code = textwrap.dedent(f"""\
        import json, sys
        sys.modules["lightning_compress"] = None  # any import of the project fails
        import torch
        path = {str(path)!r}
        x = torch.ones(5, *{shape!r})
        """) + run_file + "\nprint(json.dumps(out))\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=str(path.parent))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("fmt", FORMATS)
def test_hooks_are_traced_into_the_exported_file_and_it_loads_without_the_project(tmp_path, fmt):
    _need(fmt)
    torch.manual_seed(0)
    net = HookedNet().eval()
    path = export.export_model(net, (3, 8, 8), tmp_path / f"hooked{export.SUFFIXES[fmt]}", fmt)
    parity = export.check_parity(net, export.load_exported(path, fmt), (3, 8, 8))
    assert parity.passed and parity.max_abs_diff < 1e-5
    with torch.no_grad():
        expected = net(torch.ones(5, 3, 8, 8))  # batch 5: the exported batch dimension is dynamic
    assert torch.allclose(torch.tensor(_load_without_project(path, fmt, (3, 8, 8))), expected, atol=1e-5)


def test_parity_fails_when_outputs_differ_beyond_the_tolerance():
    net = nn.Linear(4, 2)
    close = export.check_parity(net, lambda x: [net(x).detach() + 5e-5], (4,), atol=1e-4, rtol=0)
    far = export.check_parity(net, lambda x: [net(x).detach() + 1e-3], (4,), atol=1e-4, rtol=0)
    nan = export.check_parity(net, lambda x: [net(x).detach() * float("nan")], (4,))
    assert close.passed and not far.passed and not nan.passed
    assert far.max_abs_diff == pytest.approx(1e-3, rel=1e-3)
    with pytest.raises(export.ParityError, match="shapes"):
        export.check_parity(net, lambda x: [net(x)[:, :1]], (4,))
    with pytest.raises(ValueError, match="atol"):
        export.check_parity(net, lambda x: [net(x)], (4,), atol=-1)


def _pruned_stage_file(tmp_path, input_shape=(1, 8, 8)):
    model_cfg = OmegaConf.create(DIGITS_VGG)
    net = build_net(model_cfg)
    plan = select_channels(net, torch.zeros(1, 1, 8, 8), 0.5)
    prune(net, plan)
    folder = tmp_path / "run" / "stages" / "final"
    folder.mkdir(parents=True)
    return save_stage_model(folder / "model.pt", net, model_cfg, plan, input_shape), net


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_round_trips_a_pruned_stage_model_with_size_and_latency(tmp_path, capsys, fmt):
    _need(fmt)
    path, net = _pruned_stage_file(tmp_path)
    code = export.main([str(path), "--format", fmt, "--latency-batch-size", "2", "--repeats", "3", "--threads", "1"])
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads(out.strip().splitlines()[-1])
    assert report["parity"]["passed"] and report["pruned"] and report["input_shape"] == [1, 8, 8]
    assert report["file"] == str(path.with_suffix(export.SUFFIXES[fmt])) and path.with_suffix(
        export.SUFFIXES[fmt]).stat().st_size == report["file_bytes"]
    assert report["unpruned"]["file_bytes"] > report["file_bytes"]  # fewer weights in the pruned file
    latency = report["latency"]
    assert set(latency["models"]) == {"unpruned", "exported"} and latency["change"]["verdict"] in VERDICTS
    assert latency["models"]["exported"]["repeats"] == 3 and latency["models"]["exported"]["threads"] == 1
    assert "parity passed" in out and "pruned vs unpruned" in out
    with torch.no_grad():  # the project's own model classes are not needed to run the file
        expected = net.eval()(torch.ones(5, 1, 8, 8))
    loaded = _load_without_project(path.with_suffix(export.SUFFIXES[fmt]), fmt, (1, 8, 8))
    assert torch.allclose(torch.tensor(loaded), expected, atol=1e-4)


def test_cli_exits_1_with_a_message_when_parity_fails(tmp_path, capsys, monkeypatch):
    path, _ = _pruned_stage_file(tmp_path)
    real = portable.load_exported

    def off_by_one(*args, **kwargs):
        runner = real(*args, **kwargs)
        return lambda x: [out + 1 for out in runner(x)]

    monkeypatch.setattr(portable, "load_exported", off_by_one)
    assert export.main([str(path), "--format", "pt2"]) == 1
    captured = capsys.readouterr()
    assert "parity FAILED" in captured.out and "parity check failed" in captured.err


def test_input_shape_comes_from_the_run_results_when_the_file_has_none(tmp_path, capsys):
    path, _ = _pruned_stage_file(tmp_path, input_shape=None)
    with pytest.raises(SystemExit):
        export.main([str(path), "--format", "pt2"])
    assert "--input-shape" in capsys.readouterr().err
    (tmp_path / "run" / "results.json").write_text(json.dumps({"config": {"data": {"in_channels": 1,
                                                                                    "image_size": 8}}}))
    assert export.main([str(path), "--format", "pt2"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["input_shape"] == [1, 8, 8]
    assert export.main([str(path), "--format", "pt2", "--input-shape", "1", "8", "8"]) == 0


def test_bad_inputs_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        export.main([str(tmp_path / "missing.pt"), "--format", "pt2"])
    assert "missing.pt" in capsys.readouterr().err
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(SystemExit):
        export.main([str(tmp_path / "other.pt"), "--format", "pt2"])
    assert "is a plain state dict: it does not record its architecture; pass --model" in capsys.readouterr().err
    with pytest.raises(ValueError, match="format"):
        export.check_format("tflite")


def test_onnx_without_its_packages_names_the_extra(monkeypatch):
    monkeypatch.setattr(portable, "_importable", lambda name: name != "onnxruntime")
    with pytest.raises(ImportError, match=r"onnxruntime.*\.\[export\]"):
        export.check_format("onnx")


@pytest.mark.parametrize("fmt", FORMATS)
def test_pipeline_exports_the_final_model_and_records_parity(compose_config, tmp_path, fmt):
    _need(fmt)
    record = run(compose_config("trainer.max_epochs=1", f"export={fmt}", "+trainer.limit_train_batches=2",
                                "+trainer.limit_val_batches=1", "trainer.enable_checkpointing=false"))
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["export"] == record["export"]
    assert results["export"]["parity"]["passed"] and results["export"]["format"] == fmt
    exported = tmp_path / "stages" / "final" / f"model{export.SUFFIXES[fmt]}"
    assert results["export"]["file"] == str(exported) and exported.stat().st_size == results["export"]["file_bytes"]
    assert "latency" not in results["export"]  # latency.batch_size=0 in tests: no timing
