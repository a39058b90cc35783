"""module_table is named_modules as a dict: same names, same order, duplicates on request."""

from torch import nn

from lightning_compress.models import resnet56
from lightning_compress.pruning.module_table import module_table


def _shared_model() -> nn.Module:
    shared = nn.Conv2d(2, 2, 1)
    return nn.Sequential(shared, nn.Sequential(shared, nn.ReLU()), nn.ModuleList([shared, nn.Identity()]))


def test_module_table_matches_named_modules_in_order():
    for model in (resnet56(num_classes=10, shortcut="B"), _shared_model()):
        for duplicates in (False, True):
            ours = [(name, id(m)) for name, m in module_table(model, duplicates=duplicates).items()]
            torch_order = [(name, id(m)) for name, m in model.named_modules(remove_duplicate=not duplicates)]
            assert ours == torch_order


def test_module_table_lists_a_shared_module_once_unless_asked():
    model = _shared_model()
    assert list(module_table(model)) == ["", "0", "1", "1.1", "2", "2.1"]
    assert list(module_table(model, duplicates=True)) == ["", "0", "1", "1.0", "1.1", "2", "2.0", "2.1"]


def test_shared_tables_walk_each_model_once_and_match_outside(monkeypatch):
    import lightning_compress.pruning.module_table as mt

    walks = []
    walk = mt._walk
    monkeypatch.setattr(mt, "_walk", lambda model, duplicates: walks.append(duplicates) or walk(model, duplicates))
    for model in (resnet56(num_classes=10, shortcut="B"), _shared_model()):
        outside = {d: list(module_table(model, duplicates=d).items()) for d in (True, False)}
        walks.clear()
        with mt.shared_tables():
            with mt.shared_tables():  # nested: the outer block's tables
                inside = {d: list(module_table(model, duplicates=d).items()) for d in (True, False)}
            again = {d: list(module_table(model, duplicates=d).items()) for d in (True, False)}
            table = module_table(model)
            table.clear()  # the caller owns its copy
            assert list(module_table(model).items()) == outside[False]
            last = outside[True][-1][0]
            assert mt.submodule(model, last) is model.get_submodule(last)
        assert inside == again == outside
        assert walks == [True]  # one walk: the deduplicated table is derived from the full one
        with mt.shared_tables():  # the other order
            assert {d: list(module_table(model, duplicates=d).items()) for d in (False, True)} == outside
    assert mt._shared.get() is None


def test_submodule_outside_and_inside_shared_tables():
    import pytest

    from lightning_compress.pruning.module_table import shared_tables, submodule

    model = resnet56(num_classes=10)
    for scope in (None, shared_tables):
        if scope is None:
            assert submodule(model, "layer2.1.conv1") is model.layer2[1].conv1
            assert submodule(model, "") is model
            continue
        with scope():
            assert submodule(model, "layer2.1.conv1") is model.layer2[1].conv1
            assert submodule(model, "") is model
            with pytest.raises(AttributeError):
                submodule(model, "layer9")
