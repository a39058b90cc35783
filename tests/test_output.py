"""Output a person reads: one line per epoch without a terminal, a summary table that names every stage and explains
the pre-fine-tune row, reductions as "% fewer" everywhere, Lightning's device notices once."""

from __future__ import annotations

import logging

from lightning_compress.pipeline import run
from lightning_compress.pipeline.progress import OncePerProcess, format_epoch_line
from lightning_compress.pipeline.results import PRE_FINETUNE_NOTE, reduction_text, summary_table


def test_non_interactive_run_logs_one_line_per_epoch_and_no_progress_bar(compose_config, capsys, caplog):
    caplog.set_level(logging.INFO, logger="lightning_compress")
    run(compose_config("trainer.max_epochs=3", "trainer.enable_progress_bar=null", "+trainer.limit_train_batches=2"))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[train] epoch")]
    assert [line.split()[2] for line in lines] == ["1/3", "2/3", "3/3"]
    assert all("train/loss" in line and "val/acc" in line for line in lines)
    out = capsys.readouterr()
    assert "it/s" not in out.out + out.err and "\r" not in out.out + out.err  # no tqdm bar
    assert "final  trained network" in out.out


def test_summary_table_names_the_stages_and_explains_the_pre_finetune_row():
    record = {"baseline": {"test_acc": 0.99, "params": 140_000, "macs": 1_800_000},
              "compressed": {"test_acc": 0.0972, "params": 50_000, "macs": 600_000},
              "final": {"test_acc": 0.985, "params": 50_000, "macs": 600_000}}
    table = summary_table(record)
    rows = {line.split()[0]: line for line in table.splitlines()[2:6]}
    assert "before fine-tune *" in rows["compressed"] and "after fine-tune" in rows["final"]
    assert "64.3% fewer" in rows["change"] and "66.7% fewer" in rows["change"] and "-0.50 pt" in rows["change"]
    assert table.endswith(PRE_FINETUNE_NOTE)
    distill = summary_table({"teacher": {"test_acc": 0.9}, "student_alone": {"test_acc": 0.8},
                             "final": {"test_acc": 0.85}, "distillation": {}})
    assert "student trained alone (no distillation)" in distill and PRE_FINETUNE_NOTE not in distill


def test_reduction_text_is_percent_fewer_or_more():
    assert reduction_text(200, 50) == "75.0% fewer"
    assert reduction_text(100, 103) == "3.0% more"


def test_epoch_line_keeps_epoch_metrics_and_drops_step_duplicates():
    line = format_epoch_line("compress", 1, 10, {"train/loss_step": 9.0, "train/loss": 0.5, "train/loss_epoch": 0.5,
                                                 "val/acc": 0.97, "slimming/gamma_mean": 0.31}, 2.04)
    assert line == "[compress] epoch 2/10  train/loss 0.5000  val/acc 0.9700  slimming/gamma_mean 0.3100  (2.0 s)"


def test_lightning_notices_pass_once_and_tips_never():
    flt = OncePerProcess()

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("x", logging.INFO, __file__, 1, message, None, None)

    assert flt.filter(record("GPU available: False, used: False"))
    assert not flt.filter(record("GPU available: False, used: False"))
    assert not flt.filter(record("💡 Tip: For seamless cloud logging"))
    assert all(flt.filter(record("[NetworkSlimming] params 1 -> 1")) for _ in range(2))  # others: always
