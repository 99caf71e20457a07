"""Top-K ranking metrics with one relevant item per row (next-item recommendation).

ranked int [rows, K]: item ids best first; -1 pads lists shorter than K (it never
matches a target). targets int [rows]: the held-out item (>= 0).

    HR@k   = 1 if the target is among the first k, else 0
    NDCG@k = 1 / log2(rank + 2) if the target's 0-based rank < k, else 0
             (one relevant item, so the ideal DCG is 1)

Both are averaged over rows. A target listed twice counts at its first position.
"""
from __future__ import annotations

import numpy as np

METRICS = ("HR", "NDCG")


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
