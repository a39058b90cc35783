"""Seeded, stratified index splits (the same seed always gives the same split)."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split


def stratified_holdout(labels: np.ndarray, holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(len(labels))`` into (kept, held-out) index arrays, ``holdout`` of them held out.

    Every class keeps its share (scikit-learn's stratified split); both arrays are sorted.
    """
    n = len(labels)
    if isinstance(holdout, bool) or not isinstance(holdout, int) or not 0 <= holdout < n:
        raise ValueError(f"`holdout` must be an int in [0, {n}), got {holdout!r}.")
    index = np.arange(n)
    if holdout == 0:
        return index, index[:0]
    kept, held = train_test_split(index, test_size=holdout, stratify=labels, random_state=seed, shuffle=True)
    return np.sort(kept), np.sort(held)
