"""Split rules on a hand-made log: targets, history windows, ties, no leakage."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sidrec.data.splits import chronological_split, leave_one_out, sliding_windows
from sidrec.errors import InputError

# user, item, timestamp. u1 has a tie at t=2 (items 7 and 3: 3 comes first) and at t=3
# (items 10 and 9: 9 first, compared as integers). u3 has only 2 interactions.
LOG = [
    ("u1", 5, 1), ("u1", 7, 2), ("u1", 3, 2), ("u1", 10, 3), ("u1", 9, 3), ("u1", 2, 5),
    ("u2", 4, 10), ("u2", 6, 11), ("u2", 8, 12), ("u2", 0, 13),
    ("u3", 1, 7), ("u3", 2, 8),
    ("u4", 1, 1), ("u4", 2, 2), ("u4", 3, 3),
]
# u1 in order: 5, 3, 7, 9, 10, 2


def log(rows=LOG, seed=None) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    if seed is not None:  # the input order must not matter
        df = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return df


def rows(samples: pd.DataFrame) -> list:
    return [(u, h.tolist(), int(t)) for u, h, t in zip(samples["user"], samples["history"], samples["target"])]


def test_leave_one_out_targets_and_windows():
    train, valid, test = leave_one_out(log(), max_history=2)
    assert rows(train) == [
        ("u1", [5], 3), ("u1", [5, 3], 7), ("u1", [3, 7], 9),
        ("u2", [4], 6),
    ]
    assert rows(valid) == [("u1", [7, 9], 10), ("u2", [4, 6], 8), ("u4", [1], 2)]
    assert rows(test) == [("u1", [9, 10], 2), ("u2", [6, 8], 0), ("u4", [1, 2], 3)]
    for df in (train, valid, test):
        assert list(df.columns) == ["user", "history", "target"]
        assert df["target"].dtype == np.int64
        assert all(h.dtype == np.int64 for h in df["history"])


def test_leave_one_out_counts_per_user_and_short_users():
    train, valid, test = leave_one_out(log(), max_history=20)
    # n - 3 training samples per user; u3 (2 interactions) is left out everywhere
    assert train["user"].value_counts().to_dict() == {"u1": 3, "u2": 1}
    assert valid["user"].tolist() == test["user"].tolist() == ["u1", "u2", "u4"]
    # with a long cap, histories are whole prefixes
    assert rows(test)[0] == ("u1", [5, 3, 7, 9, 10], 2)


def test_no_valid_or_test_sample_in_train():
    train, valid, test = leave_one_out(log(), max_history=20)
    seen = {(u, tuple(h), t) for u, h, t in rows(train)}
    for u, h, t in rows(valid) + rows(test):
        assert (u, tuple(h), t) not in seen
    # the test history ends with the valid target, the valid history with the last train target
    for (_, hv, tv), (_, ht, _) in zip(rows(valid), rows(test)):
        assert ht[-1] == tv and ht[:-1] == hv


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_input_order_does_not_matter(seed):
    ref = [rows(df) for df in leave_one_out(log(), 2)]
    assert [rows(df) for df in leave_one_out(log(seed=seed), 2)] == ref
    assert rows(sliding_windows(log(seed=seed), 2)) == rows(sliding_windows(log(), 2))


def test_numeric_users_sort_as_numbers():
    df = log([(10, 1, 1), (10, 2, 2), (10, 3, 3), (9, 4, 1), (9, 5, 2), (9, 6, 3)])
    _, valid, _ = leave_one_out(df, 5)
    assert valid["user"].tolist() == ["9", "10"]


def test_leave_one_out_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    n = 3000
    df = pd.DataFrame({"user": rng.integers(0, 150, n), "item": rng.integers(0, 400, n),
                       "timestamp": rng.integers(0, 50, n)})
    got = [rows(s) for s in leave_one_out(df, 4)]
    want = ([], [], [])
    for user, g in df.groupby("user"):
        seq = g.sort_values(["timestamp", "item"], kind="stable")["item"].tolist()
        if len(seq) < 3:
            continue
        for i in range(1, len(seq) - 2):
            want[0].append((str(user), seq[max(0, i - 4):i], seq[i]))
        want[1].append((str(user), seq[max(0, len(seq) - 6):len(seq) - 2], seq[-2]))
        want[2].append((str(user), seq[max(0, len(seq) - 5):len(seq) - 1], seq[-1]))
    assert got == list(want)


def test_sliding_windows():
    s = sliding_windows(log(), max_history=2)
    assert s["user"].value_counts().to_dict() == {"u1": 5, "u2": 3, "u3": 1, "u4": 2}
    u1 = s[s["user"] == "u1"]
    assert rows(u1) == [("u1", [5], 3), ("u1", [5, 3], 7), ("u1", [3, 7], 9),
                        ("u1", [7, 9], 10), ("u1", [9, 10], 2)]
    assert u1["timestamp"].tolist() == [2, 2, 3, 3, 5]  # the target's time


def test_chronological_split_proportions_and_ties():
    # 20 samples: 5 users x 4 targets at days 1..4; equal times go by user, then position
    events = [(f"u{u}", 100 * u + k, k) for u in range(5) for k in range(5)]
    s = sliding_windows(log(events), max_history=3)
    train, valid, test = chronological_split(s)
    assert (len(train), len(valid), len(test)) == (16, 2, 2)
    assert train["user"].tolist()[-4:] == ["u2", "u3", "u4", "u0"]
    assert rows(valid) == [("u1", [101, 102, 103], 104), ("u2", [201, 202, 203], 204)]
    assert test["user"].tolist() == ["u3", "u4"]
    assert train["target"].tolist()[:5] == [1, 101, 201, 301, 401]
    assert list(train.columns) == ["user", "history", "target"]
    # integer cut points, MiniOneRec's rule: int(n * 0.8), int(n * 0.9)
    for n in (1, 7, 10, 33, 36, 101):
        parts = chronological_split(sliding_windows(log([("u", i, i) for i in range(n + 1)]), 2))
        assert [len(p) for p in parts] == [int(n * 0.8), int(n * 0.9) - int(n * 0.8), n - int(n * 0.9)]


def test_bad_arguments():
    with pytest.raises(InputError, match="missing column"):
        leave_one_out(log().drop(columns="timestamp"), 2)
    with pytest.raises(InputError, match="max_history"):
        leave_one_out(log(), 0)
    with pytest.raises(InputError, match="timestamp"):
        chronological_split(leave_one_out(log(), 2)[0])


@pytest.mark.parametrize("empty", ["train", "valid", "test"])
def test_a_dataset_with_an_empty_split_is_refused_before_it_is_written(tmp_path, empty):
    from sidrec.data.tables import Dataset, make_samples, write_dataset

    items = pd.DataFrame({"item_id": np.arange(3), "title": ["a", "b", "c"], "text": ["a", "b", "c"],
                          "source_id": ["0", "1", "2"]})
    rows = make_samples(["u"], [[0, 1]], [2])
    splits = {name: (rows.iloc[:0] if name == empty else rows) for name in ("train", "valid", "test")}
    with pytest.raises(InputError, match=f"the {empty} split has no rows"):
        write_dataset(Dataset(items=items, **splits), tmp_path)
    assert not list(tmp_path.iterdir())


def test_an_item_text_that_is_not_a_string_is_refused_with_its_row(tmp_path):
    from sidrec.data.tables import Dataset, make_samples, write_dataset

    items = pd.DataFrame({"item_id": np.arange(3), "title": ["a", {"en": "b"}, "c"],
                          "text": ["a", "b", "c"], "source_id": ["0", "1", "2"]})
    rows = make_samples(["u"], [[0, 1]], [2])
    with pytest.raises(InputError, match=r":2: item '1': title is dict"):
        write_dataset(Dataset(items=items, train=rows, valid=rows, test=rows), tmp_path)
    assert not list(tmp_path.iterdir())
