"""Which reader a configured source uses: `load_source` (a `datasets.NAME` entry -> Dataset)."""
from __future__ import annotations

from ..errors import InputError
from .tables import Dataset

SOURCES = ("movielens", "minionerec", "amazon_raw")


def load_source(source: str, path=None, *, max_history: int | None = None, category=None,
                start=None, end=None) -> Dataset:
    """Read one configured dataset (a ``datasets.NAME`` entry of the config) into a `Dataset`.

    Readers are imported here, on demand, so that importing `sidrec.data` stays cheap.
    Keys that do not apply to the source must be left null, so that a typo'd config does
    not silently build something else.
    """
    if source not in SOURCES:
        raise InputError("config", f"unknown source {source!r}; expected one of {list(SOURCES)}",
                         key="source")
    hist = {} if max_history is None else {"max_history": int(max_history)}
    if source != "amazon_raw":
        for key, value in (("category", category), ("start", start), ("end", end)):
            if value is not None:
                raise InputError("config", f"'{key}' applies only to source amazon_raw", key=key)
    if source == "movielens":
        from .movielens import load_ml100k
        return load_ml100k(path, **hist)
    if path is None:
        raise InputError("config", f"source {source} needs a path", key="path")
    if source == "minionerec":
        from .minionerec import load_minionerec
        return load_minionerec(path, **hist)
    from .amazon_raw import load_amazon_raw
    if not category:
        raise InputError("config", "source amazon_raw needs a category", key="category")
    return load_amazon_raw(path, category, start=start, end=end, **hist)
