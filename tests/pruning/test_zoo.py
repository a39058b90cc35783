"""Optional zoo coverage (extra ``zoo``: timm + the real torchvision): every sampled family traces, prunes to a model
that runs with the head's classes kept, cuts >= 20 % of its MACs at 30 % per group, and masks == prunes.

Run by ``make test-zoo`` (its own venv with torch 2.14.1 / torchvision 0.29.1 / timm); skipped without the packages.
64x64 inputs keep it short; the per-model table at 224 is ``python -m benchmarks.timm_sweep`` (benchmarks/README.md).
"""

from __future__ import annotations

import pytest
import torch

from lightning_compress.zoo import check_model

# timm families of issue 12 (one small member each)
TIMM = ["resnet50d", "resnext26ts", "efficientnet_b0", "tf_efficientnet_lite0", "mobilenetv3_large_100",
        "mobilenetv4_conv_small", "regnety_016", "convnext_atto", "ghostnet_100", "rexnet_100", "dla34",
        "cspdarknet53", "densenet121", "hrnet_w18_small", "mixnet_s", "tf_mixnet_s", "repvgg_a0", "res2net50_14w_8s",
        "selecsls42b", "dpn68", "gernet_s", "lcnet_050", "fbnetc_100", "nf_resnet26", "resnest14d", "vovnet39a",
        "efficientvit_b0"]
TORCHVISION = ["resnet18", "mobilenet_v2", "mobilenet_v3_small", "shufflenet_v2_x0_5", "efficientnet_b0",
               "densenet121", "googlenet", "regnet_y_400mf", "resnext50_32x4d", "mnasnet0_5", "squeezenet1_1",
               "convnext_tiny", "swin_t"]
# pruned != masked, by construction (documented in lightning_compress/pruning/README.md, "Known limits")
NOT_SEPARABLE = {
    "convnext_atto": "LayerNorm over channels",
    "convnext_tiny": "LayerNorm over channels",
    "swin_t": "LayerNorm over channels",
    "efficientvit_b0": "LayerNorm over the classifier's hidden features",
    "nf_resnet26": "weight standardisation over input channels",
}
# MACs cut below 20 % at 30 % per group, and why
SMALL_CUT = {"swin_t": "attention (q/k/v, relative position bias) is frozen; only the MLPs are pruned"}
SIZE = 64


def _check(name: str, model: torch.nn.Module, size: int = SIZE) -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 3, size, size)
    r = check_model(name, model, x, 0.3)
    assert not r.error, r.error
    assert r.same_shape, "the head's classes must be kept"
    if name in SMALL_CUT:
        assert r.macs_after < r.macs_before
    else:
        assert r.macs_cut >= 0.2, f"{name}: only {r.macs_cut:.1%} of the MACs cut"
    if name in NOT_SEPARABLE:
        assert r.mask_vs_prune == r.mask_vs_prune  # computed (not NaN); pruned != masked by construction
    else:
        assert r.mask_vs_prune <= 1e-4, f"{name}: mask vs prune differ by {r.mask_vs_prune:.2e}"


@pytest.mark.parametrize("name", TIMM)
def test_timm_family_prunes(name):
    timm = pytest.importorskip("timm")
    _check(name, timm.create_model(name, pretrained=False))


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_model_prunes(name):
    models = pytest.importorskip("torchvision.models")
    _check(name, models.get_model(name, weights=None), 224 if name == "swin_t" else SIZE)


# Network Slimming on timm's fused BatchNormAct2d (issue 29, item 2): scored, penalised and cut to the ratio
SLIMMING = ["efficientnet_b0", "mobilenetv3_small_100", "regnetx_002"]


@pytest.mark.parametrize("name", SLIMMING)
def test_timm_slimming_removes_the_ratio(name, tmp_path):
    timm = pytest.importorskip("timm")
    import pytorch_lightning as pl

    from lightning_compress.callbacks import NetworkSlimming
    from lightning_compress.data.synthetic import SyntheticDataModule
    from lightning_compress.modules import ImageClassifier

    torch.manual_seed(0)
    net = timm.create_model(name, pretrained=False, num_classes=4)
    callback = NetworkSlimming(sparsity_lambda=1e-4, pruning_ratio=0.4, verbose=False)
    data = SyntheticDataModule(num_classes=4, in_channels=3, image_size=SIZE, train_size=4, val_size=2, test_size=2,
                               batch_size=2, seed=0)
    trainer = pl.Trainer(default_root_dir=str(tmp_path), accelerator="cpu", max_epochs=1, limit_train_batches=2,
                         limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[callback])
    with torch.no_grad():  # distinct scales, so the global threshold cuts exactly the ratio
        for module in net.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.weight is not None:
                module.weight.copy_(torch.rand(module.weight.shape) + 0.1)
    total = None

    class Count(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            nonlocal total
            total = sum(callback._graph.group(gid).size for gid in callback.groups)

    trainer.callbacks.append(Count())
    trainer.fit(ImageClassifier(net, num_classes=4), datamodule=data)
    assert any(type(m).__name__ == "BatchNormAct2d" for m in net.modules())
    assert callback.penalty_steps == 2 and total > 0
    # floor(40%) of the scaled channels, less one per group whose every channel fell below the global threshold
    # (min_channels=1 keeps its last one: RegNetX's grouped convs couple 8 positions scored by the mean of many BNs)
    shortfall = int(total * 0.4) - callback.plan.num_removed
    kept_one = [g for g in callback.plan.groups if g.size - len(g.removed) == 1]
    assert 0 <= shortfall <= len(kept_one), (callback.plan.num_removed, total, len(kept_one))
    assert callback.plan.num_removed >= 0.35 * total
    assert net(torch.randn(1, 3, SIZE, SIZE)).shape == (1, 4)
