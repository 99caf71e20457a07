"""Raw Amazon Reviews 2018 (``meta_{cat}.json[.gz]`` + ``{cat}_5.json[.gz]``) -> `Dataset`.

MiniOneRec's preprocessing (``data/amazon18_data_process.py`` in its repository), with
every step that depended on file or dict order made deterministic:

1. Titles: HTML entities decoded, spaces collapsed, surrounding quotes stripped. An
   item is dropped when its title is missing or shorter than 2 characters, has more than
   20 words, or contains markup (``<...>``). When an asin appears on several meta lines,
   the first line wins.
2. Reviews of dropped or unknown items go; with `start`/`end`, only reviews in the UTC
   day window ``[start, end)`` stay.
3. Iterative 5-core: users and items with fewer than 5 reviews are removed together,
   again and again until none is left (the result is the unique 5-core, whatever order).
   Repeated reviews of one item by one user count and are kept, as MiniOneRec does.
4. Items are numbered by asin; per user, reviews are ordered by (time, asin) and every
   position from the second on becomes a sample with at most `max_history` history items.
5. One global chronological 80/10/10 cut by target time; equal times are ordered by
   user id, then position (`sliding_windows` + `chronological_split`).
"""
from __future__ import annotations

import datetime as dt
import gzip
import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from .minionerec import clean_text, item_text
from .splits import chronological_split, sliding_windows
from .tables import Dataset

K_CORE = 5
MAX_TITLE_WORDS = 20
_MARKUP = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def _find(directory: Path, stem: str) -> Path:
    """``stem.json`` if present, else ``stem.json.gz``."""
    for suffix in (".json", ".json.gz"):
        path = directory / f"{stem}{suffix}"
        if path.is_file():
            return path
    raise InputError(directory / f"{stem}.json", "file not found (nor .json.gz)")


def iter_json_lines(path):
    """Yield ``(line number, object)`` for each non-blank line of a JSON-lines file.

    A line that is not a JSON object stops the read with an `InputError` naming the line.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            offset = 0  # of the line's first byte (in the uncompressed stream for .gz)
            for number, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    what = "uncompressed byte" if path.suffix == ".gz" else "byte"
                    raise InputError(path, f"not UTF-8 text ({what} {offset + e.start}: "
                                           f"{raw[e.start:e.start + 1]!r})", line=number) from None
                offset += len(raw)
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(path, f"malformed JSON: {e.msg} (column {e.colno})",
                                     line=number) from None
                if not isinstance(obj, dict):
                    raise InputError(path, "expected a JSON object", line=number)
                yield number, obj
    except (OSError, EOFError) as e:
        raise InputError(path, f"cannot read: {e}") from None


def clean_title(value) -> str | None:
    """The title MiniOneRec keeps, or None when the item must be dropped."""
    if not isinstance(value, str) or _MARKUP.search(value):
        return None
    title = _SPACE.sub(" ", html.unescape(value)).strip().strip('"').strip()
    if len(title) < 2 or len(title.split()) > MAX_TITLE_WORDS or _MARKUP.search(title):
        return None
    return title


def _categories(value) -> list[str]:
    """Category path without markup crumbs (the 2018 metadata has some ``</span>`` ones)."""
    if not isinstance(value, list):
        return []
    return [c for c in (clean_text(v) for v in value if isinstance(v, str) and "<" not in v) if c]


def read_meta(path) -> dict:
    """asin -> (title, raw meta line) for every item whose title survives `clean_title`.

    The item text is built later (`_text`), only for the items that survive the 5-core.
    """
    kept, seen = {}, set()
    for number, meta in iter_json_lines(path):
        asin = meta.get("asin")
        if not isinstance(asin, str) or not asin.strip():
            raise InputError(path, "meta line has no asin", line=number)
        if asin in seen:
            continue
        seen.add(asin)
        title = clean_title(meta.get("title"))
        if title is not None:
            kept[asin] = (title, meta)
    return kept


def _text(title: str, meta: dict) -> str:
    brand = meta.get("brand") if isinstance(meta.get("brand"), str) else ""
    return item_text(title, brand.replace("by\n", ""), ", ".join(_categories(meta.get("category"))),
                     meta.get("description"))


def _day(value, key: str, where) -> int | None:
    if value is None:
        return None
    try:
        day = dt.date.fromisoformat(str(value))
    except ValueError:
        raise InputError(where, f"{value!r} is not a YYYY-MM-DD date", key=key) from None
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp())


def read_reviews(path) -> pd.DataFrame:
    """``user, asin, timestamp`` for every review line (each needs all three fields)."""
    users, asins, times = [], [], []
    for number, review in iter_json_lines(path):
        user, asin, time = review.get("reviewerID"), review.get("asin"), review.get("unixReviewTime")
        if not isinstance(user, str) or not user or not isinstance(asin, str) or not asin:
            raise InputError(path, "review needs string reviewerID and asin", line=number)
        if isinstance(time, str) and time.strip().isdigit():
            time = int(time)
        if type(time) is not int:
            raise InputError(path, f"unixReviewTime {time!r} is not an integer", line=number)
        users.append(user)
        asins.append(asin)
        times.append(time)
    return pd.DataFrame({"user": pd.Series(users, dtype=object), "asin": pd.Series(asins, dtype=object),
                         "timestamp": np.asarray(times, dtype=np.int64)})


def k_core(reviews: pd.DataFrame, k: int = K_CORE) -> pd.DataFrame:
    """Drop users and items with fewer than `k` reviews until every one left has `k`."""
    while len(reviews):
        user_n = reviews.groupby("user")["asin"].transform("size")
        item_n = reviews.groupby("asin")["user"].transform("size")
        keep = ((user_n >= k) & (item_n >= k)).to_numpy()
        if keep.all():
            break
        reviews = reviews[keep]
    return reviews.reset_index(drop=True)


def load_amazon_raw(directory, category: str, *, max_history: int = 10,
                    start=None, end=None) -> Dataset:
    """Build a `Dataset` from one category of raw Amazon Reviews 2018 (module docstring)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(directory, "folder not found")
    if not category:
        raise InputError(directory, "amazon_raw needs a category", key="category")
    meta_path = _find(directory, f"meta_{category}")
    review_path = _find(directory, f"{category}_5")
    lo, hi = _day(start, "start", directory), _day(end, "end", directory)

    meta = read_meta(meta_path)
    reviews = read_reviews(review_path)
    keep = reviews["asin"].isin(list(meta)).to_numpy()
    if lo is not None:
        keep = keep & (reviews["timestamp"].to_numpy() >= lo)
    if hi is not None:
        keep = keep & (reviews["timestamp"].to_numpy() < hi)
    reviews = k_core(reviews[keep])
    if reviews.empty:
        raise InputError(review_path, "no review left after title filter, time window and "
                         f"{K_CORE}-core")

    asins = np.sort(reviews["asin"].unique().astype(object))
    items = pd.DataFrame({
        "item_id": np.arange(len(asins), dtype=np.int64),
        "title": pd.Series([meta[a][0] for a in asins], dtype=object),
        "text": pd.Series([_text(*meta[a]) for a in asins], dtype=object),
        "source_id": pd.Series(asins, dtype=object),
    })
    log = pd.DataFrame({"user": reviews["user"].to_numpy(),
                        "item": np.searchsorted(asins, reviews["asin"].to_numpy()).astype(np.int64),
                        "timestamp": reviews["timestamp"].to_numpy()})
    train, valid, test = chronological_split(sliding_windows(log, max_history))
    return Dataset(items=items, train=train, valid=valid, test=test)
