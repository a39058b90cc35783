"""The pruning pipelines end to end on tiny settings: `make run`'s +method=slimming, +method=l1_filter, and reruns that
start from a saved baseline (method.pretrained) or a saved compressed model (method.compressed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lightning_compress.pipeline import run
from tests.helpers import TINY_PRUNING_RUN as TINY


@pytest.mark.parametrize("method", ["slimming", "l1_filter"])
def test_method_runs_then_reruns_from_its_baseline_and_its_compressed_model(compose_config, tmp_path: Path,
                                                                            method: str) -> None:
    first = run(compose_config(f"+method={method}", *TINY))  # the digits showcase of `make run`, tiny
    assert first["compressed"]["macs"] < first["baseline"]["macs"]
    assert first["final"]["macs"] == first["compressed"]["macs"]
    saved = tmp_path / "saved"  # the reruns write into the same run folder: keep the first run's models
    saved.mkdir()
    baseline = str(shutil.copy(first["baseline"]["model_path"], saved / "baseline.pt"))
    compressed = str(shutil.copy(first["compressed"]["model_path"], saved / "compressed.pt"))

    again = run(compose_config(f"+method={method}", f"method.pretrained={baseline}", *TINY))
    assert again["baseline"]["loaded_from"] == baseline
    assert again["baseline"]["test_acc"] == pytest.approx(first["baseline"]["test_acc"])
    assert again["baseline"]["params"] == first["baseline"]["params"]

    tuned = run(compose_config(f"+method={method}", f"method.compressed={compressed}", *TINY))
    assert "baseline" not in tuned and tuned["loaded_compressed"] == compressed
    assert tuned["final"]["params"] == first["compressed"]["params"]


def test_a_missing_compressed_model_is_named_as_such(compose_config) -> None:
    with pytest.raises(FileNotFoundError, match="`method.compressed`"):
        run(compose_config("+method=l1_filter", "method.compressed=nothing/here.pt", *TINY))


def test_finetune_can_distil_from_the_unpruned_baseline(compose_config) -> None:
    record = run(compose_config("+method=fpgm", "method.finetune.distill=kd", "+method.finetune.kd={temperature: 2.0}",
                                *TINY))
    assert record["final"]["macs"] == record["compressed"]["macs"] < record["baseline"]["macs"]
    with pytest.raises(ValueError, match="`method.finetune.distill` must be null or 'kd'"):
        run(compose_config("+method=fpgm", "method.finetune.distill=fsp", *TINY))


def test_slimming_records_its_cut_and_a_baseline_that_did_not_run(compose_config) -> None:
    record = run(compose_config("+method=slimming", *TINY, "method.baseline.epochs=0", "method.compress.epochs=2",
                                "method.callback.bn_recalibration=2"))
    assert record["baseline"]["status"] == "not run" and record["baseline"]["test_acc"] is None
    assert record["baseline"]["macs"] > record["compressed"]["macs"]  # its size is still a fact
    sparsity = record["compressed"]["sparsity"]
    assert sparsity["cut_fraction"] == pytest.approx(0.4, abs=0.01) and sparsity["l1_push"] > 0
    assert 0.0 <= sparsity["frac_below_small_gamma"] <= 1.0
    recal = record["compressed"]["bn_recalibration"]
    assert recal["batches"] == 2 and recal["test_acc_after"] == record["compressed"]["test_acc"]
    assert 0.0 <= recal["test_acc_before"] <= 1.0


def test_summary_table_says_not_run_and_what_the_cut_saw() -> None:
    from lightning_compress.pipeline.results import summary_table

    size = {"params": 10, "macs": 100, "flops": 200}
    record = {"baseline": {"status": "not run", "reason": "method.baseline.epochs is 0", "test_acc": None, **size},
              "compressed": {"test_acc": 0.9, **size,
                             "sparsity": {"frac_below_small_gamma": 0.55, "cut_fraction": 0.4, "small_gamma": 0.01},
                             "bn_recalibration": {"batches": 10, "test_acc_before": 0.5, "test_acc_after": 0.9}},
              "final": {"test_acc": 0.95, **size}}
    table = summary_table(record)
    assert "not run (method.baseline.epochs is 0)" in table.splitlines()[2]
    assert "55.0% of the BN scales ended below 0.01; the cut removed 40.0%" in table
    assert "0.9000 with BN statistics re-estimated on 10 training batches, 0.5000 without" in table


def test_l1_with_zero_compress_epochs_is_the_cut_alone_then_the_retraining(compose_config) -> None:
    record = run(compose_config("+method=l1_filter", *TINY, "method.compress.epochs=0", "method.finetune.epochs=1",
                                "method.callback.bn_recalibration=1"))
    assert record["compressed"]["macs"] < record["baseline"]["macs"]  # cut in setup, nothing trained
    assert record["compressed"]["bn_recalibration"]["test_acc_after"] == record["compressed"]["test_acc"]
    assert record["final"]["macs"] == record["compressed"]["macs"]


def test_every_pruning_run_records_realised_over_macs_speedup(compose_config) -> None:
    from lightning_compress.pipeline.results import summary_table

    timed = [o for o in TINY if not o.startswith("latency.")] + ["latency.batch_size=2", "latency.repeats=3",
                                                                 "latency.warmup=1"]
    record = run(compose_config("+method=fpgm", *timed))
    change = record["latency"]["changes"]["final"]
    ratio = change["speed_ratio"]
    assert ratio["macs_speedup"] == pytest.approx(record["baseline"]["macs"] / record["final"]["macs"])
    assert ratio["ratio"] == pytest.approx(change["speedup"] / ratio["macs_speedup"])
    assert f"realised/MACs {ratio['ratio']:.2f}" in summary_table(record)
