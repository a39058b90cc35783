"""benchmarks/bench_latency.py (issue 31): round_to="auto", the fused/hooked select forms and the ONNX Runtime column
run and are reported; the numbers of these tiny runs mean nothing."""

from __future__ import annotations

import pytest

from benchmarks import bench_latency
from lightning_compress.cost import VERDICTS
from lightning_compress.models import resnet20

SMOKE = {"repeats": 2, "warmup": 0, "threads": 1, "image_size": 16, "batch_size": 2, "search_steps": 4}


@pytest.mark.parametrize("fuse", [True, False])
def test_auto_row_for_both_select_forms_with_the_onnx_column_on_the_fused_one(fuse):
    if fuse:
        pytest.importorskip("onnxruntime")
    setting = bench_latency.Setting(lambda: resnet20(num_classes=10), 16, 2, keep_macs=0.5, residual="select",
                                    fuse=fuse)
    row = bench_latency.bench_one("resnet20_select", setting, "auto", bench_latency.torch.device("cpu"), onnx=fuse,
                                  **SMOKE)
    assert row["form"] == ("select, fused" if fuse else "select, hooked")
    alignment = row["alignment"]
    assert row["round_to_used"] == alignment["round_to"] in (1, 8, 16) and set(alignment["candidates"]) == {
        "1", "8", "16"}
    assert all(kept % row["round_to_used"] == 0 or kept == full for kept, full in row["widths"])
    assert row["latency_ratio"] == pytest.approx(row["latency_speedup"] / row["macs_speedup"])
    table = bench_latency.markdown([row], {"date": "d", "hardware": {"processor": "p", "cpu_count": 1, "torch": "t"},
                                           "smoke": True})
    assert f"| auto -> {row['round_to_used']} |" in table and "SMOKE" in table
    if fuse:
        onnx = row["onnx"]
        assert onnx["parity"]["passed"] and onnx["verdict"] in VERDICTS
        assert onnx["latency_ratio"] == pytest.approx(onnx["latency_speedup"] / row["macs_speedup"])
        assert "ONNX Runtime speedup" in table and "| passed |" in table
    else:
        assert "onnx" not in row and "ONNX" not in table


def test_round_to_argument_takes_ints_and_auto():
    assert bench_latency._round_to("auto") == "auto" and bench_latency._round_to("8") == 8
    with pytest.raises(SystemExit):
        bench_latency.main(["--round-to", "0"])
    with pytest.raises(ValueError, match="invalid literal"):
        bench_latency._round_to("fast")
