"""Stage `base_tiny`: a from-scratch decoder whose tokenizer is trained on the items' text."""
from __future__ import annotations

from ..data.tables import read_items
from ..lm.base import build_tiny
from ..lm.prompts import tokenizer_corpus


def build_tiny_base(items_path, out_dir, params: dict) -> None:
    """`params`: the config's `lm.tiny` section (with the run's seed applied)."""
    items = read_items(items_path)
    build_tiny(out_dir, tokenizer_corpus(items["title"].tolist()), dict(params))
