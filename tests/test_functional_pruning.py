"""The pruning papers' decisions as pure functions (lightning_compress.functional.pruning), against hand counts."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_compress.functional.pruning import (
    distance_sums,
    filter_norms,
    fpgm_remove,
    global_threshold,
    keep_count,
    min_kept,
    norm_count,
    random_scores,
    round_up,
)


def test_filter_norms_tell_l1_from_l2():
    rows = torch.tensor([[3.0, 4.0, 0.0], [2.0, 2.0, 2.0]])  # L1 7 vs 6, L2 5 vs 3.46: the orders disagree
    assert filter_norms(rows, 1).tolist() == [7.0, 6.0]
    torch.testing.assert_close(filter_norms(rows, 2), torch.tensor([5.0, math.sqrt(12)]))
    assert filter_norms(rows, 1).argmax() != filter_norms(rows, 2).argmin()
    with pytest.raises(ValueError, match="`p` must be 1 or 2"):
        filter_norms(rows, 3)


@pytest.mark.parametrize("rows", [64, (1 << 22) // 256 + 1])  # below and above the size where L1 switches kernel
def test_filter_norms_l1_is_the_absolute_row_sum_at_every_size(rows: int):
    torch.manual_seed(0)
    weight = torch.randn(rows, 16, 4, 4)
    expected = torch.tensor([sum(abs(v) for v in row.tolist()) for row in weight.flatten(1)[:64].double()],
                            dtype=torch.float64)
    torch.testing.assert_close(filter_norms(weight, 1)[:64].double(), expected, rtol=1e-5, atol=1e-4)


def test_distance_sums_are_sums_of_pairwise_distances():
    rows = torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    torch.testing.assert_close(distance_sums(rows, "l2"), torch.tensor([15.0, 10.0, 15.0]))
    torch.testing.assert_close(distance_sums(rows, "l1"), torch.tensor([21.0, 14.0, 21.0]))
    unit = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    torch.testing.assert_close(distance_sums(unit, "cos"), torch.tensor([1 + (1 - 2**-0.5)] * 2 + [2 * (1 - 2**-0.5)]))
    with pytest.raises(ValueError, match="`distance` must be one of"):
        distance_sums(rows, "l3")


def test_fpgm_remove_takes_the_geometric_median_and_mix_takes_small_norms_first():
    rows = torch.tensor([[1.0, 0.0], [1.1, 0.0], [0.9, 0.0], [5.0, 5.0], [-5.0, 5.0], [0.01, 0.0]])
    # summed distances by hand: row 2 (0.9, 0) 15.29 < row 0 (1, 0) 15.40 < row 1 ... : row 2 is nearest the GM
    assert fpgm_remove(rows, 1).tolist() == [2]
    # mix: the smallest-norm row (5) first; without it row 0 (14.41) is nearer the GM than row 2 (14.50)
    assert fpgm_remove(rows, 2, n_norm=1).tolist() == [0, 5]
    with pytest.raises(ValueError, match="n_norm <= n_remove"):
        fpgm_remove(rows, 1, n_norm=2)


def test_keep_count_roundings_are_the_two_reference_codes():
    assert keep_count(16, 0.4, rounding="keep") == 9     # Li et al.'s code: int(16 * 0.6) kept
    assert keep_count(16, 0.4, rounding="remove") == 10  # FPGM's code: int(16 * 0.4) removed
    assert keep_count(16, 0.1) == 14 and keep_count(64, 0.4, rounding="remove") == 39
    assert keep_count(16, 0.9, min_channels=4) == 4 and keep_count(16, 0.4, round_to=8) == 16
    assert round_up(9, 16, round_to=4) == 12 and round_up(0, 16) == 1
    assert norm_count(16, 6, 0.1) == 1 and norm_count(16, 1, 0.3) == 1
    with pytest.raises(ValueError, match="`rounding` must be one of"):
        keep_count(16, 0.4, rounding="nearest")


def test_global_threshold_count_is_one_threshold_over_all_groups():
    scores = {"a": torch.tensor([0.1, 0.9, 0.5, 0.05]), "b": torch.tensor([0.2, 0.3, 0.8, 0.01])}
    # the 4 smallest overall: 0.01 (b), 0.05 (a), 0.1 (a), 0.2 (b)
    assert global_threshold(scores, 0.5) == {"a": [0, 3], "b": [0, 3]}


def test_global_threshold_authors_code_removes_the_threshold_channel_too():
    scores = {"a": torch.tensor([0.1, 0.9, 0.5, 0.05]), "b": torch.tensor([0.2, 0.3, 0.8, 0.01])}
    # thre = sorted[int(8 * 0.5)] = sorted[4] = 0.3: every score <= 0.3 goes, five channels
    assert global_threshold(scores, 0.5, rule="authors_code") == {"a": [0, 3], "b": [0, 1, 3]}


def test_global_threshold_floor_hands_the_surplus_to_the_next_lowest_scores_elsewhere():
    scores = {"big": torch.tensor([5.0, 6.0, 7.0, 8.0]), "small": torch.tensor([0.1, 0.3, 0.2])}
    # floor(7 * 0.4) = 2 go: "small" may lose only 1 (it keeps 2), so the next-lowest channel of "big" goes instead
    assert global_threshold(scores, 0.4, min_channels=2) == {"small": [0], "big": [0]}
    assert global_threshold(scores, 0.0) == {}
    removed = global_threshold({"g": torch.arange(8.0)}, 0.5, round_to=3)  # keep 4 -> 6 (multiple of 3)
    assert removed == {"g": [0, 1]}


def test_global_threshold_normalize_ranks_groups_on_a_relative_scale():
    scores = {"low": torch.tensor([1.0, 2.0, 3.0]), "high": torch.tensor([100.0, 200.0, 300.0])}
    assert set(global_threshold(scores, 0.34)) == {"low"}  # raw: the low group loses its smallest two
    assert global_threshold(scores, 0.34, normalize=True) == {"low": [0], "high": [0]}


def test_random_scores_depend_on_seed_and_key_only():
    assert torch.equal(random_scores(8, 3, "a"), random_scores(8, 3, "a"))
    assert not torch.equal(random_scores(8, 3, "a"), random_scores(8, 4, "a"))
    assert not torch.equal(random_scores(8, 3, "a"), random_scores(8, 3, "b"))


def test_max_pruning_ratio_caps_every_group_and_keeps_the_global_count():
    skewed = {"dying": torch.full((10,), 1e-4), "a": torch.linspace(0.5, 1.0, 10), "b": torch.linspace(0.6, 1.2, 10)}
    uncapped = global_threshold(skewed, 0.5)
    assert len(uncapped["dying"]) == 9  # without a cap only the one-channel floor stays
    capped = global_threshold(skewed, 0.5, max_pruning_ratio=0.7)
    assert len(capped["dying"]) == 7  # 30% of it stays
    assert sum(len(v) for v in capped.values()) == 15  # floor(30 * 0.5) still go: 8 more from a and b
    lowest_elsewhere = sorted(torch.cat([skewed["a"], skewed["b"]]).tolist())[:8]
    taken = [float(skewed[g][i]) for g in ("a", "b") for i in capped.get(g, [])]
    assert sorted(taken) == pytest.approx(lowest_elsewhere)
    assert min_kept(10, 1, 0.7) == 3 and min_kept(10, 4, 0.9) == 4 and min_kept(3, 5) == 3
    assert keep_count(10, 0.95, max_pruning_ratio=0.7) == 3


def test_global_threshold_says_when_the_caps_cannot_keep_the_count():
    with pytest.raises(ValueError, match="max_pruning_ratio"):
        global_threshold({"a": torch.arange(4.0), "b": torch.arange(4.0)}, 0.75, max_pruning_ratio=0.5)
