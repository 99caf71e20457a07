"""Raw Amazon 2018 reader on a small hand-made category: titles, 5-core, windows, split."""
from __future__ import annotations

import datetime as dt
import gzip
import json
import random

import pytest

from sidrec.data.sources import load_source
from sidrec.data.amazon_raw import clean_title, load_amazon_raw
from sidrec.errors import InputError

DAY = 86400
T0 = int(dt.datetime(2018, 1, 1, tzinfo=dt.timezone.utc).timestamp())
CORE = [f"A{i}" for i in range(6)]
DROPPED_TITLES = {
    "LONG": " ".join(["word"] * 21),
    "MARK": '<span id="x">Nice Saw</span>',
    "ESC": "Fancy &lt;b&gt;Saw&lt;/b&gt;",
    "NOTI": None,
}


def meta_lines():
    lines = [{"asin": "A0", "title": "Alpha &amp; Omega Saw", "brand": "Acme",
              "category": ["Industrial &amp; Scientific", "</span></span>", "Saws"],
              "description": ["Cuts &amp; more.", "<p>Sharp</p>"]}]
    lines += [{"asin": a, "title": f"Tool {a}", "brand": "", "category": [], "description": []}
              for a in CORE[1:] + ["A6"]]
    lines += [{"asin": "A0", "title": "Second line for A0 is ignored"}]
    lines += [{"asin": a, **({} if t is None else {"title": t})} for a, t in DROPPED_TITLES.items()]
    lines += [{"asin": f"L{i}", "title": f"Late {i}"} for i in range(5)]
    return lines


def review_lines():
    """u0..u5 x A0..A5: user j reviews A((j + k) % 6) on day k; u5's first two share day 0
    (listed in reverse asin order). A 5-core block of early users/items 40 days before T0,
    a cascade (lonely -> A6 -> edge) and reviews of dropped or unknown items."""
    out = []
    for j in range(6):
        for k in range(6):
            day = 0 if (j, k) == (5, 1) else k
            out.append(("u%d" % j, CORE[(j + k) % 6], T0 + day * DAY))
    out += [(f"early{j}", f"L{i}", T0 - 40 * DAY + i) for j in range(5) for i in range(5)]
    out += [(u, "A6", T0 + 10 * DAY) for u in ("u0", "u1", "u2", "lonely", "edge")]
    out += [("lonely", a, T0 + 11 * DAY) for a in CORE[:3]]
    out += [("edge", a, T0 + 12 * DAY) for a in CORE[:4]]
    out += [(f"u{j}", a, T0 + 20 * DAY) for j in range(6) for a in [*DROPPED_TITLES, "GHOST"]]
    return [{"reviewerID": u, "asin": a, "unixReviewTime": t, "overall": 5.0} for u, a, t in out]


def write(folder, reviews=None, meta=None, gz_meta=True):
    meta_text = "\n".join(json.dumps(m) for m in (meta or meta_lines())) + "\n"
    if gz_meta:
        with gzip.open(folder / "meta_Tools.json.gz", "wt") as f:
            f.write(meta_text)
    else:
        (folder / "meta_Tools.json").write_text(meta_text)
    lines = reviews if reviews is not None else [json.dumps(r) for r in review_lines()]
    (folder / "Tools_5.json").write_text("\n".join(lines) + "\n")
    return folder


def samples(df):
    return [(u, h.tolist(), int(t)) for u, h, t in zip(df["user"], df["history"], df["target"])]


def test_titles_and_five_core(tmp_path):
    ds = load_amazon_raw(write(tmp_path), "Tools", max_history=3)
    # title filter drops LONG/MARK/ESC/NOTI, GHOST has no meta; the cascade removes
    # lonely (4 reviews), then A6 (4 left), then edge (4 left)
    assert ds.items["source_id"].tolist() == CORE + [f"L{i}" for i in range(5)]
    assert ds.items["title"].iloc[0] == "Alpha & Omega Saw"
    assert ds.items["text"].iloc[0] == ("Alpha & Omega Saw; brand: Acme; categories: Industrial & "
                                        "Scientific, Saws; description: Cuts & more. Sharp")
    users = set(ds.train["user"]) | set(ds.valid["user"]) | set(ds.test["user"])
    assert users == {f"u{j}" for j in range(6)} | {f"early{j}" for j in range(5)}
    ds.validate()


def test_windows_and_split(tmp_path):
    ds = load_amazon_raw(write(tmp_path), "Tools", max_history=3, start="2018-01-01")
    assert ds.items["source_id"].tolist() == CORE  # the early block is before the window
    # 6 users x 5 targets = 30 samples -> int(30 * .8) = 24, int(30 * .9) = 27
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (24, 3, 3)
    # day 5 targets: u0..u2 valid, u3..u5 test (equal times go by user)
    assert samples(ds.valid) == [("u0", [2, 3, 4], 5), ("u1", [3, 4, 5], 0), ("u2", [4, 5, 0], 1)]
    assert ds.test["user"].tolist() == ["u3", "u4", "u5"]
    # u5 reviewed A5 and A0 on day 0: the tie goes by asin, A0 first, and its first
    # target (A5, day 0) is the earliest sample of all
    assert samples(ds.train)[0] == ("u5", [0], 5)
    assert samples(ds.test)[-1] == ("u5", [1, 2, 3], 4)
    assert max(len(h) for h in ds.train["history"]) == 3
    u0 = [s for s in samples(ds.train) if s[0] == "u0"]
    assert u0 == [("u0", [0], 1), ("u0", [0, 1], 2), ("u0", [0, 1, 2], 3), ("u0", [1, 2, 3], 4)]


def test_window_end_is_exclusive(tmp_path):
    # end = T0 + 5 days: the day-5 reviews go; every user and item still has 5 reviews
    ds = load_amazon_raw(write(tmp_path), "Tools", start="2018-01-01", end="2018-01-06")
    assert len(ds.train) + len(ds.valid) + len(ds.test) == 6 * 4
    with pytest.raises(InputError, match="no review left"):
        load_amazon_raw(tmp_path, "Tools", start="2018-01-02", end="2018-01-06")
    with pytest.raises(InputError) as err:
        load_amazon_raw(tmp_path, "Tools", start="2018-13-01")
    assert err.value.key == "start"


def test_deterministic_whatever_the_file_order(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = load_amazon_raw(write(tmp_path / "a", gz_meta=False), "Tools", max_history=3)
    lines = [json.dumps(r) for r in review_lines()]
    random.Random(0).shuffle(lines)
    b = load_amazon_raw(write(tmp_path / "b", reviews=lines), "Tools", max_history=3)
    assert a.items.equals(b.items)
    for split in ("train", "valid", "test"):
        assert samples(a.split(split)) == samples(b.split(split))
    c = load_source("amazon_raw", tmp_path / "b", category="Tools", max_history=3)
    assert samples(c.test) == samples(a.test)


def test_clean_title():
    assert clean_title('  "Quoted   Drill" ') == "Quoted Drill"
    assert clean_title("x") is None and clean_title(None) is None and clean_title(5) is None
    assert clean_title(" ".join(["w"] * 20)) is not None
    assert clean_title("a <br> b") is None


def test_malformed_json_line(tmp_path):
    lines = [json.dumps(r) for r in review_lines()[:5]]
    lines[2] = '{"reviewerID": "u0", "asin": '
    write(tmp_path, reviews=lines)
    with pytest.raises(InputError, match="malformed JSON") as err:
        load_amazon_raw(tmp_path, "Tools")
    assert err.value.source == str(tmp_path / "Tools_5.json") and err.value.line == 3
    lines[2] = json.dumps({"reviewerID": "u0", "asin": "A1"})
    write(tmp_path, reviews=lines)
    with pytest.raises(InputError, match="unixReviewTime") as err:
        load_amazon_raw(tmp_path, "Tools")
    assert err.value.line == 3
    with pytest.raises(InputError, match="file not found"):
        load_amazon_raw(tmp_path, "Books")


@pytest.mark.parametrize("gz", [False, True])
def test_a_line_that_is_not_utf8_is_named_with_its_byte_offset(tmp_path, gz):
    write(tmp_path, gz_meta=gz)
    name = "meta_Tools.json" + (".gz" if gz else "")
    lines = ("\n".join(json.dumps(m) for m in meta_lines()) + "\n").encode().split(b"\n")
    lines[1] = lines[1].replace(b'"title": "', b'"title": "caf\xe9 ', 1)
    data = b"\n".join(lines)
    (tmp_path / name).write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(InputError, match="not UTF-8") as err:
        load_amazon_raw(tmp_path, "Tools")
    assert err.value.source == str(tmp_path / name) and err.value.line == 2
    offset = data.index(bytes([0xE9]))
    assert f"byte {offset}:" in str(err.value)
    assert "UnicodeDecodeError" not in str(err.value) and "codec" not in str(err.value)
