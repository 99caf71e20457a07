"""Split rules: how an interaction log becomes train / valid / test samples.

Every reader hands a log with columns ``user``, ``item`` (int item_id) and ``timestamp``
to one of two protocols here, so that the rule that decides which rows a model is scored
on lives in one place and is tested once:

* `leave_one_out` (ml-100k): per user, the last item is the test target, the one before
  it the valid target, every earlier position from the second item on a training target.
* `sliding_windows` + `chronological_split` (MiniOneRec's Amazon protocol): every position
  from the second item on is a sample, and one global cut by target time decides whether
  it is train (first 80%), valid (next 10%) or test (last 10%).

Both order a user's log by ``(timestamp, item)``: the item id breaks ties so the output
does not depend on the order of the input file. Sorting is stable, so exact duplicate
events (same user, item and time) are kept, each once, side by side.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputError
from .tables import SAMPLE_COLUMNS, make_samples

LOG_COLUMNS = ("user", "item", "timestamp")


def _check(interactions: pd.DataFrame, max_history: int) -> None:
    missing = [c for c in LOG_COLUMNS if c not in interactions.columns]
    if missing:
        raise InputError("interactions", f"missing column(s) {missing}; expected {list(LOG_COLUMNS)}")
    if int(max_history) < 1:
        raise InputError("interactions", f"max_history must be at least 1, got {max_history}",
                         key="max_history")


def _sequences(interactions: pd.DataFrame):
    """Sort the log into per-user chronological runs.

    Returns ``(log, start, pos, length)``: the sorted log (fresh 0..n-1 index) and, per
    row, the offset of its user's first row, its position within the user's run and the
    run's length. Users come out in sorted order of their ``user`` values (numeric ids
    sort as numbers when the column is numeric).
    """
    log = interactions.loc[:, list(LOG_COLUMNS)].copy()
    log["item"] = log["item"].astype(np.int64)
    log = log.sort_values(["user", "timestamp", "item"], kind="stable").reset_index(drop=True)
    group = log.groupby("user", sort=False)
    pos = group.cumcount().to_numpy(np.int64)
    length = group["item"].transform("size").to_numpy(np.int64)
    start = np.arange(len(log), dtype=np.int64) - pos
    return log, start, pos, length


def _histories(seq: np.ndarray, start: np.ndarray, rows: np.ndarray, max_history: int) -> list:
    """History of the sample whose target is ``seq[row]``: up to ``max_history`` items of
    the same user just before it, oldest first."""
    lo = np.maximum(start[rows], rows - max_history)
    return [seq[a:b] for a, b in zip(lo.tolist(), rows.tolist())]


def _samples(log: pd.DataFrame, start: np.ndarray, rows: np.ndarray, max_history: int) -> pd.DataFrame:
    seq = log["item"].to_numpy(np.int64)
    return make_samples(log["user"].to_numpy()[rows], _histories(seq, start, rows, max_history),
                        seq[rows])


def leave_one_out(interactions: pd.DataFrame, max_history: int):
    """Per-user leave-one-out: ``(train, valid, test)`` sample tables.

    For a user with items ``i_0 .. i_{n-1}`` (chronological, ties by item id): test
    targets ``i_{n-1}``, valid targets ``i_{n-2}``, train targets ``i_1 .. i_{n-3}``; each
    sample's history is the up to ``max_history`` items just before its target. So every
    valid/test history ends right before its target and no valid/test target is a
    training target of the same user at that position.

    Users with fewer than 3 interactions are left out of all three tables (their items
    stay in the catalogue): they cannot give both a valid and a test row with a
    non-empty history, and keeping them partly would make valid and test cover different
    users, so that valid scores would stop predicting test scores.

    Rows are ordered by user, then by position (train); valid and test hold one row per
    kept user in the same user order.
    """
    _check(interactions, max_history)
    log, start, pos, length = _sequences(interactions)
    kept = length >= 3
    train_rows = np.flatnonzero(kept & (pos >= 1) & (pos <= length - 3))
    valid_rows = np.flatnonzero(kept & (pos == length - 2))
    test_rows = np.flatnonzero(kept & (pos == length - 1))
    return tuple(_samples(log, start, rows, max_history)
                 for rows in (train_rows, valid_rows, test_rows))


def sliding_windows(interactions: pd.DataFrame, max_history: int) -> pd.DataFrame:
    """Every position from each user's second item on, as one sample.

    Returns the samples columns plus ``timestamp`` (the target's time), ordered by user
    and then position; `chronological_split` relies on that order to break time ties.
    A user with a single interaction yields nothing.
    """
    _check(interactions, max_history)
    log, start, pos, _ = _sequences(interactions)
    rows = np.flatnonzero(pos >= 1)
    samples = _samples(log, start, rows, max_history)
    samples["timestamp"] = log["timestamp"].to_numpy()[rows]
    return samples


def chronological_split(samples: pd.DataFrame, fractions=(0.8, 0.1, 0.1)):
    """One global cut by target time: ``(train, valid, test)``.

    Samples are ordered by ``timestamp`` with a stable sort, so equal times keep the
    input order (for `sliding_windows` output: user, then position), which makes the
    cut deterministic. The cut points are ``int(n * f_train)`` and
    ``int(n * (f_train + f_valid))``, MiniOneRec's 80/10/10 rule. Each returned table has
    only the samples columns, in time order, with a fresh index.
    """
    if "timestamp" not in samples.columns:
        raise InputError("samples", "chronological_split needs a 'timestamp' column")
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or (f < 0).any() or not np.isclose(f.sum(), 1.0):
        raise InputError("samples", f"fractions must be 3 non-negative numbers summing to 1, got {fractions}")
    ordered = samples.sort_values("timestamp", kind="stable").reset_index(drop=True)
    n = len(ordered)
    cut1, cut2 = int(n * f[0]), int(n * round(f[0] + f[1], 12))  # round: no float noise in the sum
    cols = list(SAMPLE_COLUMNS)
    return tuple(ordered.iloc[a:b][cols].reset_index(drop=True)
                 for a, b in ((0, cut1), (cut1, cut2), (cut2, n)))
