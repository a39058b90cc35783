"""The engine over a sample of timm CNN families (issue 12's list): trace, 30 % per group (L1), checked prune,
MACs cut, mask == prune. Prints one Markdown table (``benchmarks/README.md``) and the totals.

Usage (in a venv with timm, e.g. /work/venv-zoo):  python -m benchmarks.timm_sweep [--size 224] [names...]
With ``--torch-pruning`` it also runs Torch-Pruning 1.6's BasePruner (group L1, the classifier ignored) on each
model and reports whether its pruned model runs with the right output shape and what MACs it cut; each model runs in
a child process stopped after ``--tp-timeout`` seconds (reported as "did not finish"), so one slow model cannot stall
the list.
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing as mp
import queue

import torch

from lightning_compress.zoo import TABLE_HEADER, check_model, table_row

TIMM_MODELS = [
    "resnet50d", "resnext26ts", "efficientnet_b0", "tf_efficientnet_lite0", "mobilenetv3_large_100",
    "mobilenetv4_conv_small", "regnety_016", "convnext_atto", "ghostnet_100", "rexnet_100", "dla34", "cspdarknet53",
    "densenet121", "hrnet_w18_small", "mixnet_s", "tf_mixnet_s", "repvgg_a0", "res2net50_14w_8s", "selecsls42b",
    "dpn68", "gernet_s", "lcnet_050", "fbnetc_100", "nf_resnet26", "resnest14d", "vovnet39a", "efficientvit_b0",
]


def torch_pruning_result(model: torch.nn.Module, x: torch.Tensor, ratio: float) -> str:
    """Torch-Pruning on a copy: 'OK -NN%' when the pruned model runs with the same output shape, else the failure."""
    import torch_pruning as tp

    from lightning_compress.cost import count_macs

    model = copy.deepcopy(model).eval()
    try:
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1:]
        pruner = tp.pruner.BasePruner(model, x, importance=tp.importance.GroupMagnitudeImportance(p=1),
                                      pruning_ratio=ratio, ignored_layers=last)
        before = count_macs(model, x)
        pruner.step()
        with torch.no_grad():
            out = model(x)
        return f"runs -{1 - count_macs(model, x) / before:.0%}" if out.shape[-1] == 1000 else "wrong output shape"
    except Exception as exc:
        return f"fails ({type(exc).__name__})"


def _torch_pruning_child(name: str, size: int, ratio: float, answer: mp.Queue) -> None:
    import timm

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    answer.put(torch_pruning_result(model, torch.randn(1, 3, size, size), ratio))


def torch_pruning_limited(name: str, size: int, ratio: float, timeout_s: float) -> str:
    """:func:`torch_pruning_result` on a fresh ``name`` in a child process, stopped after ``timeout_s`` seconds."""
    ctx = mp.get_context("spawn")
    answer = ctx.Queue()
    child = ctx.Process(target=_torch_pruning_child, args=(name, size, ratio, answer), daemon=True)
    child.start()
    child.join(timeout_s)
    if child.is_alive():
        child.terminate()
        child.join()
        return f"did not finish in {timeout_s:.0f} s"
    try:
        return answer.get(timeout=5)
    except queue.Empty:
        return f"child exited with code {child.exitcode}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--torch-pruning", action="store_true")
    parser.add_argument("--tp-timeout", type=float, default=300.0, help="seconds per model for Torch-Pruning")
    args = parser.parse_args()
    import timm

    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(1, 3, args.size, args.size)
    print(f"timm {timm.__version__}, torch {torch.__version__}, {args.size}x{args.size}, ratio {args.ratio}")
    head, rule = TABLE_HEADER.splitlines()
    print(f"{head} Torch-Pruning |\n{rule}---|" if args.torch_pruning else TABLE_HEADER)
    results, tp = [], []
    for name in args.names or TIMM_MODELS:
        model = timm.create_model(name, pretrained=False).eval()
        r = check_model(name, model, x, args.ratio)
        results.append(r)
        extra = ""
        if args.torch_pruning:
            tp.append(torch_pruning_limited(name, args.size, args.ratio, args.tp_timeout))
            extra = f" {tp[-1]} |"
        print(table_row(r) + extra, flush=True)
    cut = sum(r.ok and r.macs_cut >= 0.2 for r in results)
    exact = sum(r.ok and r.mask_vs_prune <= 1e-4 for r in results)
    print(f"\n{sum(r.ok for r in results)}/{len(results)} pruned and run; {cut} cut >= 20 % of the MACs; "
          f"{exact} with mask == prune (<= 1e-4)")
    if args.torch_pruning:
        print(f"Torch-Pruning: {sum(t.startswith('runs') for t in tp)}/{len(tp)} run with the head kept; "
              f"{sum(t.startswith('runs') and int(t.split('-')[1].rstrip('%')) >= 20 for t in tp)} cut >= 20 %")


if __name__ == "__main__":
    main()
