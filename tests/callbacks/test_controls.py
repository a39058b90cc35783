"""WidthPruning: a method's per-group widths with random channels (control) or the same channels (Scratch-E)."""

from __future__ import annotations

import json

import pytest
import torch

from lightning_compress.callbacks import WidthPruning
from lightning_compress.modules import ImageClassifier
from lightning_compress.pruning import select_channels
from lightning_compress.pruning.saving import save_pruned
from tests.helpers import randomize_norms, tiny_resnet, tiny_vgg

X = torch.zeros(1, 1, 8, 8)


def _reference(tmp_path, net, residual="select"):
    plan = select_channels(net, X, 0.5, importance="l1", residual=residual)
    save_pruned(tmp_path / "ref.pt", net, plan)
    return plan


def _widths(plan) -> dict[str, int]:
    return {g.id: len(g.removed) for g in plan.groups}


@pytest.mark.parametrize("net_fn", [tiny_vgg, tiny_resnet])
def test_random_choice_keeps_the_widths_and_changes_the_channels(tmp_path, net_fn) -> None:
    net = randomize_norms(net_fn())
    reference = _reference(tmp_path, net)
    plans = []
    for seed in (0, 1):
        callback = WidthPruning(str(tmp_path / "ref.pt"), choice="random", seed=seed, residual="select", verbose=False)
        callback.setup(None, ImageClassifier(net, 4), "validate")
        callback.example_inputs = X
        plans.append(callback.select())
    assert _widths(plans[0]) == _widths(plans[1]) == _widths(reference)
    assert plans[0].to_dict() != reference.to_dict() and plans[0].to_dict() != plans[1].to_dict()


def test_same_choice_is_the_reference_plan(tmp_path) -> None:
    net = randomize_norms(tiny_resnet())
    reference = _reference(tmp_path, net)
    callback = WidthPruning(str(tmp_path / "ref.pt"), choice="same", residual="select", verbose=False)
    callback.setup(None, ImageClassifier(tiny_resnet(), 4), "validate")  # fresh weights: only the widths count
    callback.example_inputs = X
    assert callback.select().to_dict()["layers"] == reference.to_dict()["layers"]


def test_a_plan_json_is_a_reference_like_the_saved_model_it_came_from(tmp_path) -> None:
    net = randomize_norms(tiny_resnet())
    reference = _reference(tmp_path, net)
    (tmp_path / "plan.json").write_text(json.dumps(reference.to_dict()))
    callback = WidthPruning(str(tmp_path / "plan.json"), choice="same", residual="select", verbose=False)
    callback.setup(None, ImageClassifier(tiny_resnet(), 4), "validate")
    callback.example_inputs = X
    assert callback.select().to_dict()["layers"] == reference.to_dict()["layers"]
    malformed = {"format": "lightning_compress.PruningPlan", "version": 2, "layers": 3}
    (tmp_path / "other.json").write_text(json.dumps(malformed))
    with pytest.raises(ValueError, match="`reference`=.*other.json.*malformed"):
        WidthPruning(str(tmp_path / "other.json"))


def test_bad_references_are_named(tmp_path) -> None:
    net = tiny_resnet()
    save_pruned(tmp_path / "unpruned.pt", net, None)
    with pytest.raises(ValueError, match="holds no pruning plan"):
        WidthPruning(str(tmp_path / "unpruned.pt"))
    with pytest.raises(FileNotFoundError, match="`reference`"):
        WidthPruning(str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="`choice` must be one of"):
        WidthPruning(str(tmp_path / "unpruned.pt"), choice="best")
    _reference(tmp_path, net, residual="couple")
    callback = WidthPruning(str(tmp_path / "ref.pt"), residual="select", verbose=False)  # another mode's groups
    callback.setup(None, ImageClassifier(tiny_resnet(), 4), "validate")
    callback.example_inputs = X
    with pytest.raises(ValueError, match="which this network does not have"):
        callback.select()
