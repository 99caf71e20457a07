"""The four tables that stages exchange, their schema, and validation.

items:   item_id (int64, exactly 0..n-1 in order), title (str), text (str: what the
         text encoder embeds), source_id (str: the item's id in the source data)
samples: user (str), history (list of int64 item ids, oldest first, may not be empty),
         target (int64). One table each for train, valid, test; valid/test keep the
         source's row order.

Stored as parquet under results/{dataset}/data/{items,train,valid,test}.parquet.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..io import atomic_path

ITEM_COLUMNS = ("item_id", "title", "text", "source_id")
SAMPLE_COLUMNS = ("user", "history", "target")
SPLITS = ("train", "valid", "test")


@dataclass
class Dataset:
    items: pd.DataFrame
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame

    @property
    def n_items(self) -> int:
        return len(self.items)

    def split(self, name: str) -> pd.DataFrame:
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; expected one of {SPLITS}")
        return getattr(self, name)

    def validate(self, source="dataset") -> "Dataset":
        validate_items(self.items, source)
        for name in SPLITS:
            # An empty split would pass every later check and fail deep inside training
            # or evaluation instead ("max() arg is an empty sequence"): stop here.
            if len(self.split(name)) == 0:
                raise InputError(source, f"the {name} split has no rows")
            validate_samples(self.split(name), self.n_items, f"{source} ({name})")
        return self


def _require_columns(df: pd.DataFrame, columns, source) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(source, f"missing column(s) {missing}; expected {list(columns)}")


def validate_items(items: pd.DataFrame, source="items") -> None:
    _require_columns(items, ITEM_COLUMNS, source)
    ids = items["item_id"].to_numpy()
    if len(ids) == 0:
        raise InputError(source, "no items")
    expected = np.arange(len(ids))
    if not np.array_equal(ids, expected):
        bad = int(np.flatnonzero(ids != expected)[0])
        raise InputError(source, f"item_id must be 0..n-1 in order; row {bad} has {ids[bad]!r}",
                         line=bad + 1)
    dup = items["source_id"].duplicated()
    if dup.any():
        bad = int(np.flatnonzero(dup.to_numpy())[0])
        raise InputError(source, f"duplicate item id {items['source_id'].iloc[bad]!r}", line=bad + 1)
    for col in ("title", "text"):
        not_str = ~items[col].map(lambda v: isinstance(v, str)).astype(bool)
        if not_str.any():  # a dict or number would be embedded and shown as its repr
            bad = int(np.flatnonzero(not_str.to_numpy())[0])
            value = items[col].iloc[bad]
            raise InputError(source, f"item {items['source_id'].iloc[bad]!r}: {col} is "
                             f"{type(value).__name__} {str(value)[:40]!r}, expected a string", line=bad + 1)
        empty = items[col].str.strip() == ""
        if empty.any():
            bad = int(np.flatnonzero(empty.to_numpy())[0])
            raise InputError(source, f"item {items['source_id'].iloc[bad]!r} has no {col}",
                             line=bad + 1)


def validate_samples(samples: pd.DataFrame, n_items: int, source="samples") -> None:
    _require_columns(samples, SAMPLE_COLUMNS, source)
    for row, (hist, target) in enumerate(zip(samples["history"], samples["target"])):
        if hist is None or len(hist) == 0:
            raise InputError(source, "empty history", line=row + 1)
        hist = np.asarray(hist)
        if not np.issubdtype(hist.dtype, np.integer):
            raise InputError(source, f"history must be integer item ids, got {hist.dtype}", line=row + 1)
        if hist.min() < 0 or hist.max() >= n_items:
            raise InputError(source, f"history names an unknown item (valid ids 0..{n_items - 1})",
                             line=row + 1)
        if not (0 <= int(target) < n_items):
            raise InputError(source, f"target {target} is not a known item (0..{n_items - 1})",
                             line=row + 1)


def make_samples(users, histories, targets) -> pd.DataFrame:
    """Build a samples table with the canonical dtypes."""
    return pd.DataFrame({
        "user": pd.Series([str(u) for u in users], dtype=object),
        "history": pd.Series([np.asarray(h, dtype=np.int64) for h in histories], dtype=object),
        "target": np.asarray(list(targets), dtype=np.int64),
    })


def write_dataset(ds: Dataset, paths) -> None:
    """Write the four tables: `paths` maps items/train/valid/test to files, or is one
    folder that gets {items,train,valid,test}.parquet. Validated before anything is
    written; each file is written atomically."""
    if not isinstance(paths, dict):
        folder = Path(paths)
        paths = {name: folder / f"{name}.parquet" for name in ("items", *SPLITS)}
    ds.validate(Path(paths["items"]).parent)
    for name, df in [("items", ds.items)] + [(s, ds.split(s)) for s in SPLITS]:
        with atomic_path(paths[name], suffix=".parquet") as tmp:
            df.to_parquet(tmp, index=False)


def read_items(path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    items = pd.read_parquet(path)
    validate_items(items, path)
    return items


def read_samples(path, n_items: int) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    df = pd.read_parquet(path)
    df["history"] = [np.asarray(h, dtype=np.int64) for h in df["history"]]
    validate_samples(df, n_items, path)
    return df
