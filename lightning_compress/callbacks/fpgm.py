"""FPGM: filter pruning via geometric median (He et al., CVPR 2019) as a Lightning callback.

Placeholder: the math is here, the callback follows once the engine lands.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DISTANCES = ("l2", "l1", "cos")


def distance_sums(filters: torch.Tensor, distance: str = "l2") -> torch.Tensor:
    """Sum of distances from each row of ``filters`` (``N x D``) to every row: small = near the geometric median.

    ``l2``/``l1`` are Minkowski distances (``torch.cdist``); ``cos`` is ``1 - cosine similarity`` (scipy's
    ``cosine``). Computed in fp32 on the tensor's device.
    """
    rows = filters.detach().flatten(1).float()
    if distance == "cos":
        unit = F.normalize(rows, dim=1)
        pairwise = (1.0 - unit @ unit.T).clamp_min(0.0)
    elif distance in ("l2", "l1"):
        pairwise = torch.cdist(rows, rows, p=2.0 if distance == "l2" else 1.0)
    else:
        raise ValueError(f"`distance` must be one of {DISTANCES}, got {distance!r}.")
    return pairwise.sum(1)


def fpgm_select(filters: torch.Tensor, n_prune: int, n_norm: int = 0, distance: str = "l2") -> torch.Tensor:
    """Indices (sorted, CPU int64) of the ``n_prune`` filters to zero among the rows of ``filters``.

    First the ``n_norm`` rows of smallest L2 norm ("FPGM-mix"), then, among the others, the ``n_prune - n_norm``
    rows of smallest :func:`distance_sums` (nearest the geometric median). Ties go to the lower index.
    """
    if not 0 <= n_norm <= n_prune <= filters.shape[0]:
        raise ValueError(f"need 0 <= n_norm <= n_prune <= {filters.shape[0]}, got n_norm={n_norm}, n_prune={n_prune}.")
    rows = filters.detach().flatten(1).float()
    chosen = torch.argsort(rows.norm(dim=1), stable=True)[:n_norm]
    rest = torch.ones(rows.shape[0], dtype=torch.bool, device=rows.device)
    rest[chosen] = False
    candidates = torch.nonzero(rest).flatten()
    n_gm = n_prune - n_norm
    if n_gm:
        sums = distance_sums(rows[candidates], distance)
        chosen = torch.cat([chosen, candidates[torch.argsort(sums, stable=True)[:n_gm]]])
    return torch.sort(chosen.cpu()).values
