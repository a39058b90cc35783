"""benchmarks/bench_latency.py (issue 31): round_to="auto", the fused/hooked select forms and the ONNX Runtime column
run and are reported; the numbers of these tiny runs mean nothing. The benchmarks' own tests live beside them (the
project's tests in tests/ import no benchmark); pytest collects both folders."""

from __future__ import annotations

import pytest
import torch

from benchmarks import bench_latency
from lightning_compress.cost import VERDICTS
from lightning_compress.models import resnet20


@pytest.fixture(autouse=True)
def _same_random_state() -> None:
    """As tests/conftest.py: every test starts from the same random state."""
    torch.manual_seed(0)


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
    faults = f"| {row['before']['page_faults']:.0f} -> {row['after']['page_faults']:.0f} |"
    assert faults in table and "allocator the C library's defaults" in table
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


def test_latency_benchmark_smoke_mode_prints_the_table(capsys):
    rows = bench_latency.main(["--smoke", "--models", "resnet56", "mobilenet_v2", "--round-to", "1", "8"])
    out = capsys.readouterr().out
    assert len(rows) == 4 and {r["round_to"] for r in rows} == {1, 8}
    assert "| model |" in out and "realised" in out
    resnet = next(r for r in rows if r["model"] == "resnet56" and r["round_to"] == 1)
    assert resnet["macs_after"] / resnet["macs_before"] == pytest.approx(0.5, abs=0.03)  # the ratio search hit -50%
    for row in rows:
        assert row["macs_speedup"] > 1 and row["latency_ratio"] == pytest.approx(
            row["latency_speedup"] / row["macs_speedup"])
        assert row["round_to"] == 1 or all(w % row["round_to"] == 0 or w == full
                                           for w, full in row["widths"])


def test_latency_benchmark_times_channels_last_when_asked(capsys):
    rows = bench_latency.main(["--smoke", "--models", "resnet56_select", "--round-to", "8", "--channels-last"])
    assert rows[0]["channels_last"] and "channels-last" in capsys.readouterr().out
