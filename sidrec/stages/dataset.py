"""Stage `dataset`: one configured source -> items/train/valid/test tables."""
from __future__ import annotations

from ..data.sources import load_source
from ..data.tables import write_dataset


def build_dataset(spec: dict, *, items, train, valid, test, log=print) -> None:
    """`spec`: a `datasets.NAME` entry of the config (source, path, max_history, ...)."""
    spec = dict(spec)
    ds = load_source(spec.pop("source"), **spec)
    write_dataset(ds, {"items": items, "train": train, "valid": valid, "test": test})
    log(f"{ds.n_items} items, train {len(ds.train)}, valid {len(ds.valid)}, test {len(ds.test)}")
