"""Popularity baseline: rank items by how often they are a training target.

Counting targets (not history items) matches the peers' Popularity row: every training
sample contributes its target once, so an item's count is how often it was consumed after
its owner's first interaction.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def fit_popularity(train: pd.DataFrame, n_items: int) -> np.ndarray:
    """Count each item's occurrences as a training target.

    train: samples table (needs a `target` column of ids in 0..n_items-1).
    Returns int64 `[n_items]`; items never a target count 0.
    """
    targets = np.asarray(train["target"], dtype=np.int64)
    if targets.size and (targets.min() < 0 or targets.max() >= n_items):
        raise ValueError(f"targets must lie in 0..{n_items - 1}")
    return np.bincount(targets, minlength=n_items).astype(np.int64)


def rank_popularity(counts: np.ndarray, n_rows: int, k: int) -> np.ndarray:
    """The top-k items by count, the same list for each of `n_rows` rows.

    counts: `[n_items]` from `fit_popularity`. Ties go to the lower item id, so the
    ranking is deterministic. k larger than the catalogue is cut to `n_items`.
    Returns int64 `[n_rows, min(k, n_items)]`, best first.
    """
    counts = np.asarray(counts)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    # A stable sort of the negated counts keeps ids ascending within equal counts.
    order = np.argsort(-counts, kind="stable")[:k].astype(np.int64)
    return np.tile(order, (n_rows, 1))
