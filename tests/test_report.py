"""`python -m lightning_compress.report`: a folder of results.json files -> table, CSV and plot."""

import csv
import json

import pytest

from lightning_compress.report import PLOT_FILE, build_rows, load_runs, main, varying_config_keys, write_report


def _latency(median, batch=64, threads=2):
    return {"latency_ms": median, "latency_q1_ms": median - 0.1, "latency_q3_ms": median + 0.1,
            "latency_batch_size": batch, "latency_device": "cpu", "latency_threads": threads}


def _run(folder, ratio, final_acc, final_macs, final_latency=1.5, threads=2, seed=0):
    folder.mkdir(parents=True)
    record = {
        "status": "done",
        "config": {"method": {"callback": {"pruning_ratio": ratio}}, "seed": seed,
                   "paths": {"output_dir": str(folder)}},
        "baseline": {"test_acc": 0.97, "macs": 1_000_000, "params": 5000, **_latency(3.0, threads=threads)},
        "final": {"test_acc": final_acc, "macs": final_macs, "params": 2000,
                  **_latency(final_latency, threads=threads)},
        "latency": {"interleaved": True, "reference": "baseline",
                    "changes": {"final": {"speedup": 3.0 / final_latency, "verdict": "faster"}}},
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
    assert (tmp_path / PLOT_FILE).stat().st_size > 1000
    assert "pruning_ratio" in capsys.readouterr().out


def test_varying_keys_ignore_paths_and_constant_values():
    configs = [{"a": 1, "b": {"c": 2}, "paths": {"x": "1"}}, {"a": 1, "b": {"c": 3}, "paths": {"x": "2"}}]
    assert varying_config_keys(configs) == ["b.c"]


def test_varying_keys_ignore_how_a_run_was_executed():
    configs = [{"seed": 0, "threads": None, "resume": None}, {"seed": 0, "threads": 2, "resume": "/runs/r"},
               {"seed": 1, "threads": None, "resume": None}]
    assert varying_config_keys(configs) == ["seed"]


def test_varying_keys_ignore_where_the_data_was_read():
    configs = [{"seed": 0, "data": {"root": "/a/cifar10"}}, {"seed": 1, "data": {"root": "/b/../cifar10"}},
               {"seed": 0, "data": {"root": "/a/cifar10"}, "model": {"width": 2}}]
    assert varying_config_keys(configs) == ["model.width", "seed"]


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


def test_report_shows_measured_latency_beside_macs(tmp_path):
    _run(tmp_path / "0", 0.3, 0.965, 700_000, final_latency=2.0)
    _run(tmp_path / "1", 0.5, 0.95, 500_000, final_latency=1.5)
    paths = write_report(tmp_path)
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [float(r["final_latency_ms"]) for r in rows] == [2.0, 1.5]
    assert [float(r["baseline_latency_ms"]) for r in rows] == [3.0, 3.0]
    assert [float(r["latency_speedup"]) for r in rows] == [1.5, 2.0]
    assert {r["latency_verdict"] for r in rows} == {"faster"}
    assert rows[0]["latency_setting"] == "batch 64, cpu, 2 threads"
    markdown = paths["markdown"].read_text()
    assert "latency_verdict" in markdown and "interleaved" in markdown and "Warning" not in markdown
    import matplotlib.image

    image = matplotlib.image.imread(paths["plot"])
    assert image.shape[1] > 1.8 * image.shape[0]  # two panels side by side: MACs and latency


def test_report_warns_when_latencies_were_measured_differently(tmp_path):
    _run(tmp_path / "0", 0.3, 0.965, 700_000, threads=1)
    _run(tmp_path / "1", 0.5, 0.95, 500_000, threads=2)
    assert "different settings" in write_report(tmp_path)["markdown"].read_text()


def test_runs_without_latency_still_report(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps({"config": {}, "final": {"test_acc": 0.9, "macs": 10}}))
    _, rows = build_rows(load_runs(tmp_path), tmp_path)
    assert rows[0]["final_latency_ms"] is None and rows[0]["latency_verdict"] is None
    assert write_report(tmp_path)["plot"].stat().st_size > 1000
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


def test_runs_that_differ_only_in_seed_are_merged_with_their_spread(tmp_path):
    from lightning_compress.report import group_by_seed

    _run(tmp_path / "a0", 0.3, 0.960, 700_000, seed=0)
    _run(tmp_path / "a1", 0.3, 0.970, 700_000, seed=1)
    _run(tmp_path / "b0", 0.5, 0.950, 500_000, seed=0)
    keys, rows = build_rows(load_runs(tmp_path), tmp_path)
    assert set(keys) == {"method.callback.pruning_ratio", "seed"}
    merged = {m["method.callback.pruning_ratio"]: m for m in group_by_seed(keys, rows)}
    assert merged[0.3]["n"] == 2 and merged[0.3]["seeds"] == "0,1"
    assert merged[0.3]["final_acc"] == pytest.approx(0.965) and merged[0.3]["final_acc_spread"] == pytest.approx(0.005)
    assert merged[0.5]["n"] == 1 and merged[0.5]["final_acc_spread"] is None
    markdown = write_report(tmp_path)["markdown"].read_text()
    assert "differ only in `seed`" in markdown and "0.965 +- 0.005" in markdown


def test_a_per_seed_baseline_path_does_not_split_a_seed_group():
    from lightning_compress.report import group_by_seed

    rows = [{"run": f"l1_s{seed}", "seed": seed, "method.pretrained": f"ck/resnet20_s{seed}.pt", "final_acc": acc}
            for seed, acc in ((0, 0.87), (1, 0.88))]
    rows.append({"run": "other", "seed": 1, "method.pretrained": "ck/resnet20_s11.pt", "final_acc": 0.5})
    merged = group_by_seed(["seed", "method.pretrained"], rows)
    assert [m["runs"] for m in merged] == ["l1_s0, l1_s1", "other"]
    assert merged[0]["final_acc"] == pytest.approx(0.875)


def test_one_file_shared_by_every_seed_does_not_split_a_seed_group():
    from lightning_compress.report import group_by_seed

    rows = [{"run": f"fsp_s{seed}", "seed": seed, "method.teacher": "ck/resnet26_s0.pt", "final_acc": acc}
            for seed, acc in ((0, 0.80), (1, 0.79), (2, 0.81))]
    rows.append({"run": "other", "seed": 1, "method.teacher": "ck/resnet26_s1.pt", "final_acc": 0.5})
    merged = group_by_seed(["seed", "method.teacher"], rows)
    assert [m["runs"] for m in merged] == ["fsp_s0, fsp_s1, fsp_s2", "other"]
    assert merged[0]["final_acc"] == pytest.approx(0.80)


def test_runs_are_named_by_folder_when_more_keys_vary_than_max_keys(tmp_path):
    _run(tmp_path / "l1_row", 0.3, 0.960, 700_000, seed=0)
    _run(tmp_path / "l1_row_seed1", 0.3, 0.970, 700_000, seed=1)
    _run(tmp_path / "fpgm_row", 0.5, 0.950, 500_000, seed=0)
    markdown = write_report(tmp_path, max_keys=1)["markdown"].read_text()
    header = markdown.splitlines()[0]
    assert "pruning_ratio" not in header and header.startswith("| run | role | baseline_acc")
    assert "2 config keys differ between these runs (more than 1)" in markdown
    assert "| l1_row, l1_row_seed1 | 2 | 0,1 |" in markdown  # the seed merge still uses every key
    rows = list(csv.DictReader((tmp_path / "report.csv").open()))
    assert "seed" not in rows[0] and [r["run"] for r in rows] == ["fpgm_row", "l1_row", "l1_row_seed1"]
    assert "config keys differ" not in write_report(tmp_path)["markdown"].read_text()  # 2 <= the default


def test_max_keys_must_not_be_negative(tmp_path):
    _run(tmp_path / "0", 0.3, 0.965, 700_000)
    with pytest.raises(ValueError, match="max_keys"):
        write_report(tmp_path, max_keys=-1)


def _distill_run(folder, seed, final_acc, alone_acc, equal="not run"):
    folder.mkdir(parents=True)
    record = {
        "status": "done", "config": {"method": {"name": "kd"}, "seed": seed},
        "teacher": {"test_acc": 0.86, "macs": 3_000_000, "params": 360_000},
        "student_alone": {"test_acc": alone_acc, "macs": 750_000, "params": 75_000},
        "student_equal_compute": ({"status": "not run", "epochs": 0} if equal == "not run"
                                  else {"test_acc": equal, "macs": 750_000, "params": 75_000}),
        "final": {"test_acc": final_acc, "macs": 750_000, "params": 75_000},
    }
    (folder / "results.json").write_text(json.dumps(record))


def test_distillation_runs_report_teacher_students_and_gains_and_seed_groups_go_to_csv(tmp_path):
    _distill_run(tmp_path / "s0", 0, 0.815, 0.79)
    _distill_run(tmp_path / "s1", 1, 0.811, 0.80, equal=0.805)
    paths = write_report(tmp_path)
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [float(r["baseline_acc"]) for r in rows] == [0.86, 0.86]  # the teacher is the network compressed
    assert float(rows[0]["macs_reduction_pct"]) == 75.0
    assert [float(r["gain_vs_student_alone_pt"]) for r in rows] == pytest.approx([2.5, 1.1])
    assert rows[0]["student_equal_compute_acc"] == "" and float(rows[1]["gain_vs_equal_compute_pt"]) == 0.6
    merged = list(csv.DictReader(paths["seeds_csv"].open()))
    assert len(merged) == 1 and merged[0]["n"] == "2"
    assert float(merged[0]["gain_vs_student_alone_pt"]) == pytest.approx(1.8)
    assert float(merged[0]["gain_vs_student_alone_pt_spread"]) == pytest.approx(0.7)
    assert "gain_vs_student_alone_pt" in paths["markdown"].read_text()


def test_a_baseline_that_did_not_run_has_no_accuracy_in_the_report(tmp_path):
    _run(tmp_path / "0", 0.3, 0.965, 700_000)
    record = json.loads((tmp_path / "0" / "results.json").read_text())
    record["baseline"] = {"status": "not run", "test_acc": None, "macs": 1_000_000, "params": 5000}
    (tmp_path / "0" / "results.json").write_text(json.dumps(record))
    _, rows = build_rows(load_runs(tmp_path), tmp_path)
    assert rows[0]["baseline_acc"] is None and rows[0]["delta_acc_pt"] is None
    assert rows[0]["macs_reduction_pct"] == 30.0


def test_report_gives_realised_over_macs_speedup_and_flags_runs_below_the_target(tmp_path):
    _run(tmp_path / "0", 0.3, 0.965, 500_000, final_latency=1.5)  # MACs 2x, latency 2x: ratio 1.0
    _run(tmp_path / "1", 0.5, 0.95, 500_000, final_latency=2.5)  # MACs 2x, latency 1.2x: ratio 0.6
    paths = write_report(tmp_path)
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [float(r["latency_per_macs_speedup"]) for r in rows] == pytest.approx([1.0, 0.6])
    assert [r["speed_flag"] for r in rows] == ["ok", "< 0.85"]
    assert "speed_flag" in paths["markdown"].read_text()


def test_the_report_tells_methods_from_controls_and_plain_training_runs(tmp_path):
    _run(tmp_path / "method", 0.4, 0.95, 500_000)
    _run(tmp_path / "control", 0.4, 0.93, 500_000)
    record = json.loads((tmp_path / "control" / "results.json").read_text())
    record["config"]["method"]["name"] = "random_widths"
    (tmp_path / "control" / "results.json").write_text(json.dumps(record))
    _run(tmp_path / "baseline", 0.4, 0.97, 1_000_000)
    record = json.loads((tmp_path / "baseline" / "results.json").read_text())
    del record["baseline"]
    (tmp_path / "baseline" / "results.json").write_text(json.dumps(record))
    main([str(tmp_path)])
    roles = {r["run"]: r["role"] for r in csv.DictReader((tmp_path / "report.csv").open())}
    assert roles == {"baseline": "baseline", "control": "control", "method": "method"}
