"""residual="select": the fused form of a pruned stream writer (one ``index_add`` onto the shortcut) against the hooked
form and the masked network, in eval and train mode, through save/reload and through torch.export / ONNX."""

from __future__ import annotations

import copy
import pickle
import warnings

import pytest
import torch
from torch import nn

from lightning_compress.pruning import PruningPlan, build_channel_graph, prune, select_channels
from lightning_compress.pruning.boundaries import REEXPAND, is_fused, reexpanded, selected, stream_add
from lightning_compress.pruning.saving import plan_of, read_payload, restore, save_pruned
from lightning_compress.pruning.selection import select_on_graph
from lightning_compress.pruning.verify import PrunedModelError
from tests.helpers import assert_mask_equals_prune, randomize_norms

from .archs import ARCHS, Bottleneck
from .random_arch import RandomNet, conv_block

# writers fused at ratio 0.5 (the concatenating and channels-first-LayerNorm families keep the hooked form)
FUSED = {"mobilenet_v2": 3, "mobilenet_v3": 3, "preact_resnet_option_a": 3, "resnet_bottleneck": 4, "resnext": 4}


def fused_writers(model: nn.Module) -> list[str]:
    """Writers re-expanded by a rewritten forward (no re-expansion hook of their own)."""
    return [n for n, m in model.named_modules() if REEXPAND in vars(m) and not m._forward_hooks]


def _select_plan(model: nn.Module, x: torch.Tensor, ratio: float = 0.5) -> PruningPlan:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graph = build_channel_graph(model, x, residual="select")
    return select_on_graph(graph, model, ratio, importance="random")


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_fused_equals_hooked_equals_masked_on_every_architecture(name):
    factory, size, separable = ARCHS[name]
    torch.manual_seed(0)
    model = randomize_norms(factory()).eval()
    x = torch.randn(2, 3, size, size)
    plan = _select_plan(model, x)
    hooked = prune(copy.deepcopy(model), plan, fuse=False)
    fused = assert_mask_equals_prune(model, x, plan) if separable else prune(copy.deepcopy(model), plan)
    assert len(fused_writers(fused)) == FUSED.get(name, 0)
    assert not fused_writers(hooked) and not any(is_fused(m) for m in hooked.modules())
    with torch.no_grad():
        assert torch.allclose(fused(x), hooked(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("shortcut", "output"), [
    ((2, 5, 3, 3), (2, 3, 3, 3)),  # the fused index_add
    ((2, 5, 3, 3), (2, 3, 1, 1)),  # broadcasting: the re-expanded sum
    ((1, 5, 3, 3), (2, 3, 3, 3)),
])
@pytest.mark.parametrize("alpha", [1, -1])
def test_stream_add_is_the_sum_with_the_reexpanded_output(shortcut, output, alpha):
    s, out, index = torch.randn(shortcut), torch.randn(output), torch.tensor([0, 2, 4])
    expected = s + alpha * reexpanded(out, 1, index, 5)
    assert torch.allclose(stream_add(s, out, index, 1, 5, alpha), expected, atol=1e-6)
    mixed = stream_add(s.double(), out, index, 1, 5, alpha)  # mixed dtypes promote as `+` does
    assert mixed.dtype == torch.float64 and torch.allclose(mixed, s.double() + alpha * reexpanded(out, 1, index, 5))


@pytest.mark.parametrize("alpha", [1, -1])
@pytest.mark.parametrize("output_format", [torch.channels_last, torch.contiguous_format])
def test_stream_add_keeps_a_channels_last_stream_channels_last(alpha, output_format):
    s = torch.randn(2, 5, 3, 4).contiguous(memory_format=torch.channels_last)
    out = torch.randn(2, 3, 3, 4).contiguous(memory_format=output_format)
    index = torch.tensor([0, 2, 4])
    s.requires_grad_(True)
    out.requires_grad_(True)
    fused = stream_add(s, out, index, 1, 5, alpha)
    assert fused.is_contiguous(memory_format=torch.channels_last)
    expected = s + alpha * reexpanded(out, 1, index, 5)
    assert torch.allclose(fused, expected, atol=1e-6)
    grads = torch.autograd.grad((fused * expected.detach()).sum(), (s, out))
    expected_grads = torch.autograd.grad((expected * expected.detach()).sum(), (s, out))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, expected_grads, strict=True))


def _is_channels_last(t: torch.Tensor) -> bool:
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


@pytest.mark.parametrize("fmt", [torch.channels_last, torch.contiguous_format])
def test_reexpansion_and_selection_keep_the_input_layout_and_values(fmt):
    out = torch.randn(2, 3, 4, 5).contiguous(memory_format=fmt)
    stream = torch.randn(2, 6, 4, 5).contiguous(memory_format=fmt)
    index = torch.tensor([0, 2, 5])
    full = reexpanded(out, 1, index, 6)
    expected = torch.zeros(2, 6, 4, 5)
    expected[:, index] = out
    assert torch.equal(full, expected) and _is_channels_last(full) == (fmt == torch.channels_last)
    picked = selected(stream, 1, index)
    assert torch.equal(picked, stream[:, index]) and _is_channels_last(picked) == (fmt == torch.channels_last)


def test_a_select_pruned_channels_last_network_stays_channels_last_and_exact():
    """The hooked re-expansion (the stem) and the readers' selection used to return contiguous tensors: the stream
    and every convolution after them switched layout (each a reorder)."""
    from lightning_compress.models import resnet20

    torch.manual_seed(3)
    model = randomize_norms(resnet20(num_classes=10)).eval()
    x = torch.randn(2, 3, 16, 16)
    plan = _select_plan(model, x)
    pruned = prune(copy.deepcopy(model), plan).to(memory_format=torch.channels_last)
    layouts = {}
    for name, module in pruned.named_modules():
        if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
            module.register_forward_hook(lambda m, a, o, name=name: layouts.update({name: _is_channels_last(o)}))
    with torch.no_grad():
        y = pruned(x.contiguous(memory_format=torch.channels_last))
        reference = prune(copy.deepcopy(model), plan)(x)
    assert layouts and all(layouts.values()), [n for n, cl in layouts.items() if not cl]
    assert torch.allclose(y, reference, atol=1e-5)


def _resnet() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), Bottleneck(8, 4, 8),
                         Bottleneck(8, 4, 16, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))


def test_train_mode_outputs_and_gradients_match_the_hooked_form():
    torch.manual_seed(1)
    model = randomize_norms(_resnet())
    x = torch.randn(4, 3, 8, 8)
    plan = _select_plan(model.eval(), x)
    fused, hooked = prune(copy.deepcopy(model), plan), prune(copy.deepcopy(model), plan, fuse=False)
    assert fused_writers(fused) == ["3.bn3", "4.bn3"]
    outs = []
    for net in (fused.train(), hooked.train()):
        y = net(x)
        y.square().sum().backward()
        outs.append((y.detach(), {n: p.grad for n, p in net.named_parameters()}))
    assert torch.allclose(outs[0][0], outs[1][0], atol=1e-6)
    assert all(torch.allclose(outs[0][1][n], outs[1][1][n], atol=1e-5) for n in outs[0][1])


def test_a_writer_behind_zero_keeping_activations_is_fused_at_the_model_level():
    """RandomNet adds ``Sequential(conv, bn, relu)(x)`` to a shortcut in its own (root) forward."""
    torch.manual_seed(2)
    mods = [conv_block(3, 6, 3, 1, True, nn.ReLU, True), conv_block(6, 6, 3, 1, True, nn.ReLU, True), nn.Identity()]
    net = randomize_norms(RandomNet([("conv", 0, 1), ("add", 1, 0, 2)], mods, False, 6, 3)).eval()
    x = torch.randn(2, 3, 8, 8)
    plan = _select_plan(net, x)
    pruned = assert_mask_equals_prune(net, x, plan)
    assert fused_writers(pruned) == ["mods.1.1"] and is_fused(pruned)
    assert type(pruned).__name__ == "RandomNet" and isinstance(pruned, RandomNet)


class ModeBlock(nn.Module):
    """A residual block whose forward reads ``self.training``: its code differs by mode, so it is not rewritten."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        return (x + y) if self.training else (y + x)


class ConstantBlock(ModeBlock):
    """A block making a tensor in forward: fx would store it as a constant that does not follow ``.to(device)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.ones(1) + self.bn(self.conv(x))


class InPlaceOnShortcut(ModeBlock):
    """``shortcut += branch`` changes the shortcut tensor itself, which is what the block returns (under another name):
    an out-of-place add would lose that."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = torch.relu(x)
        out = shortcut
        shortcut += self.bn(self.conv(x))
        return out


class HookedInner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class OuterBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = HookedInner()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.inner(x)


def _constants(model: nn.Module) -> set[tuple[str, str]]:
    return {(name, attr) for name, m in model.named_modules() for attr in vars(m) if "constant" in attr}


@pytest.mark.parametrize("block", [ModeBlock, ConstantBlock, InPlaceOnShortcut, OuterBlock])
def test_owners_that_cannot_be_rewritten_keep_the_exact_hooked_form(block):
    torch.manual_seed(3)
    net = randomize_norms(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), block(), nn.Conv2d(8, 4, 1)))
    x = torch.randn(2, 3, 8, 8)
    plan = _select_plan(net.eval(), x)
    if block is OuterBlock:  # a hook on a module the outer forward traces through would be lost: not rewritten
        net[2].inner.register_forward_hook(lambda module, args, out: out * 1.0)
    pruned = assert_mask_equals_prune(net, x, plan)
    writer = "2.inner.bn" if block is OuterBlock else "2.bn"
    assert writer in [n for n, lp in plan.layers.items() if lp.reexpand]
    assert writer not in fused_writers(pruned) and not any(is_fused(m) for m in pruned.modules())
    assert _constants(pruned) == _constants(net)  # prune's traces leave no tensor constants on the modules
    if block is OuterBlock:  # the same network without the hook: the outer block is rewritten
        clean = randomize_norms(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), OuterBlock(),
                                              nn.Conv2d(8, 4, 1))).eval()
        assert fused_writers(assert_mask_equals_prune(clean, x, _select_plan(clean, x))) == [writer]


def test_saved_select_model_reloads_weights_only_into_the_fused_form(tmp_path):
    torch.manual_seed(4)
    model = randomize_norms(_resnet()).eval()
    x = torch.randn(2, 3, 8, 8)
    plan = select_channels(model, x, 0.5, importance="l1", residual="select")
    pruned = prune(copy.deepcopy(model), plan)
    save_pruned(tmp_path / "m.pt", pruned, plan)
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    fresh = _resnet()
    restore(fresh, plan_of(read_payload(ckpt, "m.pt"), "m.pt"), ckpt["state_dict"], "m.pt")
    assert fused_writers(fresh) == fused_writers(pruned) == ["3.bn3", "4.bn3"]
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), pruned(x))


def test_pickle_and_deepcopy_keep_the_fused_form():
    """ddp_spawn pickles the module: the rewritten classes are re-made from the original ones on unpickling."""
    torch.manual_seed(8)
    model = randomize_norms(_resnet()).eval()
    x = torch.randn(2, 3, 8, 8)
    pruned = prune(copy.deepcopy(model), _select_plan(model, x))
    for other in (pickle.loads(pickle.dumps(pruned)), copy.deepcopy(pruned)):
        assert fused_writers(other) == ["3.bn3", "4.bn3"] and is_fused(other[3]) and isinstance(other[3], Bottleneck)
        assert other[3] is not pruned[3]
        with torch.no_grad():
            assert torch.equal(other(x), pruned(x))


def test_a_fused_model_traces_again_with_the_fused_add_named_and_its_layers_frozen():
    torch.manual_seed(5)
    model = _resnet().eval()
    x = torch.randn(1, 3, 8, 8)
    pruned = prune(copy.deepcopy(model), _select_plan(model, x))
    with pytest.warns(UserWarning, match="no pruning rule") as caught:
        build_channel_graph(pruned, x)
    message = " ".join(str(w.message) for w in caught)
    assert "function lightning_compress.pruning.boundaries.stream_add" in message
    assert "module '3.bn3' (BatchNorm2d), already pruned with residual='select'" in message


def test_a_checked_prune_that_fails_gives_the_rewritten_modules_their_classes_back():
    torch.manual_seed(7)
    model = randomize_norms(_resnet()).eval()
    x = torch.randn(2, 3, 8, 8)
    data = _select_plan(model, x).to_dict()  # valid, plus one input of the head cut while its stream keeps 16
    data["layers"]["7"] = {"type": "Linear", "slots": {"in": {"size": 16, "removed": [0]}}}
    with torch.no_grad():
        expected = model(x)
    with pytest.raises(PrunedModelError, match="restored"):
        prune(model, PruningPlan.from_dict(data), example_inputs=x)
    assert not any(is_fused(m) for m in model.modules()) and type(model[3]) is Bottleneck
    with torch.no_grad():
        assert torch.equal(model(x), expected)


@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_export_carries_the_fused_add_and_passes_parity(tmp_path, fmt):
    from lightning_compress import portable

    if fmt == "onnx":
        for name in ("onnx", "onnxscript", "onnxruntime"):
            pytest.importorskip(name)
    torch.manual_seed(6)
    model = randomize_norms(_resnet()).eval()
    plan = _select_plan(model, torch.randn(1, 3, 8, 8))
    pruned = prune(copy.deepcopy(model), plan)
    hooked = [n for n, lp in plan.layers.items() if lp.reexpand and n not in fused_writers(pruned)]
    path = portable.export_model(pruned, (3, 8, 8), tmp_path / f"m.{fmt}", fmt)
    parity = portable.check_parity(pruned, portable.load_exported(path, fmt), (3, 8, 8))
    assert parity.passed and parity.max_abs_diff < 1e-5
    if fmt == "pt2":
        targets = [str(n.target) for n in torch.export.load(str(path)).graph.nodes if n.op == "call_function"]
        # one index_add per fused writer; the hooked ones (the stem, the shortcut's own BN) keep their index_copy
        assert sum("index_add" in t for t in targets) == len(fused_writers(pruned)) == 2
        assert sum("index_copy" in t for t in targets) == len(hooked) == 2
    else:
        import onnx

        nodes = onnx.load(str(path)).graph.node
        scatter_adds = [n for n in nodes if n.op_type == "ScatterND" and any(
            a.name == "reduction" and a.s == b"add" for a in n.attribute)]
        assert len(scatter_adds) == 2 and not any(n.op_type == "Add" for n in nodes)  # the residual adds are fused
