"""ml-100k: exact split sizes on the wheel's copy, and bad input named by file and line."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from sidrec.data.sources import load_source
from sidrec.data.movielens import load_ml100k
from sidrec.errors import InputError

ITEM_HEADER = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"
INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
ITEMS = ["1\tToy Story\t1995\tAnimation Children's Comedy",
         "10\tRichard III\t1995\tDrama War",
         "2\tGoldenEye\t1995\tAction Adventure Thriller",
         "3\tunkonwn\tunkonwn\tunknown"]
INTERS = ["7\t1\t4\t100", "7\t2\t3\t101", "7\t10\t5\t101", "7\t3\t1\t99",
          "12\t2\t4\t5", "12\t1\t4\t6", "12\t3\t4\t7"]


@pytest.fixture(scope="module")
def ml100k():
    if importlib.util.find_spec("recbole") is None:
        pytest.skip("recbole wheel (embedded ml-100k) not installed")
    return load_ml100k()


def test_exact_sizes(ml100k):
    ds = ml100k
    assert (ds.n_items, len(ds.train), len(ds.valid), len(ds.test)) == (1682, 97171, 943, 943)
    ds.validate("ml-100k")


def test_rows_make_sense(ml100k):
    ds = ml100k
    first, last = ds.items.iloc[0], ds.items.iloc[-1]
    assert (first["source_id"], first["title"]) == ("1", "Toy Story")
    assert first["text"] == "Toy Story (1995); genres: Animation, Children's, Comedy"
    assert last["source_id"] == "1682" and last["title"].startswith("Scream of Stone")
    assert ds.items["source_id"].astype(int).is_monotonic_increasing
    # users in numeric order, one valid and one test row each
    assert ds.valid["user"].tolist() == ds.test["user"].tolist() == [str(u) for u in range(1, 944)]
    assert ds.train["user"].iloc[0] == "1" and ds.train["user"].iloc[-1] == "943"
    lengths = ds.train["history"].map(len)
    assert lengths.min() == 1 and lengths.max() == 20
    assert ds.valid["history"].map(len).max() == 20
    for hv, tv, ht in zip(ds.valid["history"], ds.valid["target"], ds.test["history"]):
        assert ht[-1] == tv and np.array_equal(ht[:-1], hv[1:] if len(hv) == 20 else hv)
    assert ds.valid.equals(load_source("movielens", None, max_history=20).valid)


def write(tmp_path, items=ITEMS, inters=INTERS, item_header=ITEM_HEADER, inter_header=INTER_HEADER):
    (tmp_path / "ml-100k.item").write_text("\n".join([item_header, *items]) + "\n")
    (tmp_path / "ml-100k.inter").write_text("\n".join([inter_header, *inters]) + "\n")
    return tmp_path


def test_small_folder(tmp_path):
    ds = load_ml100k(write(tmp_path), max_history=2)
    assert ds.items["source_id"].tolist() == ["1", "2", "3", "10"]  # as integers
    assert ds.items["text"].tolist()[2:] == ["unkonwn", "Richard III (1995); genres: Drama, War"]
    # user 7: 3@99, 1@100, 2@101, 10@101 -> ids 2, 0, 1, 3 ; user 12: 2, 1, 3 -> ids 1, 0, 2
    assert ds.valid["user"].tolist() == ["7", "12"]
    assert [h.tolist() for h in ds.test["history"]] == [[0, 1], [1, 0]]
    assert ds.test["target"].tolist() == [3, 2]
    assert [(u, h.tolist(), t) for u, h, t in zip(*ds.train.to_dict("list").values())] == [("7", [2], 0)]
    ds.validate()


@pytest.mark.parametrize("case, file, line, message", [
    ("missing column", "ml-100k.inter", 1, "missing column"),
    ("bad timestamp", "ml-100k.inter", 4, "timestamp 'soon' is not a number"),
    ("bad item id", "ml-100k.inter", 3, "item_id 'x2' is not an integer"),
    ("short row", "ml-100k.inter", 5, "expected 4 tab-separated fields, found 3"),
    ("unknown item", "ml-100k.inter", 6, "not in the item file"),
    ("duplicate item", "ml-100k.item", 4, "duplicate item id '1'"),
    ("no title", "ml-100k.item", 3, "has no title"),
])
def test_bad_input_names_file_and_line(tmp_path, case, file, line, message):
    items, inters, inter_header = list(ITEMS), list(INTERS), INTER_HEADER
    if case == "missing column":
        inter_header = "user_id:token\titem:token\trating:float\ttimestamp:float"
    elif case == "bad timestamp":
        inters[2] = "7\t10\t5\tsoon"
    elif case == "bad item id":
        inters[1] = "7\tx2\t3\t101"
    elif case == "short row":
        inters[3] = "7\t3\t1"
    elif case == "unknown item":
        inters[4] = "12\t99\t4\t5"
    elif case == "duplicate item":
        items[2] = "1\tGoldenEye\t1995\tAction"
    elif case == "no title":
        items[1] = "10\t \t1995\tDrama"
    root = write(tmp_path, items, inters, inter_header=inter_header)
    with pytest.raises(InputError, match=message) as err:
        load_ml100k(root)
    assert err.value.source == str(root / file)
    assert err.value.line == line


def test_missing_file(tmp_path):
    (tmp_path / "ml-100k.item").write_text(ITEM_HEADER + "\n" + "\n".join(ITEMS) + "\n")
    with pytest.raises(InputError, match="file not found") as err:
        load_ml100k(tmp_path)
    assert err.value.source.endswith("ml-100k.inter")


def test_load_source_dispatch_errors(tmp_path):
    with pytest.raises(InputError) as err:
        load_source("netflix", tmp_path)
    assert err.value.key == "source"
    with pytest.raises(InputError) as err:
        load_source("movielens", write(tmp_path), category="Books")
    assert err.value.key == "category"
    with pytest.raises(InputError) as err:
        load_source("minionerec", None)
    assert err.value.key == "path"
