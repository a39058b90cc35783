"""FPGM's selection math against brute-force references (scipy's cdist, python loops)."""

from __future__ import annotations

import itertools

import pytest
import torch
from scipy.spatial.distance import cdist

from lightning_compress.functional.pruning import distance_sums, fpgm_remove

SCIPY_METRIC = {"l2": "euclidean", "l1": "cityblock", "cos": "cosine"}


def brute_force_sums(filters: torch.Tensor, distance: str) -> list[float]:
    rows = filters.flatten(1).double()
    out = []
    for a in rows:
        total = 0.0
        for b in rows:
            if distance == "l2":
                total += float(((a - b) ** 2).sum().sqrt())
            elif distance == "l1":
                total += float((a - b).abs().sum())
            else:
                total += 1.0 - float(a @ b / (a.norm() * b.norm()))
        out.append(total)
    return out


@pytest.mark.parametrize("distance", ["l2", "l1", "cos"])
def test_distance_sums_match_references(distance: str) -> None:
    torch.manual_seed(0)
    filters = torch.randn(7, 3, 3, 3)
    ours = distance_sums(filters, distance)
    loops = torch.tensor(brute_force_sums(filters, distance), dtype=torch.float32)
    scipy = torch.tensor(cdist(filters.flatten(1).numpy(), filters.flatten(1).numpy(), SCIPY_METRIC[distance]).sum(1),
                         dtype=torch.float32)
    torch.testing.assert_close(ours, loops, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours, scipy, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("distance", ["l2", "l1", "cos"])
def test_selects_the_filters_nearest_the_geometric_median(distance: str) -> None:
    torch.manual_seed(1)
    filters = torch.randn(9, 2, 3, 3)
    sums = brute_force_sums(filters, distance)
    for n in (1, 3):
        expected = sorted(sorted(range(9), key=lambda i: sums[i])[:n])
        assert fpgm_remove(filters, n, distance=distance).tolist() == expected


def test_gm_and_norm_criteria_differ() -> None:
    # Four corners of a square around (10, 10), its centre, and one tiny filter far away: FPGM-only removes the
    # centre (replaceable by its neighbours); the norm criterion (FPGM-mix's first pass) removes the tiny one.
    square = [torch.tensor([10.0 + dx, 10.0 + dy]) for dx, dy in itertools.product([-4.0, 4.0], repeat=2)]
    filters = torch.stack([*square, torch.tensor([10.0, 10.0]), torch.tensor([0.0, 0.1])])
    assert fpgm_remove(filters, 1).tolist() == [4]
    assert fpgm_remove(filters, 1, n_norm=1).tolist() == [5]
    assert fpgm_remove(filters, 2, n_norm=1).tolist() == [4, 5]


def test_mix_takes_norm_first_then_gm_among_the_rest() -> None:
    torch.manual_seed(2)
    filters = torch.randn(10, 4)
    filters[3] *= 0.01  # smallest norm
    filters[7] *= 0.02  # second smallest
    norm_first = fpgm_remove(filters, 4, n_norm=2)
    assert {3, 7} <= set(norm_first.tolist())
    rest = [i for i in range(10) if i not in (3, 7)]
    sums = brute_force_sums(filters[rest], "l2")
    gm = [rest[i] for i in sorted(range(len(rest)), key=lambda i: sums[i])[:2]]
    assert norm_first.tolist() == sorted([3, 7, *gm])


def test_bad_counts_and_distance() -> None:
    with pytest.raises(ValueError, match="n_norm"):
        fpgm_remove(torch.randn(4, 2), 5)
    with pytest.raises(ValueError, match="n_norm"):
        fpgm_remove(torch.randn(4, 2), 1, n_norm=2)
    with pytest.raises(ValueError, match="`distance` must be one of"):
        distance_sums(torch.randn(4, 2), "l3")


@pytest.mark.slow  # ~10-15 s each on the shared 2-core CPU (tracing + counting ResNet-56)
@pytest.mark.parametrize(("shortcut", "low", "high"), [("A", 0.50, 0.54), ("B", 0.58, 0.64)])
def test_resnet56_coupled_at_40_percent_cuts_about_half_the_macs(shortcut: str, low: float, high: float) -> None:
    # residual="couple": the stem and every block's second conv are one group per stream (option A: the stage-1
    # stream and the non-padded middle of the stage-2/3 streams; option B's projections free every stream).
    from lightning_compress.callbacks.fpgm import FPGMPruning
    from lightning_compress.cost import count_macs
    from lightning_compress.models.resnet_cifar import resnet56
    from lightning_compress.modules import ImageClassifier
    from lightning_compress.pruning import prune

    net, x = resnet56(shortcut=shortcut), torch.zeros(1, 3, 32, 32)
    callback = FPGMPruning(0.4, input_shape=[3, 32, 32], residual="couple", verbose=False)
    callback.setup(None, ImageClassifier(net, 10), "fit")  # input_shape given: setup needs no trainer
    before = count_macs(net, x)
    prune(net, callback.select())
    assert low < 1 - count_macs(net, x) / before < high
