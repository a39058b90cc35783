"""The pruning papers' decisions as pure tensor functions: scores, counts and the global threshold.

Everything that decides *which* and *how many* channels go lives here once; the engine's importance classes
(:mod:`lightning_compress.pruning.importance`) and through them ``select_channels`` and the three callbacks call these
functions. No model, no Lightning: rows are ``(N, D)`` tensors (one flattened filter per row), scores are ``(N,)``
tensors where a higher score means "keep".

Where a paper and its authors' code differ, the choice is stated at the function:

* :func:`keep_count` ``rounding="keep"`` is Li et al.'s reference count (``int(n * (1 - p))`` filters kept);
  ``rounding="remove"`` is the FPGM authors' count (``int(n * p)`` filters removed). 16 filters at 0.4 keep 9 and 10.
* :func:`global_threshold` ``rule="count"`` removes exactly ``floor(N * p)`` channels (the paper's "prune p of the
  channels"); ``rule="authors_code"`` is Network Slimming's ``resprune.py``/``vggprune.py``: ``thre =
  sorted(|gamma|)[int(N * p)]`` and every channel with ``|gamma| <= thre`` goes (one more, plus ties).
* :func:`fpgm_remove` follows the FPGM paper's text for FPGM-mix ("30% of the filters selected by FPGM, 10% by the
  norm criterion"): the norm criterion takes ``n_norm`` first, the geometric median the rest.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

DISTANCES = ("l2", "l1", "cos")
ROUNDINGS = ("keep", "remove")
THRESHOLD_RULES = ("count", "authors_code")
# Up to this many elements, ``|w|`` then a row sum is faster on the CPU than ``vector_norm(ord=1)`` (no fast kernel:
# 1.3-12x slower up to 4.7M elements); beyond it the copy costs more than the kernel (2x at 9.4M), and it would be
# a temporary of the weight's size (benchmarks/README.md, "L1 row norms").
L1_COPY_LIMIT = 1 << 22


def filter_norms(rows: Tensor, p: int = 1) -> Tensor:
    """Lp norm of every row of ``rows`` (``N x D``): ``p=1`` is Li et al.'s sum of absolute kernel weights."""
    if p not in (1, 2):
        raise ValueError(f"`p` must be 1 or 2, got {p!r}.")
    flat = rows.detach().flatten(1).float()
    if p == 1 and flat.numel() <= L1_COPY_LIMIT:
        return flat.abs().sum(1)
    return torch.linalg.vector_norm(flat, ord=p, dim=1)


def distance_sums(rows: Tensor, distance: str = "l2") -> Tensor:
    """Summed distance of each row to every row: small = near the geometric median = redundant (He et al.).

    ``l2``/``l1`` are Minkowski distances (``torch.cdist``), ``cos`` is ``1 - cosine similarity``. fp32, on the rows'
    device.
    """
    flat = rows.detach().flatten(1).float()
    if distance == "cos":
        unit = F.normalize(flat, dim=1)
        pairwise = (1.0 - unit @ unit.T).clamp_min(0.0)
    elif distance in ("l2", "l1"):
        pairwise = torch.cdist(flat, flat, p=2.0 if distance == "l2" else 1.0)
    else:
        raise ValueError(f"`distance` must be one of {DISTANCES}, got {distance!r}.")
    return pairwise.sum(1)


def fpgm_remove(rows: Tensor, n_remove: int, n_norm: int = 0, distance: str = "l2") -> Tensor:
    """Sorted indices (CPU int64) of the ``n_remove`` rows FPGM removes.

    First the ``n_norm`` rows of smallest L2 norm (FPGM-mix's norm part), then, among the others, the
    ``n_remove - n_norm`` rows of smallest :func:`distance_sums` (nearest the geometric median). Ties go to the lower
    index.
    """
    if not 0 <= n_norm <= n_remove <= rows.shape[0]:
        raise ValueError(f"need 0 <= n_norm <= n_remove <= {rows.shape[0]}, got n_norm={n_norm}, n_remove={n_remove}.")
    flat = rows.detach().flatten(1).float()
    chosen = torch.argsort(flat.norm(dim=1), stable=True)[:n_norm]
    rest = torch.ones(flat.shape[0], dtype=torch.bool, device=flat.device)
    rest[chosen] = False
    candidates = torch.nonzero(rest).flatten()
    n_gm = n_remove - n_norm
    if n_gm:
        sums = distance_sums(flat[candidates], distance)
        chosen = torch.cat([chosen, candidates[torch.argsort(sums, stable=True)[:n_gm]]])
    return torch.sort(chosen.cpu()).values


def random_scores(size: int, seed: int, key: str = "") -> Tensor:
    """Uniform scores, the same for the same ``(seed, key)`` on every process and every run (a control criterion)."""
    generator = torch.Generator().manual_seed((int(seed) * 1_000_003 + zlib.crc32(key.encode())) % (2**63 - 1))
    return torch.rand(size, generator=generator)


def min_kept(size: int, min_channels: int = 1, max_pruning_ratio: float = 1.0) -> int:
    """The fewest channels a group of ``size`` may keep: ``min_channels`` (and 1), and no more than
    ``max_pruning_ratio`` of the group removed (``ceil(size * (1 - max_pruning_ratio))`` kept), capped at ``size``."""
    return min(size, max(min_channels, 1, math.ceil(size * (1.0 - max_pruning_ratio) - 1e-9)))


def round_up(kept: int, size: int, min_channels: int = 1, round_to: int = 1, max_pruning_ratio: float = 1.0) -> int:
    """``kept`` raised to :func:`min_kept`, rounded up to a multiple of ``round_to``, capped at ``size``."""
    kept = max(kept, min_kept(size, min_channels, max_pruning_ratio))
    if round_to > 1:
        kept = math.ceil(kept / round_to) * round_to
    return min(size, kept)


def keep_count(size: int, ratio: float, min_channels: int = 1, round_to: int = 1, rounding: str = "keep",
               max_pruning_ratio: float = 1.0) -> int:
    """Channels a group of ``size`` keeps at ``ratio``.

    ``rounding="keep"``: ``floor(size * (1 - ratio))`` kept (Li et al.'s reference code); ``"remove"``:
    ``floor(size * ratio)`` removed (the FPGM authors' code). Then :func:`round_up`.
    """
    if rounding not in ROUNDINGS:
        raise ValueError(f"`rounding` must be one of {ROUNDINGS}, got {rounding!r}.")
    if rounding == "keep":
        kept = math.floor(size * (1.0 - ratio) + 1e-9)
    else:
        kept = size - math.floor(size * ratio + 1e-9)
    return round_up(kept, size, min_channels, round_to, max_pruning_ratio)


def norm_count(size: int, n_remove: int, norm_ratio: float) -> int:
    """FPGM-mix: how many of the ``n_remove`` channels the norm criterion takes, ``min(n_remove, floor(size * r))``."""
    return min(n_remove, math.floor(size * norm_ratio + 1e-9))


def global_threshold(scores: Mapping[str, Tensor], ratio: float, min_channels: int = 1, round_to: int = 1,
                     rule: str = "count", normalize: bool = False, max_pruning_ratio: float = 1.0
                     ) -> dict[str, list[int]]:
    """Removed positions per group from ONE threshold over the channels of all groups.

    ``rule="count"`` removes the ``floor(N * ratio)`` lowest scores over all ``N`` channels (ties by position);
    ``rule="authors_code"`` removes as many as Network Slimming's code does (every score ``<=
    sorted(all)[int(N * ratio)]``). ``normalize`` divides each group's scores by their mean first, so groups of
    different fan-in compete on a relative scale (a generic global ranking; not the paper's).

    No group loses more than its cap: it keeps :func:`min_kept` (``min_channels``, and at most ``max_pruning_ratio``
    of it removed; the paper's code has no floor and crashes on an emptied layer). The channels a capped group keeps
    are taken from the next-lowest scores of the other groups, so the count above still goes; only ``round_to`` > 1
    then gives channels back (each kept width rounded up to a multiple of it).

    Returns:
        group -> sorted removed positions (groups losing nothing are left out).

    Raises:
        ValueError: the caps let fewer channels go than the count asks (the numbers named).
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"`rule` must be one of {THRESHOLD_RULES}, got {rule!r}.")
    names = list(scores)
    if not names or ratio <= 0:
        return {}
    values = []
    for name in names:
        s = scores[name].detach().float().flatten().cpu()
        if normalize and s.numel() and float(s.mean()) > 0:
            s = s / s.mean()
        values.append(s)
    flat = torch.cat(values)
    owner = torch.cat([torch.full((v.numel(),), i, dtype=torch.long) for i, v in enumerate(values)])
    position = torch.cat([torch.arange(v.numel()) for v in values])
    if rule == "count":
        wanted = math.floor(flat.numel() * ratio + 1e-9)
    else:
        threshold = torch.sort(flat).values[min(int(flat.numel() * ratio), flat.numel() - 1)]
        wanted = int((flat <= threshold).sum())
    caps = torch.tensor([v.numel() - min_kept(v.numel(), min_channels, max_pruning_ratio) for v in values])
    if int(caps.sum()) < wanted:
        raise ValueError(f"the global threshold should remove {wanted} of {flat.numel()} channels (ratio {ratio:g}), "
                         f"but `min_channels`={min_channels} and `max_pruning_ratio`={max_pruning_ratio:g} let at "
                         f"most {int(caps.sum())} go. HINT: lower the ratio or raise `max_pruning_ratio`.")
    order = torch.argsort(flat, stable=True)
    rank = torch.empty_like(order)  # each channel's place among its own group's channels, in score order
    for i in range(len(values)):
        mine = torch.nonzero(owner[order] == i).flatten()
        rank[mine] = torch.arange(mine.numel())
    picks = order[rank < caps[owner[order]]][:wanted]
    removed: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        mine = position[picks[owner[picks] == i]]
        size = values[i].numel()
        target = size - round_up(size - mine.numel(), size, min_channels, round_to, max_pruning_ratio)
        if target < mine.numel():  # round_to gives back the best-scored of the removed channels
            order_i = torch.argsort(values[i][mine], stable=True)
            mine = mine[order_i[:target]]
        if mine.numel():
            removed[name] = sorted(mine.tolist())
    return removed
