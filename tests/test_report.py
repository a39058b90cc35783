"""`python -m lightning_compress.report`: a folder of results.json files -> table, CSV and plot."""

import csv
import json

import pytest

from lightning_compress.report import main, varying_config_keys, write_report


def _run(folder, ratio, final_acc, final_macs):
    folder.mkdir(parents=True)
    record = {
        "config": {"method": {"callback": {"pruning_ratio": ratio}}, "seed": 0, "paths": {"output_dir": str(folder)}},
        "baseline": {"test_acc": 0.97, "macs": 1_000_000, "params": 5000},
        "final": {"test_acc": final_acc, "macs": final_macs, "params": 2000, "latency_ms": 1.5},
        "wall_time_s": 12.0,
    }
    (folder / "results.json").write_text(json.dumps(record))


def test_report_collects_every_run_with_the_swept_key(tmp_path, capsys):
    _run(tmp_path / "0", 0.3, 0.965, 700_000)
    _run(tmp_path / "1", 0.5, 0.95, 500_000)
    main([str(tmp_path)])
    rows = list(csv.DictReader((tmp_path / "report.csv").open()))
    assert [r["method.callback.pruning_ratio"] for r in rows] == ["0.3", "0.5"]
    assert [float(r["macs_reduction_pct"]) for r in rows] == [30.0, 50.0]
    assert float(rows[1]["delta_acc_pt"]) == pytest.approx(-2.0)
    assert (tmp_path / "accuracy_vs_macs.png").stat().st_size > 1000
    assert "pruning_ratio" in capsys.readouterr().out


def test_varying_keys_ignore_paths_and_constant_values():
    configs = [{"a": 1, "b": {"c": 2}, "paths": {"x": "1"}}, {"a": 1, "b": {"c": 3}, "paths": {"x": "2"}}]
    assert varying_config_keys(configs) == ["b.c"]


def test_report_errors_name_the_folder_or_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results.json"):
        write_report(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_report(tmp_path / "missing")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "results.json").write_text("{broken")
    with pytest.raises(ValueError, match="results.json"):
        write_report(tmp_path)
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing")])


def test_runs_that_are_not_done_are_skipped_and_named(tmp_path, capsys):
    _run(tmp_path / "0", 0.3, 0.965, 700_000)
    _run(tmp_path / "1", 0.5, 0.95, 500_000)
    for name, extra in (("1", {"status": "failed", "error": {"type": "RuntimeError", "message": "boom"}}),
                        ("2", {"status": "running"})):
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        record = json.loads((folder / "results.json").read_text()) if (folder / "results.json").exists() else {}
        (folder / "results.json").write_text(json.dumps({**record, "config": {"seed": 1}, **extra}))
    main([str(tmp_path)])
    rows = list(csv.DictReader((tmp_path / "report.csv").open()))
    assert [r["run"] for r in rows] == ["0"]
    out = capsys.readouterr().out
    assert "Skipped 2 run(s) that are not done" in out
    assert "- 1 (failed: RuntimeError: boom)" in out and "- 2 (running)" in out
    (tmp_path / "0" / "results.json").unlink()
    with pytest.raises(FileNotFoundError, match="no finished run"):
        write_report(tmp_path)
