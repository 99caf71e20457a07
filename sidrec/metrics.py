"""Top-K ranking metrics with one relevant item per row (next-item recommendation).

ranked int [rows, K]: item ids best first; -1 pads lists shorter than K (it never
matches a target). targets int [rows]: the held-out item (>= 0).

    HR@k   = 1 if the target is among the first k, else 0
    NDCG@k = 1 / log2(rank + 2) if the target's 0-based rank < k, else 0
             (one relevant item, so the ideal DCG is 1)

Both are averaged over rows. A target listed twice counts at its first position.

`list_faults` counts what no ranked list should hold: invalid entries (padding or ids
outside the catalogue) and repeats of an item already listed in the same row.
"""
from __future__ import annotations

import numpy as np

METRICS = ("HR", "NDCG")
# Counts of faulty entries over all ranked lists; 0 expected for every model.
LIST_FAULTS = ("invalid", "duplicate")


def _target_ranks(ranked, targets, k: int) -> np.ndarray:
    """-> int64 [rows]: 0-based position of each target within ranked[:, :k], or -1."""
    ranked = np.asarray(ranked)
    targets = np.asarray(targets)
    if ranked.ndim != 2:
        raise ValueError(f"ranked must be [rows, K], got shape {ranked.shape}")
    if targets.shape != (ranked.shape[0],):
        raise ValueError(f"targets must be [{ranked.shape[0]}], got shape {targets.shape}")
    if not 1 <= k <= ranked.shape[1]:
        raise ValueError(f"k={k} outside 1..{ranked.shape[1]} (the ranked lists' length)")
    if targets.size and targets.min() < 0:
        raise ValueError("targets must be item ids >= 0")
    hits = ranked[:, :k] == targets[:, None]
    return np.where(hits.any(1), hits.argmax(1), -1).astype(np.int64)


def _hit_rate(ranks: np.ndarray) -> float:
    return float((ranks >= 0).mean()) if ranks.size else float("nan")


def _ndcg(ranks: np.ndarray) -> float:
    if not ranks.size:
        return float("nan")
    gains = np.where(ranks >= 0, 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0)
    return float(gains.mean())


def hit_rate_at_k(ranked, targets, k: int) -> float:
    """Fraction of rows whose target is in the first k (nan for no rows)."""
    return _hit_rate(_target_ranks(ranked, targets, k))


def ndcg_at_k(ranked, targets, k: int) -> float:
    """Mean of 1 / log2(rank + 2) over rows, 0 for a target outside the first k (nan for
    no rows)."""
    return _ndcg(_target_ranks(ranked, targets, k))


def ndcg_hr_at_k(ranked, targets, k: int) -> tuple[float, float]:
    """(ndcg_at_k, hit_rate_at_k), the same values, finding each target's rank once."""
    ranks = _target_ranks(ranked, targets, k)
    return _ndcg(ranks), _hit_rate(ranks)


def per_row_gains(ranked, targets, k: int) -> dict[str, np.ndarray]:
    """-> {"NDCG": float [rows], "HR": float [rows]}: each row's own NDCG@k and HR@k
    (their means are ndcg_at_k and hit_rate_at_k), for paired tests between models."""
    ranks = _target_ranks(ranked, targets, k)
    hit = ranks >= 0
    return {"NDCG": np.where(hit, 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0), "HR": hit.astype(float)}


def metric_rows(*, dataset: str, model: str, split: str, ranked, targets,
                ks=(1, 3, 5, 10, 20)) -> list[dict]:
    """Long format: one dict per (metric, k), HR rows first, each with keys dataset,
    model, split, metric ("HR" / "NDCG"), k, value, n (rows)."""
    n = int(np.asarray(targets).shape[0])
    out = []
    for metric, fn in zip(METRICS, (hit_rate_at_k, ndcg_at_k)):
        for k in ks:
            out.append({"dataset": dataset, "model": model, "split": split, "metric": metric,
                        "k": int(k), "value": fn(ranked, targets, int(k)), "n": n})
    return out


def list_faults(ranked, n_items: int | None = None) -> dict[str, int]:
    """ranked int [rows, K] -> {"invalid": entries < 0 or >= n_items (no upper bound
    when n_items is None), "duplicate": valid entries repeating an earlier one of their
    row}. Both are counts over all rows; a model that works writes 0 and 0."""
    ranked = np.asarray(ranked)
    if ranked.ndim != 2:
        raise ValueError(f"ranked must be [rows, K], got shape {ranked.shape}")
    valid = ranked >= 0
    if n_items is not None:
        valid &= ranked < n_items
    # Invalid entries become distinct negative numbers, so only valid repeats collide.
    marked = np.where(valid, ranked, -1 - np.arange(ranked.size).reshape(ranked.shape))
    ordered = np.sort(marked, axis=1)
    return {"invalid": int((~valid).sum()), "duplicate": int((ordered[:, 1:] == ordered[:, :-1]).sum())}
