"""MiniOneRec's released Amazon splits (``{name}.item.json``, ``valid.csv``, ``test.csv``).

The valid and test rows are used exactly as released, in file order, so that scores can
be put beside baselines run on the same rows. MiniOneRec did not release ``train.csv``;
when it is absent, `reconstruct_train` rebuilds one with the documented rule (see
``../shared/data/minionerec-amazon18/README.md``): 12,841 samples for
Industrial_and_Scientific and 12,084 for Office_Products.

CSV list cells are Python literals written by the authors; they are parsed with
`ast.literal_eval` (never `eval`) and must be lists of ints. Only ``user_id``,
``history_item_id`` and ``item_id`` are read: the title and SID columns repeat what the
item table and our own SIDs say.
"""
from __future__ import annotations

import ast
import csv
import html
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..io import read_json, read_text
from .markup import strip_tags
from .tables import Dataset, make_samples

CSV_COLUMNS = ("user_id", "history_item_id", "item_id")
DESCRIPTION_CHARS = 600  # the encoder reads ~128 tokens; longer text only adds noise
_SPACE = re.compile(r"\s+")


def clean_text(value) -> str:
    """One line of plain text: HTML tags removed (other angle-bracketed text such as
    ``<NA>`` kept), HTML entities decoded, spaces collapsed.

    A value that is a list rendered as a string (``"['a', 'b']"``, as MiniOneRec stores
    descriptions) is parsed as a literal and its non-empty strings are joined.
    """
    if value is None:
        return ""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            pass
    if isinstance(value, (list, tuple)):
        parts, seen = [], set()
        for v in value:
            c = clean_text(v)
            if c and c not in seen:  # the 2018 metadata often repeats a paragraph
                parts.append(c)
                seen.add(c)
        return " ".join(parts)
    text = html.unescape(strip_tags(str(value)))
    return _SPACE.sub(" ", text).strip()


def shorten(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` characters at a word boundary, marked with '...'."""
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:")
    return cut + "..."


def item_text(title: str, brand="", categories="", description="") -> str:
    """'title; brand: B; categories: C; description: D': what the text encoder embeds.

    Empty parts are left out; the description is cut to `DESCRIPTION_CHARS`.
    """
    parts = [clean_text(title)]
    for label, value in (("brand", clean_text(brand)), ("categories", clean_text(categories)),
                         ("description", shorten(clean_text(description), DESCRIPTION_CHARS))):
        if value:
            parts.append(f"{label}: {value}")
    return "; ".join(parts)


def _find_item_file(directory: Path, name) -> Path:
    if name is not None:
        return directory / f"{name}.item.json"
    found = sorted(directory.glob("*.item.json"))
    if len(found) != 1:
        what = "no *.item.json" if not found else f"several *.item.json ({[p.name for p in found]})"
        raise InputError(directory, f"{what}: pass the dataset name")
    return found[0]


def read_items(path) -> tuple[pd.DataFrame, dict]:
    """The item table from ``{name}.item.json`` and a map json key -> item_id.

    Items are numbered in order of their key as an integer (the released files use keys
    0..n-1, so item_id equals the key there).
    """
    path = Path(path)
    raw = read_json(path)
    if not isinstance(raw, dict) or not raw:
        raise InputError(path, "expected a non-empty object {item id: {title, ...}}")
    for key, meta in raw.items():
        if not key.strip().lstrip("-").isdigit():
            raise InputError(path, f"item id {key!r} is not an integer", key=key)
        if not isinstance(meta, dict):
            raise InputError(path, "item entry is not an object", key=key)
    keys = sorted(raw, key=int)
    as_int = [int(k) for k in keys]
    if len(set(as_int)) != len(as_int):
        dup = next(k for i, k in enumerate(keys[1:]) if int(k) == as_int[i])
        raise InputError(path, f"item id {dup!r} appears twice (as different strings)", key=dup)
    titles, texts = [], []
    for key in keys:
        meta = raw[key]
        _check_text_fields(meta, path, key)
        title = clean_text(meta.get("title"))
        if not title:
            raise InputError(path, "item has no title", key=key)
        titles.append(title)
        texts.append(item_text(title, meta.get("brand"), meta.get("categories"),
                               meta.get("description")))
    items = pd.DataFrame({
        "item_id": np.arange(len(keys), dtype=np.int64),
        "title": pd.Series(titles, dtype=object),
        "text": pd.Series(texts, dtype=object),
        "source_id": pd.Series(keys, dtype=object),
    })
    return items, {k: i for i, k in enumerate(as_int)}


# Which value types each text field may hold: a title and a brand are strings; MiniOneRec
# stores categories and descriptions as strings too, and the raw 2018 metadata as lists.
_TEXT_FIELDS = {"title": (str,), "brand": (str, type(None)),
                "categories": (str, list, type(None)), "description": (str, list, type(None))}


def _check_text_fields(meta: dict, path, key: str) -> None:
    """InputError naming the item and field whose value is not text (a dict or a number
    would otherwise be embedded as its Python repr)."""
    for field, allowed in _TEXT_FIELDS.items():
        value = meta.get(field)
        if field == "title" and value is None:
            continue  # reported as "item has no title"
        ok = isinstance(value, allowed) and (
            not isinstance(value, list) or all(isinstance(v, str) for v in value))
        if not ok:
            expected = " or ".join("null" if t is type(None) else "a list of strings" if t is list
                                   else "a string" for t in allowed)
            raise InputError(path, f"{field} is {type(value).__name__} "
                                   f"{str(value)[:40]!r}, expected {expected}", key=f"{key}.{field}")


def _int_list(cell: str, path, line: int, column: str) -> list[int]:
    try:
        value = ast.literal_eval(cell.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise InputError(path, f"{column} cell {cell[:60]!r} is not a Python literal", line=line) from None
    if not isinstance(value, list) or not all(type(v) is int for v in value):
        raise InputError(path, f"{column} cell {cell[:60]!r} is not a list of ints", line=line)
    return value


def read_rows(path, id_map: dict) -> pd.DataFrame:
    """One released CSV as ``user, history (full, as released), target, line``.

    Ids are mapped to item_id; ``line`` is the file line where the row starts (header =
    line 1), kept so that later checks can name it.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    users, histories, targets, lines = [], [], [], []
    # Decoded up front: text that is not UTF-8 is named with its file and line.
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(path, "empty file (no header)", line=1) from None
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise InputError(path, f"missing column(s) {missing}; header has {header}", line=1)
    col = {c: header.index(c) for c in CSV_COLUMNS}
    line = reader.line_num + 1
    try:
        for row in reader:
            if not row:  # a blank line
                line = reader.line_num + 1
                continue
            if len(row) != len(header):
                raise InputError(path, f"expected {len(header)} fields, found {len(row)}", line=line)
            user = row[col["user_id"]].strip()
            if not user:
                raise InputError(path, "empty user_id", line=line)
            history = _int_list(row[col["history_item_id"]], path, line, "history_item_id")
            if not history:
                raise InputError(path, "history_item_id is empty", line=line)
            target_cell = row[col["item_id"]].strip()
            if not target_cell.lstrip("-").isdigit():
                raise InputError(path, f"item_id {target_cell!r} is not an integer", line=line)
            ids = history + [int(target_cell)]
            try:
                mapped = [id_map[i] for i in ids]
            except KeyError as e:
                raise InputError(path, f"item id {e.args[0]} is not in the item file", line=line) from None
            users.append(user)
            histories.append(mapped[:-1])
            targets.append(mapped[-1])
            lines.append(line)
            line = reader.line_num + 1
    except csv.Error as e:
        raise InputError(path, f"malformed CSV: {e}", line=line) from None
    if not users:  # an empty split would only fail later, deep inside training or evaluation
        raise InputError(path, "no rows after the header: a split must not be empty", line=2)
    return pd.DataFrame({"user": pd.Series(users, dtype=object),
                         "history": pd.Series(histories, dtype=object),
                         "target": np.asarray(targets, dtype=np.int64),
                         "line": np.asarray(lines, dtype=np.int64)})


def reconstruct_train(valid: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """Training samples rebuilt from the valid/test histories (the README's rule).

    For every valid row, then every test row, in file order, with history ``[h1..hn]``:
    emit ``(h1..h(i-1) -> hi)`` for ``i = 2..n``; keep the first of exact duplicates of
    ``(user, history, target)``; drop every sample whose ``(user, target)`` is the
    ``(user, target)`` of any valid or test row, since that interaction lies in the
    valid/test period of the chronological split. Histories are the full prefixes; the
    caller caps them.
    """
    users, histories, targets = [], [], []
    for frame in (valid, test):
        for user, history in zip(frame["user"], frame["history"]):
            for i in range(1, len(history)):
                users.append(user)
                histories.append(tuple(history[:i]))
                targets.append(history[i])
    emitted = pd.DataFrame({"user": pd.Series(users, dtype=object),
                            "history": pd.Series(histories, dtype=object),
                            "target": np.asarray(targets, dtype=np.int64)})
    emitted = emitted[~emitted.duplicated(["user", "history", "target"], keep="first")]
    held_out = pd.MultiIndex.from_arrays([
        pd.concat([valid["user"], test["user"]], ignore_index=True),
        np.concatenate([valid["target"].to_numpy(), test["target"].to_numpy()])])
    leak = pd.MultiIndex.from_arrays([emitted["user"], emitted["target"].to_numpy()]).isin(held_out)
    kept = emitted[~leak]
    return make_samples(kept["user"], [list(h) for h in kept["history"]], kept["target"])


def _cap(rows: pd.DataFrame, max_history: int) -> pd.DataFrame:
    return make_samples(rows["user"], [h[-max_history:] for h in rows["history"]], rows["target"])


def load_minionerec(directory, name=None, max_history: int = 10) -> Dataset:
    """Read MiniOneRec's released folder for one dataset into a `Dataset`.

    `name` defaults to the stem of the folder's single ``*.item.json``. valid/test keep
    their file order; histories keep their last `max_history` items (the release has at
    most 10). ``train.csv`` is read when present, else rebuilt by `reconstruct_train`.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(directory, "folder not found")
    if int(max_history) < 1:
        raise InputError(directory, f"max_history must be at least 1, got {max_history}",
                         key="max_history")
    items, id_map = read_items(_find_item_file(directory, name))
    valid = read_rows(directory / "valid.csv", id_map)
    test = read_rows(directory / "test.csv", id_map)
    train_path = directory / "train.csv"
    if train_path.exists():
        train = _cap(read_rows(train_path, id_map), max_history)
    else:
        train = _cap(reconstruct_train(valid, test), max_history)
    return Dataset(items=items, train=train, valid=_cap(valid, max_history),
                   test=_cap(test, max_history))
