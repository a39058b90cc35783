"""Test accuracy of the full-width soft-pruned network in an FPGM checkpoint of a CIFAR-10 ResNet-20 run, as masked
(BN untouched, what the authors' code evaluates) and with the masked channels' BN zeroed too (what removal computes).

    python experiments/eval_masked.py <run>/stages/compress/epoch=9.ckpt data=cifar10 model=resnet20 [overrides]
"""

from __future__ import annotations

import sys

import torch
from hydra import compose, initialize_config_dir
from torch import nn

from lightning_compress.config import CONFIG_DIR, register_resolvers
from lightning_compress.pipeline.builders import build_datamodule, build_net


def accuracy(net: nn.Module, datamodule) -> float:
    right = total = 0
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            images, labels = datamodule.on_after_batch_transfer(batch, 0)
            right += (net(images).argmax(1) == labels).sum().item()
            total += len(labels)
    return right / total


def zero_masked_batchnorms(net: nn.Module) -> None:
    """BN scale and shift of every channel whose conv filter is all zero (ResNet naming: convN -> bnN)."""
    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d):
            dead = module.weight.detach().flatten(1).abs().sum(1) == 0
            bn = net.get_submodule(name.replace("conv", "bn"))
            with torch.no_grad():
                bn.weight[dead] = 0
                bn.bias[dead] = 0


def main() -> None:
    checkpoint, overrides = sys.argv[1], sys.argv[2:]
    register_resolvers()  # ${project_root:} in conf/paths
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    state = torch.load(checkpoint, weights_only=True, map_location="cpu")["state_dict"]
    net = build_net(cfg.model)
    net.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})
    net.eval()
    datamodule = build_datamodule(cfg)
    datamodule.setup("test")
    print(f"masked (BN untouched): {accuracy(net, datamodule):.4f}")
    zero_masked_batchnorms(net)
    print(f"masked channels' BN zeroed too: {accuracy(net, datamodule):.4f}")


if __name__ == "__main__":
    main()
