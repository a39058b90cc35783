"""The one latency routine: interleaving, quartiles, the verdict rule, and its use in results.json and the CLIs."""

from __future__ import annotations

import json
import mmap
import warnings
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from lightning_compress import cost
from lightning_compress.cost import (
    VERDICTS,
    Latency,
    compare_latency,
    interleaved_latency,
    latency_change,
    measure_latency,
)
from lightning_compress.pipeline import run, stages
from lightning_compress.pipeline.artifacts import save_stage_model
from lightning_compress.pipeline.context import RunContext
from lightning_compress.pruning import prune, select_channels

TINY_PRUNE = ["+method=l1_filter", "model=resnet8", "data=synthetic", "data.train_size=16", "data.val_size=8",
              "data.test_size=8", "data.batch_size=8", "method.baseline.epochs=1", "method.compress.epochs=1",
              "+trainer.limit_train_batches=1", "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1",
              "trainer.enable_checkpointing=false"]


def _latency(q1: float, median: float, q3: float) -> Latency:
    return Latency(median_ms=median, q1_ms=q1, q3_ms=q3, batch_size=1, device="cpu", repeats=20, warmup=5,
                   threads=1, timer="perf_counter")


class FakeClock:
    """``time.perf_counter`` stand-in: each runner advances it by its next scripted duration (seconds)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.now

    def runner(self, name: str, durations_ms: list[float]):
        durations = iter(durations_ms)

        def run() -> None:
            self.calls.append(name)
            self.now += next(durations) / 1e3

        return run


def test_runners_alternate_and_quartiles_come_from_the_timed_runs(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(cost.time, "perf_counter", clock)
    # 2 warm-up rounds (100 ms, ignored), then 5 timed runs each.
    a = clock.runner("a", [100, 100, 1, 2, 3, 4, 5])
    b = clock.runner("b", [100, 100, 10, 20, 30, 40, 50])
    timed = interleaved_latency({"a": a, "b": b}, batch_size=4, warmup=2, repeats=5, threads=1)
    assert clock.calls == ["a", "b", "b", "a"] * 3 + ["a", "b"]  # forward order, then reverse, round after round
    assert timed["a"].median_ms == pytest.approx(3) and timed["a"].q1_ms == pytest.approx(2)
    assert timed["a"].q3_ms == pytest.approx(4) and timed["a"].iqr_ms == pytest.approx(2)
    assert timed["b"].median_ms == pytest.approx(30) and timed["b"].repeats == 5 and timed["b"].warmup == 2
    assert (timed["b"].batch_size, timed["b"].threads, timed["b"].timer) == (4, 1, "perf_counter")
    assert latency_change(timed["b"], timed["a"]).verdict == "faster"


def test_each_runs_minor_page_faults_are_counted_on_cpu(monkeypatch):
    def touch_fresh_pages(size: int = 4 << 20) -> None:  # an anonymous mapping: every page written faults once
        with mmap.mmap(-1, size) as memory:
            if hasattr(mmap, "MADV_NOHUGEPAGE"):  # small pages even where transparent huge pages are "always"
                memory.madvise(mmap.MADV_NOHUGEPAGE)
            for offset in range(0, size, mmap.PAGESIZE):
                memory[offset] = 1

    timed = interleaved_latency({"touch": touch_fresh_pages, "idle": lambda: None}, batch_size=1, warmup=1,
                                repeats=5)
    assert timed["touch"].page_faults >= (4 << 20) // mmap.PAGESIZE // 2
    assert timed["idle"].page_faults < timed["touch"].page_faults
    assert timed["touch"].as_fields()["latency_page_faults"] == timed["touch"].page_faults
    monkeypatch.setattr(cost, "resource", None)  # no getrusage (Windows): not counted, not made up
    assert interleaved_latency({"x": lambda: None}, batch_size=1, warmup=0, repeats=2)["x"].page_faults is None


def test_the_hardware_summary_names_the_allocator_settings(monkeypatch):
    for name in cost._ALLOCATOR_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    assert cost.hardware_summary()["allocator_env"] == {}
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1073741824")
    monkeypatch.setenv("UNRELATED", "x")
    assert cost.hardware_summary()["allocator_env"] == {"MALLOC_TRIM_THRESHOLD_": "1073741824"}


def test_threads_are_set_for_the_measurement_and_restored():
    before = torch.get_num_threads()
    seen = []
    timed = interleaved_latency({"x": lambda: seen.append(torch.get_num_threads())}, batch_size=1, warmup=0,
                                repeats=2, threads=1)
    assert seen == [1, 1] and timed["x"].threads == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(("after", "verdict"), [((1.0, 1.5, 1.9), "faster"), ((3.1, 3.5, 4.0), "slower"),
                                                ((1.5, 1.8, 2.5), "no measurable change"),
                                                ((2.1, 2.5, 2.9), "no measurable change")])
def test_a_change_is_called_only_when_the_iqrs_separate(after, verdict):
    before = _latency(2.0, 2.5, 3.0)
    change = latency_change(before, _latency(*after))
    assert change.verdict == verdict and verdict in VERDICTS
    assert change.speedup == pytest.approx(2.5 / after[1])


def test_bad_arguments_are_rejected_with_their_names():
    with pytest.raises(ValueError, match="repeats"):
        interleaved_latency({"x": lambda: None}, batch_size=1, repeats=0)
    with pytest.raises(ValueError, match="runners"):
        interleaved_latency({}, batch_size=1)
    with pytest.raises(ValueError, match="threads"):
        interleaved_latency({"x": lambda: None}, batch_size=1, threads=0)


def test_compare_latency_runs_models_in_eval_without_grad_and_restores_modes():
    modes = []
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    net.register_forward_hook(lambda m, a, o: modes.append((m.training, torch.is_grad_enabled())))
    other = nn.Conv2d(3, 4, 3)
    timed = compare_latency({"net": net, "other": other}, torch.zeros(2, 3, 8, 8), warmup=1, repeats=3)
    assert set(modes) == {(False, False)} and len(modes) == 4
    assert net.training and timed["net"].batch_size == 2 and timed["net"].device == "cpu"
    single = measure_latency(other, torch.zeros(2, 3, 8, 8), warmup=0, repeats=2)
    assert single.repeats == 2 and single.median_ms > 0 and single.q1_ms <= single.median_ms <= single.q3_ms


def test_compare_latency_in_channels_last_converts_inputs_and_models():
    layouts = []
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    net.register_forward_pre_hook(lambda m, a: layouts.append(a[0].is_contiguous(memory_format=torch.channels_last)
                                                               and not a[0].is_contiguous()))
    compare_latency({"net": net}, torch.zeros(2, 3, 8, 8), warmup=0, repeats=1, channels_last=True)
    assert layouts == [True] and net[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_compare_latency_rejects_a_model_on_another_device():
    net = nn.Linear(2, 2).to(torch.float64)
    with pytest.raises(ValueError, match="meta"):
        compare_latency({"net": net.to("meta")}, torch.zeros(1, 2))


# ------------------------------------------------------------------------------------------ results.json (pipeline)
def _ctx(tmp_path, *section_plans, repeats: int = 3) -> RunContext:
    """A run context whose record holds saved digits_vgg stage models (``(section, pruned?)`` pairs)."""
    model_cfg = OmegaConf.create({"_target_": "lightning_compress.models.digits_vgg", "num_classes": 10,
                                  "in_channels": 1})
    cfg = OmegaConf.create({"model": model_cfg, "latency": {"batch_size": 2, "repeats": repeats, "warmup": 1,
                                                            "threads": 1, "device": "cpu"}})
    datamodule = SimpleNamespace(example_input=lambda n=1: torch.zeros(n, 1, 8, 8))
    ctx = RunContext(cfg=cfg, datamodule=datamodule, output_dir=tmp_path)
    from lightning_compress.pipeline.builders import build_net

    for section, pruned in section_plans:
        net = build_net(model_cfg)
        plan = None
        if pruned:
            plan = select_channels(net, torch.zeros(1, 1, 8, 8), 0.5)
            prune(net, plan)
        path = save_stage_model(ctx.stage_dir(section) / "model.pt", net, model_cfg, plan, (1, 8, 8))
        ctx.record[section] = {"model_path": str(path)}
    return ctx


def _spy_compare(monkeypatch) -> list[list[str]]:
    calls: list[list[str]] = []
    real = stages.compare_latency

    def spy(models, *args, **kwargs):
        calls.append(list(models))
        return real(models, *args, **kwargs)

    monkeypatch.setattr(stages, "compare_latency", spy)
    return calls


def test_pruning_run_compares_baseline_and_final_in_one_interleaved_measurement(tmp_path, monkeypatch):
    calls = _spy_compare(monkeypatch)
    ctx = _ctx(tmp_path, ("baseline", False), ("compressed", True), ("final", True))
    entry = stages.record_latency(ctx)
    assert calls == [["baseline", "final"]]
    assert entry["interleaved"] and entry["reference"] == "baseline"
    assert set(entry["models"]) == {"baseline", "final"} and set(entry["changes"]) == {"final"}
    assert entry["changes"]["final"]["verdict"] in VERDICTS
    for section in ("baseline", "final"):
        assert ctx.record[section]["latency_ms"] == entry["models"][section]["median_ms"]
        assert ctx.record[section]["latency_repeats"] == 3 and ctx.record[section]["latency_threads"] == 1
        assert ctx.record[section]["latency_q1_ms"] <= ctx.record[section]["latency_q3_ms"]
    assert "latency_ms" not in ctx.record["compressed"]  # same architecture as final: not timed twice


@pytest.mark.parametrize(("faults", "warned"), [((0.0, 2.0), False), ((25000.0, 3000.0), True), ((None, None), False)])
def test_a_run_whose_timing_includes_page_faults_says_so(tmp_path, monkeypatch, faults, warned):
    real = stages.compare_latency

    def with_faults(models, *args, **kwargs):
        timed = real(models, *args, **kwargs)
        return {name: replace(lat, page_faults=count) for (name, lat), count in zip(timed.items(), faults)}

    monkeypatch.setattr(stages, "compare_latency", with_faults)
    ctx = _ctx(tmp_path, ("baseline", False), ("final", True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stages.record_latency(ctx)
    messages = [str(w.message) for w in caught if "page faults" in str(w.message)]
    assert bool(messages) is warned
    if warned:
        assert "baseline 25000, final 3000" in messages[0] and "MALLOC_TRIM_THRESHOLD_" in messages[0]
    assert ctx.record["baseline"]["latency_page_faults"] == faults[0]
    assert (cost.page_fault_note({"a": replace(_latency(1, 2, 3), page_faults=faults[0])}) is not None) is warned


@pytest.mark.parametrize(("module_cl", "latency_cl", "expected"), [(True, None, True), (False, None, False),
                                                                   (True, False, False), (False, True, True)])
def test_the_timed_memory_format_follows_the_module_unless_set(tmp_path, monkeypatch, module_cl, latency_cl,
                                                               expected):
    seen = []
    real = stages.compare_latency
    monkeypatch.setattr(stages, "compare_latency",
                        lambda models, *a, **k: seen.append(k["channels_last"]) or real(models, *a, **k))
    ctx = _ctx(tmp_path, ("baseline", False), ("final", True))
    ctx.cfg.module = {"channels_last": module_cl}
    ctx.cfg.latency.channels_last = latency_cl
    assert stages.record_latency(ctx)["channels_last"] is expected and seen == [expected]


def test_distillation_compares_both_students_with_the_teacher(tmp_path, monkeypatch):
    calls = _spy_compare(monkeypatch)
    ctx = _ctx(tmp_path, ("teacher", False), ("student_alone", True), ("final", True))
    entry = stages.record_latency(ctx)
    assert calls == [["teacher", "student_alone", "final"]]
    assert entry["reference"] == "teacher" and set(entry["changes"]) == {"student_alone", "final"}


def test_a_loaded_compressed_model_is_compared_with_its_unpruned_architecture(tmp_path, monkeypatch):
    calls = _spy_compare(monkeypatch)
    entry = stages.record_latency(_ctx(tmp_path, ("final", True)))
    assert calls == [["unpruned", "final"]] and entry["reference"] == "unpruned"
    assert set(entry["changes"]) == {"final"}


def test_a_plain_run_times_its_final_model_alone(tmp_path):
    ctx = _ctx(tmp_path, ("final", False))
    entry = stages.record_latency(ctx)
    assert entry["reference"] is None and "changes" not in entry and ctx.record["final"]["latency_ms"] > 0
    ctx.cfg.latency.batch_size = 0
    assert stages.record_latency(ctx) is None


@pytest.mark.parametrize(("override", "key"), [("latency.repeats=0", "latency.repeats"),
                                               ("latency.device=tpu", "latency.device"),
                                               ("latency.threads=0", "latency.threads"),
                                               ("latency.channels_last=1", "latency.channels_last"),
                                               ("export=tflite", "export")])
def test_bad_latency_or_export_settings_fail_before_training(compose_config, tmp_path, override, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        run(compose_config(override))
    assert not (tmp_path / "stages").exists()


def test_pruning_pipeline_writes_interleaved_before_after_to_results(compose_config, tmp_path, monkeypatch):
    calls = _spy_compare(monkeypatch)
    cfg = compose_config(*TINY_PRUNE, "latency.batch_size=2", "latency.repeats=3", "latency.warmup=1")
    run(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert calls == [["baseline", "final"]]
    latency = results["latency"]
    assert latency["reference"] == "baseline" and latency["changes"]["final"]["verdict"] in VERDICTS
    assert results["final"]["latency_ms"] == latency["models"]["final"]["median_ms"]
    assert results["baseline"]["latency_batch_size"] == 2 and results["final"]["latency_repeats"] == 3
    assert results["final"]["macs"] < results["baseline"]["macs"]


# -------------------------------------------------------------------------------------------------- the profile CLI
def test_profile_times_unpruned_and_pruned_interleaved(compose_config, monkeypatch):
    from lightning_compress import profile

    calls: list[list[str]] = []
    real = profile.compare_latency
    monkeypatch.setattr(profile, "compare_latency", lambda models, *a, **k: calls.append(list(models))
                        or real(models, *a, **k))
    cfg = compose_config("model=resnet8", "data=digits", "prune.ratio=0.5", "latency.batch_size=2",
                         "latency.repeats=3", "latency.warmup=1", config_name="profile")
    result = profile.profile_from_config(cfg)
    assert calls == [["model", "pruned"]]
    assert result["pruned"]["macs"] < result["macs"] and result["latency_change"]["verdict"] in VERDICTS
    assert result["pruned"]["latency_repeats"] == 3 and "latency_iqr_ms" in result
    table = profile.format_table(result)
    assert "latency IQR" in table and "interleaved" in table and result["latency_change"]["verdict"] in table


def test_profile_warns_when_its_timing_includes_page_faults(compose_config, monkeypatch):
    from lightning_compress import profile

    real = profile.compare_latency
    monkeypatch.setattr(profile, "compare_latency", lambda models, *a, **k: {
        name: replace(lat, page_faults=5000.0) for name, lat in real(models, *a, **k).items()})
    cfg = compose_config("model=resnet8", "data=digits", "latency.batch_size=2", "latency.repeats=2",
                         "latency.warmup=0", config_name="profile")
    with pytest.warns(UserWarning, match=r"page faults per timed run \(model 5000\)"):
        result = profile.profile_from_config(cfg)
    assert result["latency_page_faults"] == 5000.0
