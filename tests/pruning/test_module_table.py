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
