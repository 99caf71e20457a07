"""HR@K and NDCG@K against hand-computed values, and the long-format rows."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sidrec.metrics import hit_rate_at_k, metric_rows, ndcg_at_k, ndcg_hr_at_k

# Five rows, lists of length 4 (-1 pads short lists).
RANKED = np.array([
    [7, 3, 9, 1],      # target 7 at rank 0
    [2, 5, 8, -1],     # target 8 at rank 2
    [4, 6, -1, -1],    # target 0: miss (padding never matches)
    [1, 0, 3, 2],      # target 2 at rank 3
    [9, 9, 5, 6],      # target 9 at rank 0 (listed twice: first position counts)
])
TARGETS = np.array([7, 8, 0, 2, 9])


@pytest.mark.parametrize("k, hr", [(1, 2 / 5), (2, 2 / 5), (3, 3 / 5), (4, 4 / 5)])
def test_hit_rate(k, hr):
    assert hit_rate_at_k(RANKED, TARGETS, k) == pytest.approx(hr)


@pytest.mark.parametrize("k, ndcg", [
    (1, (1 + 1) / 5),
    (3, (1 + 1 / math.log2(4) + 1) / 5),                       # rank 2 -> 1/log2(4) = 0.5
    (4, (1 + 0.5 + 1 / math.log2(5) + 1) / 5),                 # rank 3 -> 1/log2(5)
])
def test_ndcg(k, ndcg):
    assert ndcg_at_k(RANKED, TARGETS, k) == pytest.approx(ndcg)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_ndcg_hr_is_both_exactly(k):
    assert ndcg_hr_at_k(RANKED, TARGETS, k) == (ndcg_at_k(RANKED, TARGETS, k), hit_rate_at_k(RANKED, TARGETS, k))


def test_all_padding_and_all_misses_score_zero():
    ranked = np.full((3, 5), -1)
    assert hit_rate_at_k(ranked, np.array([0, 1, 2]), 5) == 0.0
    assert ndcg_at_k(ranked, np.array([0, 1, 2]), 5) == 0.0


def test_no_rows_gives_nan():
    assert math.isnan(hit_rate_at_k(np.zeros((0, 3), np.int64), np.zeros(0, np.int64), 2))
    assert math.isnan(ndcg_at_k(np.zeros((0, 3), np.int64), np.zeros(0, np.int64), 2))


def test_bad_arguments():
    with pytest.raises(ValueError, match="k=5"):
        hit_rate_at_k(RANKED, TARGETS, 5)          # lists hold 4
    with pytest.raises(ValueError, match="k=0"):
        ndcg_at_k(RANKED, TARGETS, 0)
    with pytest.raises(ValueError, match="targets"):
        hit_rate_at_k(RANKED, TARGETS[:3], 1)
    with pytest.raises(ValueError, match=">= 0"):
        hit_rate_at_k(RANKED, np.array([7, 8, -1, 2, 9]), 1)


def test_metric_rows_long_format():
    rows = metric_rows(dataset="ml-100k", model="sft", split="test", ranked=RANKED, targets=TARGETS,
                       ks=(1, 4))
    assert [(r["metric"], r["k"]) for r in rows] == [("HR", 1), ("HR", 4), ("NDCG", 1), ("NDCG", 4)]
    for r in rows:
        assert set(r) == {"dataset", "model", "split", "metric", "k", "value", "n"}
        assert (r["dataset"], r["model"], r["split"], r["n"]) == ("ml-100k", "sft", "test", 5)
        assert isinstance(r["k"], int) and isinstance(r["value"], float)
    values = {(r["metric"], r["k"]): r["value"] for r in rows}
    assert values[("HR", 1)] == pytest.approx(0.4) and values[("HR", 4)] == pytest.approx(0.8)
    assert values[("NDCG", 1)] == pytest.approx(0.4)
    assert values[("NDCG", 4)] == pytest.approx((2.5 + 1 / math.log2(5)) / 5)
