"""MiniOneRec's released format: train reconstruction, exact sizes, errors with lines."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from sidrec.data.sources import load_source
from sidrec.data.minionerec import clean_text, item_text, load_minionerec
from sidrec.errors import InputError

SHARED = Path(__file__).resolve().parents[1].parent / "shared/data/minionerec-amazon18"
HEADER = ["user_id", "history_item_title", "item_title", "history_item_id", "item_id",
          "history_item_sid", "item_sid"]
# keys deliberately out of order; "10" sorts after "3" as an integer -> item_id 4
ITEM_JSON = {
    "10": {"title": "Ten", "description": "['Ten &amp; more.', '<b>bold</b> claim', 'Ten &amp; more.']",
           "brand": "Acme", "categories": ""},
    "2": {"title": "Two", "description": "", "brand": "", "categories": ""},
    "0": {"title": "Zero", "description": "[]", "brand": "", "categories": ""},
    "3": {"title": "Three", "description": "plain", "brand": "", "categories": "Tools"},
    "1": {"title": "One", "description": "", "brand": "", "categories": ""},
}
VALID = [("uA", [0, 1, 2], 3), ("uB", [1, 10], 0)]
TEST = [("uA", [0, 1, 2, 3], 10), ("uB", [1, 10, 0], 2)]


def csv_rows(rows):
    return [[u, "['t']", "t", str(h), str(t), "['<a_1>']", "<a_1>"] for u, h, t in rows]


def write_csv(path, rows, header=HEADER):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "Tiny.item.json").write_text(json.dumps(ITEM_JSON))
    write_csv(tmp_path / "valid.csv", csv_rows(VALID))
    write_csv(tmp_path / "test.csv", csv_rows(TEST))
    return tmp_path


def samples(df):
    return [(u, h.tolist(), int(t)) for u, h, t in zip(df["user"], df["history"], df["target"])]


def test_reconstruction_known_answer(folder):
    ds = load_minionerec(folder)
    assert ds.items["source_id"].tolist() == ["0", "1", "2", "3", "10"]
    assert ds.items["title"].tolist() == ["Zero", "One", "Two", "Three", "Ten"]
    # emitted: uA [0]->1, [0,1]->2, uB [1]->10, then from test: three duplicates,
    # uA [0,1,2]->3 and uB [1,10]->0, both dropped: (uA, 3) and (uB, 0) are valid rows
    assert samples(ds.train) == [("uA", [0], 1), ("uA", [0, 1], 2), ("uB", [1], 4)]
    assert samples(ds.valid) == [("uA", [0, 1, 2], 3), ("uB", [1, 4], 0)]
    assert samples(ds.test) == [("uA", [0, 1, 2, 3], 4), ("uB", [1, 4, 0], 2)]
    ds.validate()


def test_history_cap_and_train_csv(folder):
    ds = load_minionerec(folder, max_history=2)
    assert samples(ds.test) == [("uA", [2, 3], 4), ("uB", [4, 0], 2)]
    write_csv(folder / "train.csv", csv_rows([("uC", [3, 2, 1], 0)]))
    ds = load_minionerec(folder, name="Tiny", max_history=2)
    assert samples(ds.train) == [("uC", [2, 1], 0)]


def test_item_text():
    assert clean_text("['Ten &amp; more.', '<b>bold</b>  claim', 'Ten &amp; more.']") == "Ten & more. bold claim"
    assert item_text("Ten", "Acme", "", "['x']") == "Ten; brand: Acme; description: x"
    long = item_text("T", description="word " * 1000)
    assert len(long) < 700 and long.endswith("word...")


def bad_rows(case):
    rows = csv_rows(VALID + [("uC", [1], 2)])
    if case == "not a list":
        rows[2][3] = "[1, 'x']"
    elif case == "not a literal":
        rows[2][3] = "__import__('os').getcwd()"
    elif case == "empty history":
        rows[2][3] = "[]"
    elif case == "unknown item":
        rows[2][4] = "99"
    elif case == "target not int":
        rows[2][4] = "2.5"
    elif case == "ragged":
        rows[2] = rows[2][:5]
    return rows


@pytest.mark.parametrize("case, message", [
    ("not a list", "not a list of ints"),
    ("not a literal", "not a Python literal"),
    ("empty history", "history_item_id is empty"),
    ("unknown item", "item id 99 is not in the item file"),
    ("target not int", "item_id '2.5' is not an integer"),
    ("ragged", "expected 7 fields, found 5"),
])
def test_malformed_cells_name_the_line(folder, case, message):
    rows = bad_rows(case)
    rows[0][1] = "['a title\nover two lines']"  # the bad row starts on line 5, not 4
    write_csv(folder / "valid.csv", rows)
    with pytest.raises(InputError, match=message) as err:
        load_minionerec(folder)
    assert err.value.source == str(folder / "valid.csv")
    assert err.value.line == 5


def test_folder_errors(folder):
    write_csv(folder / "test.csv", csv_rows(TEST), header=HEADER[:4] + HEADER[5:])
    with pytest.raises(InputError, match="missing column") as err:
        load_minionerec(folder)
    assert err.value.line == 1 and err.value.source.endswith("test.csv")
    (folder / "test.csv").unlink()
    with pytest.raises(InputError, match="file not found"):
        load_minionerec(folder)
    (folder / "Other.item.json").write_text("{}")
    with pytest.raises(InputError, match="several"):
        load_minionerec(folder)
    (folder / "Bad.item.json").write_text('{"0": {"title": ""}}')
    with pytest.raises(InputError, match="no title"):
        load_minionerec(folder, name="Bad")


@pytest.mark.parametrize("name, sizes", [
    ("Industrial_and_Scientific", (3686, 12841, 4532, 4533)),
    ("Office_Products", (3459, 12084, 4866, 4866)),
])
def test_released_data_exact_sizes(name, sizes):
    if not (SHARED / name).is_dir():
        pytest.skip(f"{SHARED / name} not present")
    ds = load_source("minionerec", SHARED / name, max_history=10)
    assert (ds.n_items, len(ds.train), len(ds.valid), len(ds.test)) == sizes
    ds.validate(name)
    assert ds.items["source_id"].tolist() == [str(i) for i in range(sizes[0])]
    if name == "Industrial_and_Scientific":  # file order kept: the first rows as released
        assert ds.valid["user"].iloc[0] == "A4042"
        assert ds.valid["history"].iloc[0].tolist() == [3112] and ds.valid["target"].iloc[0] == 114
        assert ds.valid["history"].iloc[1].tolist() == [3437, 642, 642, 2520]
    held_out = set(zip(ds.valid["user"], ds.valid["target"])) | set(zip(ds.test["user"], ds.test["target"]))
    assert not held_out & set(zip(ds.train["user"], ds.train["target"]))


def test_angle_bracketed_text_that_is_no_html_tag_is_kept(folder):
    assert clean_text("<NA>") == "<NA>"
    assert clean_text("Drill <3 mm> set <br/>x <B>y</B> <bright>") == "Drill <3 mm> set x y <bright>"
    items = {**ITEM_JSON, "2": {**ITEM_JSON["2"], "title": "<NA>"}}
    (folder / "Tiny.item.json").write_text(json.dumps(items))
    assert load_minionerec(folder).items["title"].tolist()[2] == "<NA>"


@pytest.mark.parametrize("field, value, expected", [
    ("title", {"en": "Two"}, "title is dict"),
    ("title", 2, "title is int"),
    ("brand", ["Acme"], "brand is list"),
    ("description", {"a": 1}, "description is dict"),
    ("categories", ["Tools", 3], "categories is list"),
])
def test_a_text_field_that_is_not_text_is_named(folder, field, value, expected):
    items = {**ITEM_JSON, "2": {**ITEM_JSON["2"], field: value}}
    (folder / "Tiny.item.json").write_text(json.dumps(items))
    with pytest.raises(InputError, match=expected) as err:
        load_minionerec(folder)
    assert err.value.source == str(folder / "Tiny.item.json") and err.value.key == f"2.{field}"


def test_a_repeated_item_id_in_the_item_file_names_file_and_line(folder):
    text = json.dumps(ITEM_JSON, indent=1)
    (folder / "Tiny.item.json").write_text(text[:-2] + ',\n "3": {"title": "Again"}\n}')
    with pytest.raises(InputError, match="twice") as err:
        load_minionerec(folder)
    assert err.value.key == "3" and err.value.line == text.count("\n") + 1


def test_an_empty_split_file_is_named(folder):
    write_csv(folder / "valid.csv", [])
    with pytest.raises(InputError, match="no rows after the header") as err:
        load_minionerec(folder)
    assert err.value.source == str(folder / "valid.csv") and err.value.line == 2
