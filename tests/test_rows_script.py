"""experiments/rows.sh: every listed row resolves to its overrides, and a row it does not know stops with an error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

ROWS = Path(__file__).resolve().parents[1] / "experiments" / "rows.sh"
# every folder rows.sh writes or deletes in, away from the checkout: `keep` deletes a committed carry pack
OUTSIDE_THE_CHECKOUT = {name: f"/nonexistent/rows-test/{name.lower()}" for name in ("KEPT", "CK", "CARRY")}


def _rows(*args: str) -> subprocess.CompletedProcess:
    # PY=false: were a row ever to reach train.py here, it would fail at once instead of training
    return subprocess.run(["bash", str(ROWS), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PY": "false", **OUTSIDE_THE_CHECKOUT})


def test_every_listed_row_resolves_to_an_experiment_and_a_seed():
    names = _rows("list").stdout.split()
    assert "l1_b_s0" in names and "random_fpgm40_s0" in names
    shown = _rows("show", *names)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == len(names) and all("+experiment=" in line and " seed=" in line for line in lines)


def test_every_listed_row_composes_into_a_config(compose_config):
    """A mistyped key in a row's overrides fails here, not an hour into the row."""
    shown = _rows("show", *_rows("list").stdout.split()).stdout.splitlines()
    for line in shown:
        name, overrides = line.split(": ", 1)
        cfg = compose_config(*overrides.split())
        assert cfg.seed == int(name.rsplit("_s", 1)[1]), name


def test_an_fsp_kd_row_leaves_the_student_alone_to_its_seeds_fsp_row():
    fsp, fsp_kd = (line.split(": ", 1)[1] for line in _rows("show", "fsp_s1", "fsp_kd_s1").stdout.splitlines())
    assert "student_alone.epochs" not in fsp
    assert "method.student_alone.epochs=0 method.student_equal_compute.epochs=0" in fsp_kd


def test_each_fpgm_control_reads_its_own_method_row():
    shown = _rows("show", "random_fpgm40_s1", "random_fpgm40_oneshot_s1").stdout.splitlines()
    assert "logs/rows/fpgm40_s1/stages/compressed/model.pt" in shown[0]
    assert "logs/rows/fpgm40_oneshot_s1/stages/compressed/model.pt" in shown[1]
    assert all("+experiment=resnet20_cifar10_fpgm_random_cpu" in line for line in shown)


def test_a_vgg_rows_controls_start_from_the_vgg_baseline_on_the_vgg_network():
    random, scratch = _rows("show", "random_vgg_slim70_s2", "scratchb_vgg_slim70_s2").stdout.splitlines()
    assert "+experiment=vgg11_half_cifar10_slimming_random_cpu" in random
    assert "model=vgg11_half " in scratch and "method.compress.epochs=110" in scratch
    assert all("vgg11_half_s0.pt" in line and "vgg_slim70_s2/" in line and "resnet20" not in line
               for line in (random, scratch))


def test_the_control_of_a_longer_retraining_row_trains_as_long():
    method, control = _rows("show", "l1_b_ft25_s0", "random_l1_b_ft25_s0").stdout.splitlines()
    assert "method.finetune.epochs=25" in method
    assert "method.compress.epochs=25" in control and "logs/rows/l1_b_ft25_s0/" in control
    assert "epochs=25" not in _rows("show", "random_l1_b_s0").stdout


def test_a_control_of_an_unknown_method_row_stops_before_training():
    for command in ("show", "run"):
        result = _rows(command, "random_nosuch_s0")
        assert result.returncode != 0 and "no random control for nosuch" in result.stderr
        assert "train.py" not in result.stdout


def _finished_row(rows: Path, name: str, status: str) -> None:
    stage = rows / name / "stages" / "final"
    stage.mkdir(parents=True)
    (stage / "model.pt").write_bytes(b"weights of " + name.encode())
    (rows / name / "results.json").write_text(json.dumps({"status": status}, indent=2))
    (rows / name / "train.log").write_text("log\n")


def test_keep_installs_a_finished_baseline_rows_weights_and_refuses_an_unfinished_row(tmp_path):
    rows, kept, checkpoints = tmp_path / "rows", tmp_path / "kept", tmp_path / "ck"
    _finished_row(rows, "baseline_r26_s0", "done")
    _finished_row(rows, "l1_b_s0", "done")
    (rows / "l1_b_s0" / "csv" / "finetune").mkdir(parents=True)
    (rows / "l1_b_s0" / "csv" / "finetune" / "metrics.csv").write_text("epoch\n")
    _finished_row(rows, "kd_s0", "running")
    env = {"ROWS": str(rows), "KEPT": str(kept), "CK": str(checkpoints), "CARRY": str(tmp_path / "carry")}

    def keep(name: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(ROWS), "keep", name], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PY": "false", **env})

    baseline = keep("baseline_r26_s0")
    assert baseline.returncode == 0, baseline.stderr
    assert (checkpoints / "resnet26_s0.pt").read_bytes() == b"weights of baseline_r26_s0"
    assert "sha256" in baseline.stdout and (kept / "baseline_r26_s0" / "results.json").is_file()

    method = keep("l1_b_s0")
    assert method.returncode == 0 and (kept / "l1_b_s0" / "train.log").is_file()
    assert (kept / "l1_b_s0" / "csv" / "finetune" / "metrics.csv").read_text() == "epoch\n"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["resnet26_s0.pt"]  # a method row installs no weights

    unfinished = keep("kd_s0")
    assert unfinished.returncode != 0 and "kd_s0" in unfinished.stderr and "done" in unfinished.stderr
    assert not (kept / "kd_s0").exists()


def test_carry_packs_an_unfinished_row_and_run_continues_from_the_pack_on_a_fresh_machine(tmp_path):
    rows, carry, kept = tmp_path / "rows", tmp_path / "carry", tmp_path / "kept"
    _finished_row(rows, "baseline_r26_s0", "running")
    stage = rows / "baseline_r26_s0" / "stages" / "baseline"
    stage.mkdir(parents=True)
    (stage / "last.ckpt").write_bytes(b"state after epoch 3")
    (stage / "epoch=3.ckpt").write_bytes(b"state after epoch 3")
    _finished_row(rows, "l1_b_s0", "done")
    arguments = tmp_path / "arguments"
    fake_python = tmp_path / "python"  # records what train.py would have been given
    fake_python.write_text(f'#!/bin/sh\necho "$@" > {arguments}\n')
    fake_python.chmod(0o755)
    env = {**os.environ, "ROWS": str(rows), "CARRY": str(carry), "KEPT": str(kept), "CK": str(tmp_path / "ck")}

    def rows_sh(*args: str, python: str = "false") -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(ROWS), *args], capture_output=True, text=True, timeout=60,
                              env={**env, "PY": python})

    packed = rows_sh("carry", "baseline_r26_s0")
    assert packed.returncode == 0, packed.stderr
    for name, reason in (("l1_b_s0", "done"), ("kd_s0", "never started")):
        refused = rows_sh("carry", name)
        assert refused.returncode != 0 and name in refused.stderr and reason in refused.stderr
    assert sorted(p.name for p in carry.iterdir()) == ["baseline_r26_s0.tar.gz"]

    shutil.rmtree(rows)  # a fresh machine: only the committed pack is left
    resumed = rows_sh("run", "baseline_r26_s0", python=str(fake_python))
    assert resumed.returncode == 0, resumed.stderr
    assert "continues from" in resumed.stdout
    assert (stage / "last.ckpt").read_bytes() == b"state after epoch 3" and not (stage / "epoch=3.ckpt").exists()
    assert f"resume={rows / 'baseline_r26_s0'}" in arguments.read_text()

    (rows / "baseline_r26_s0" / "results.json").write_text(json.dumps({"status": "done"}))
    assert rows_sh("keep", "baseline_r26_s0").returncode == 0
    assert not (carry / "baseline_r26_s0.tar.gz").exists()  # a kept row's pack is deleted


def test_weights_and_packs_over_the_commit_limit_stay_on_this_machine(tmp_path):
    """A baseline too big to commit is installed git-ignored and read from there; a pack too big is refused."""
    rows, checkpoints, local = tmp_path / "rows", tmp_path / "ck", tmp_path / "local-ck"
    _finished_row(rows, "baseline_vgg11h_s0", "done")  # 29 bytes of "weights"
    _finished_row(rows, "fpgm40_authors_s1", "running")
    env = {**os.environ, "PY": "false", "ROWS": str(rows), "KEPT": str(tmp_path / "kept"), "CK": str(checkpoints),
           "LOCAL_CK": str(local), "CARRY": str(tmp_path / "carry"), "COMMIT_LIMIT": "20"}

    def rows_sh(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(ROWS), *args], capture_output=True, text=True, timeout=60, env=env)

    assert f"method.pretrained={checkpoints}/vgg11_half_s0.pt" in rows_sh("show", "vgg_slim70_s1").stdout
    kept = rows_sh("keep", "baseline_vgg11h_s0")
    assert kept.returncode == 0, kept.stderr
    assert "over the 20-byte limit" in kept.stdout and not checkpoints.exists()
    assert (local / "vgg11_half_s0.pt").read_bytes() == b"weights of baseline_vgg11h_s0"
    assert f"method.pretrained={local}/vgg11_half_s0.pt" in rows_sh("show", "vgg_slim70_s1").stdout

    refused = rows_sh("carry", "fpgm40_authors_s1")
    assert refused.returncode != 0 and "over the 20-byte limit" in refused.stderr
    assert list((tmp_path / "carry").iterdir()) == []
    (tmp_path / "carry" / "fpgm40_authors_s1.tar.gz").write_bytes(b"an earlier pack")  # a refused pack replaces nothing
    assert rows_sh("carry", "fpgm40_authors_s1").returncode != 0
    assert [p.read_bytes() for p in (tmp_path / "carry").iterdir()] == [b"an earlier pack"]
    assert (rows / "fpgm40_authors_s1" / "results.json").is_file()  # the row itself is untouched


def test_keep_writes_a_pruned_rows_plan_and_its_controls_read_it_once_the_row_folder_is_gone(tmp_path):
    from lightning_compress.callbacks.controls import reference_plan
    from lightning_compress.pruning import select_channels
    from lightning_compress.pruning.saving import save_pruned
    from tests.helpers import randomize_norms, tiny_resnet

    rows, kept = tmp_path / "rows", tmp_path / "kept"
    _finished_row(rows, "l1_b_s0", "done")
    net = randomize_norms(tiny_resnet())
    plan = select_channels(net, torch.zeros(1, 1, 8, 8), 0.5, importance="l1", residual="select")
    (rows / "l1_b_s0" / "stages" / "compressed").mkdir()
    save_pruned(rows / "l1_b_s0" / "stages" / "compressed" / "model.pt", net, plan)
    env = {**os.environ, "ROWS": str(rows), "KEPT": str(kept), "CK": str(tmp_path / "ck"),
           "CARRY": str(tmp_path / "carry")}

    def rows_sh(*args: str, python: str = "false") -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(ROWS), *args], capture_output=True, text=True, timeout=120,
                              env={**env, "PY": python})

    assert f"{rows}/l1_b_s0/stages/compressed/model.pt" in rows_sh("show", "random_l1_b_s0").stdout
    kept_row = rows_sh("keep", "l1_b_s0", python=sys.executable)
    assert kept_row.returncode == 0, kept_row.stderr
    assert reference_plan(str(kept / "l1_b_s0" / "plan.json")).to_dict() == plan.to_dict()

    _finished_row(rows, "random_l1_b_s0", "done")  # a control's own plan is never read: not written
    (rows / "random_l1_b_s0" / "stages" / "compressed").mkdir()
    save_pruned(rows / "random_l1_b_s0" / "stages" / "compressed" / "model.pt", net, plan)
    assert rows_sh("keep", "random_l1_b_s0", python=sys.executable).returncode == 0
    assert not (kept / "random_l1_b_s0" / "plan.json").exists()

    shutil.rmtree(rows)  # a clean clone: the controls read the committed plan
    for control in ("random_l1_b_s0", "scratchb_l1_b_s0"):
        assert f"method.callback.reference={kept}/l1_b_s0/plan.json " in rows_sh("show", control).stdout
