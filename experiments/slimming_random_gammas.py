"""Network Slimming's paper configs with untrained (random, fixed-seed) BN scales: the pruned params / FLOPs.

Shows why issue 8's last criterion needs sparsity-trained scales: the paper's reductions (Table 1) come from where
training drives the scales to zero, not from the configuration. Run from the repository root:

    python experiments/slimming_random_gammas.py
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import nn

from lightning_compress.cost import count_macs, count_params
from lightning_compress.modules import ImageClassifier
from lightning_compress.pruning import prune

PAPER = {  # Liu et al. 2017, Table 1 (CIFAR-10): (params reduction %, FLOPs reduction %)
    "resnet164_cifar10_slimming_40": (14.9, 23.7), "resnet164_cifar10_slimming_60": (35.2, 44.9),
    "densenet40_cifar10_slimming_40": (35.7, 28.4), "densenet40_cifar10_slimming_70": (65.2, 55.0),
}


def reductions(experiment: str, draw: str) -> tuple[float, float]:
    cfg = compose("train", overrides=[f"+experiment={experiment}"])
    net = instantiate(cfg.model)
    torch.manual_seed(0)
    with torch.no_grad():
        for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.weight.uniform_(0.0, 1.0) if draw == "uniform" else bn.weight.normal_().abs_()
    x = torch.zeros(1, 3, 32, 32)
    params, macs = count_params(net), count_macs(net, x)
    callback = instantiate(cfg.method.callback, input_shape=[3, 32, 32], verbose=False)
    callback.setup(None, ImageClassifier(net, 10), "validate")
    callback.example_inputs = x
    prune(net, callback.select())
    return 100 * (1 - count_params(net) / params), 100 * (1 - count_macs(net, x) / macs)


def main() -> None:
    warnings.filterwarnings("ignore")
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "conf"), version_base=None):
        for experiment, (paper_params, paper_flops) in PAPER.items():
            for draw in ("uniform", "halfnormal"):
                p, f = reductions(experiment, draw)
                print(f"{experiment:34s} {draw:10s} params -{p:.1f}% (paper -{paper_params}%)  "
                      f"FLOPs -{f:.1f}% (paper -{paper_flops}%)")


if __name__ == "__main__":
    main()
