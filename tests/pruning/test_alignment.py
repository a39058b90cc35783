"""round_to="auto": the multiple is chosen from measured candidates (a deterministic fake timer stands in for the
clock), through choose_round_to and select_channels."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from lightning_compress.cost import Latency
from lightning_compress.models import resnet20
from lightning_compress.pruning import alignment, select_channels
from lightning_compress.pruning.alignment import choose_round_to

X = torch.randn(1, 3, 32, 32)


def fake_timer(medians: dict[str, float], spread: float, calls: list) -> alignment.Timer:
    """Runs every runner once (they must work) and reports ``median +- spread`` as the quartiles."""

    def timer(runners, batch_size, device, warmup, repeats, threads):
        calls.append({"names": sorted(runners), "batch_size": batch_size, "outputs": {k: r() for k, r in
                                                                                        runners.items()}})
        return {k: Latency(medians[k], medians[k] - spread, medians[k] + spread, batch_size, str(device), repeats,
                           warmup, threads or 1, "fake") for k in runners}

    return timer


def _select(model):
    return lambda m: select_channels(model, X, 0.5, round_to=m)


def _widths(plan):
    return sorted(g.size - len(g.removed) for g in plan.groups)


def test_the_fastest_candidate_is_chosen_when_measurably_faster():
    model = resnet20(num_classes=10).eval()
    calls: list = []
    choice = choose_round_to(model, X, _select(model), batch_size=4,
                             timer=fake_timer({"1": 10.0, "8": 6.0, "16": 7.0}, 0.5, calls))
    assert calls[0]["names"] == ["1", "16", "8"] and calls[0]["batch_size"] == 4
    assert all(out.shape == (4, 10) for out in calls[0]["outputs"].values())  # each candidate's pruned network ran
    assert choice.round_to == 8 and choice.reference == 1 and choice.verdict == "faster"
    assert choice.speedup == pytest.approx(10.0 / 6.0)
    assert _widths(choice.plan) == _widths(select_channels(model, X, 0.5, round_to=8))
    assert all(w % 8 == 0 for w in _widths(choice.plan))
    data = json.loads(json.dumps(choice.as_dict()))
    assert data["round_to"] == 8 and set(data["candidates"]) == {"1", "8", "16"}
    assert data["candidates"]["8"]["median_ms"] == 6.0
    assert "round_to=8" in choice.summary()


def test_the_reference_is_kept_when_no_candidate_is_measurably_faster():
    model = resnet20(num_classes=10).eval()
    choice = choose_round_to(model, X, _select(model), candidates=(8, 1),
                             timer=fake_timer({"1": 10.0, "8": 9.5}, 1.0, []))  # lower median, overlapping IQRs
    assert choice.round_to == 1 and choice.verdict == "no measurable change"
    assert choice.speedup == 1.0 and list(choice.latencies) == [1, 8]
    assert _widths(choice.plan) == _widths(select_channels(model, X, 0.5))


@pytest.mark.parametrize(("convert", "channels_last", "expected"), [(True, None, True), (False, None, False),
                                                                    (False, True, True), (True, False, False)])
def test_candidates_are_timed_in_the_models_layout_unless_told(convert, channels_last, expected):
    model = resnet20(num_classes=10).eval()
    if convert:
        model.to(memory_format=torch.channels_last)
    conv_inputs_channels_last = []

    def record(module, args):
        if isinstance(module, torch.nn.Conv2d):
            conv_inputs_channels_last.append(args[0].is_contiguous(memory_format=torch.channels_last))

    def timer(runners, batch_size, device, warmup, repeats, threads):
        hook = torch.nn.modules.module.register_module_forward_pre_hook(record)
        try:
            return fake_timer({"1": 1.0, "8": 1.0}, 0.1, [])(runners, batch_size, device, warmup, repeats, threads)
        finally:
            hook.remove()

    choose_round_to(model, X, _select(model), candidates=(1, 8), batch_size=2, timer=timer,
                    channels_last=channels_last)
    assert conv_inputs_channels_last and set(conv_inputs_channels_last) == {expected}


def test_select_channels_auto_times_the_candidates_and_logs_the_choice(monkeypatch, caplog):
    model = resnet20(num_classes=10).eval()
    calls: list = []
    monkeypatch.setattr(alignment, "interleaved_latency", fake_timer({"1": 10.0, "8": 9.0, "16": 4.0}, 0.5, calls))
    with caplog.at_level(logging.INFO, logger="lightning_compress.pruning.api"):
        plan = select_channels(model, X, 0.5, round_to="auto", latency_batch_size=2)
    assert calls and calls[0]["batch_size"] == 2
    assert _widths(plan) == _widths(select_channels(model, X, 0.5, round_to=16))
    assert "round_to='auto' chose round_to=16 (2.50x" in caplog.text


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"round_to": "fast"}, ValueError, "`round_to` must be an int >= 1 or 'auto'"),
    ({"round_to": 0}, ValueError, "`round_to` must be an int >= 1"),
    ({"round_to": 2.0}, TypeError, "`round_to` must be an int >= 1"),
])
def test_bad_round_to_is_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        select_channels(resnet20(num_classes=10), X, 0.5, **kwargs)


@pytest.mark.parametrize(("candidates", "match"), [((), "non-empty"), ((1, 1), "distinct"), ((1, 0), "candidates")])
def test_bad_candidates_are_named(candidates, match):
    model = resnet20(num_classes=10)
    with pytest.raises(ValueError, match=match):
        choose_round_to(model, X, _select(model), candidates=candidates, timer=fake_timer({}, 0.0, []))
